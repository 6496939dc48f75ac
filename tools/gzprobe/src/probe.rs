//! Analysis and rebuild of every member of one gzip file, streaming: the
//! compressed input is fed to preflate in slices, the content goes to a
//! scratch file, and the rebuild reads it back in the same chunks (preflate's
//! corrections are per chunk, so the rebuild must see the analysis's cuts).

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use preflate_rs::{ExitCode, PreflateConfig, PreflateStreamProcessor, RecreateStreamProcessor};
use serde_json::{json, Value};

use crate::gzip::{self, HeaderError};
use crate::rss;

/// How the probe feeds preflate.
#[derive(Clone, Copy)]
pub struct Settings {
    /// Compressed bytes handed to one `decompress` call (more when a block needs it).
    pub slice: usize,
    /// preflate's cap on content held per chunk (PreflateConfig::plain_text_limit).
    pub plain_limit: usize,
    /// preflate's own round-trip check during analysis (the rebuild checks anyway).
    pub verify: bool,
}

/// One analysed chunk: its content length and the corrections that rebuild it.
struct Chunk {
    plain: usize,
    corrections: Vec<u8>,
}

/// What the analysis of one member found.
struct Member {
    offset: u64,
    header: Vec<u8>,
    deflate_len: u64,
    trailer: [u8; 8],
    plain_len: u64,
    plain_offset: u64,
    chunks: Vec<Chunk>,
    crc_ok: bool,
    secs: f64,
    cpu: f64,
}

/// Bytes of side data per chunk besides its corrections: two u32 lengths.
const CHUNK_FRAMING: u64 = 8;

impl Member {
    fn side_data(&self) -> u64 {
        let corr: u64 = self.chunks.iter().map(|c| c.corrections.len() as u64).sum();
        self.header.len() as u64 + 8 + corr + CHUNK_FRAMING * self.chunks.len() as u64
    }

    fn gz_len(&self) -> u64 {
        self.header.len() as u64 + self.deflate_len + 8
    }
}

/// Reads `f` from `pos`, up to `n` bytes appended to `buf`; returns how many.
fn read_at(f: &mut File, pos: u64, n: usize, buf: &mut Vec<u8>) -> io::Result<usize> {
    f.seek(SeekFrom::Start(pos))?;
    let start = buf.len();
    f.take(n as u64).read_to_end(buf)?;
    Ok(buf.len() - start)
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".into())
}

/// Analyses the member whose header starts at `offset`; its content is
/// appended to `plain_out` (whose length before is the member's plain_offset).
fn analyze_member(
    f: &mut File,
    offset: u64,
    plain_out: &mut File,
    plain_offset: u64,
    s: Settings,
) -> Result<Member, String> {
    use std::io::Write;
    let t = Instant::now();
    let c = rss::cpu_s();
    let mut head = Vec::new();
    read_at(f, offset, 1 << 20, &mut head).map_err(|e| e.to_string())?;
    let hlen = match gzip::header_len(&head) {
        Ok(n) => n,
        Err(HeaderError::Short) => return Err("cut short inside the gzip header".into()),
        Err(HeaderError::NotGzip(why)) => return Err(format!("not a gzip member: {why}")),
    };
    let header = head[..hlen].to_vec();
    let cfg = PreflateConfig {
        plain_text_limit: s.plain_limit,
        verify_compression: s.verify,
        ..PreflateConfig::default()
    };
    let mut proc = PreflateStreamProcessor::new(&cfg);
    let mut pos = offset + hlen as u64;
    let mut buf = Vec::new();
    let mut eof = false;
    let mut chunks = Vec::new();
    let mut crc = crc32fast::Hasher::new();
    let mut plain_len = 0u64;
    while !proc.is_done() {
        if buf.len() < s.slice && !eof {
            let want = s.slice - buf.len();
            let got =
                read_at(f, pos + buf.len() as u64, want, &mut buf).map_err(|e| e.to_string())?;
            eof = got < want;
        }
        match proc.decompress(&buf) {
            Ok(r) => {
                let text = proc.plain_text().text();
                crc.update(text);
                plain_out.write_all(text).map_err(|e| e.to_string())?;
                plain_len += text.len() as u64;
                chunks.push(Chunk {
                    plain: text.len(),
                    corrections: r.corrections,
                });
                buf.drain(..r.compressed_size);
                pos += r.compressed_size as u64;
                proc.shrink_to_dictionary();
            }
            Err(e) if e.exit_code() == ExitCode::ShortRead && !eof => {
                // Not one whole block in the slice: read more of it.
                let got = read_at(f, pos + buf.len() as u64, s.slice, &mut buf)
                    .map_err(|e| e.to_string())?;
                eof = got < s.slice;
            }
            Err(e) if e.exit_code() == ExitCode::ShortRead => {
                return Err(format!(
                    "deflate stream cut short at byte {}",
                    pos + buf.len() as u64
                ))
            }
            Err(e) => return Err(format!("preflate: {:?}: {}", e.exit_code(), e.message())),
        }
    }
    let mut t8 = Vec::new();
    read_at(f, pos, 8, &mut t8).map_err(|e| e.to_string())?;
    let trailer: [u8; 8] = t8
        .try_into()
        .map_err(|_| format!("cut short in the gzip trailer at byte {pos}"))?;
    let (want_crc, want_isize) = gzip::trailer(&trailer);
    Ok(Member {
        offset,
        header,
        deflate_len: pos - offset - hlen as u64,
        trailer,
        plain_len,
        plain_offset,
        chunks,
        crc_ok: want_crc == crc.finalize() && want_isize == plain_len as u32,
        secs: t.elapsed().as_secs_f64(),
        cpu: rss::cpu_s() - c,
    })
}

/// Rebuilds one member from its content and side data, comparing every
/// output byte with the original file. Returns the seconds it took (wall, CPU).
fn rebuild_member(m: &Member, orig: &mut File, plain: &mut File) -> Result<(f64, f64), String> {
    let t = Instant::now();
    let c = rss::cpu_s();
    let mut rec = RecreateStreamProcessor::new();
    let mut at = m.offset + m.header.len() as u64;
    plain
        .seek(SeekFrom::Start(m.plain_offset))
        .map_err(|e| e.to_string())?;
    let mut text = Vec::new();
    let mut want = Vec::new();
    for (i, c) in m.chunks.iter().enumerate() {
        text.resize(c.plain, 0);
        plain.read_exact(&mut text).map_err(|e| e.to_string())?;
        let (out, _) = rec
            .recompress(&mut Cursor::new(&text), &c.corrections)
            .map_err(|e| format!("rebuild of chunk {i}: {:?}: {}", e.exit_code(), e.message()))?;
        want.clear();
        read_at(orig, at, out.len(), &mut want).map_err(|e| e.to_string())?;
        if out != want {
            return Err(format!(
                "rebuilt chunk {i} differs from the original at or after byte {at}"
            ));
        }
        at += out.len() as u64;
    }
    if at != m.offset + m.header.len() as u64 + m.deflate_len {
        return Err(format!(
            "rebuild ended at byte {at}, the deflate stream at {}",
            m.offset + m.gz_len() - 8
        ));
    }
    // Header and trailer are kept verbatim: check them too, so the whole
    // member is compared.
    for (bytes, pos) in [(&m.header[..], m.offset), (&m.trailer[..], at)] {
        want.clear();
        read_at(orig, pos, bytes.len(), &mut want).map_err(|e| e.to_string())?;
        if want != bytes {
            return Err(format!(
                "kept gzip header/trailer differs from the original at byte {pos}"
            ));
        }
    }
    Ok((t.elapsed().as_secs_f64(), rss::cpu_s() - c))
}

fn member_json(m: &Member, rebuild: &Result<(f64, f64), String>) -> Value {
    let mb = |bytes: u64, s: f64| if s > 0.0 { bytes as f64 / 1e6 / s } else { 0.0 };
    json!({
        "offset": m.offset,
        "gz_bytes": m.gz_len(),
        "plain_bytes": m.plain_len,
        "crc_ok": m.crc_ok,
        "chunks": m.chunks.len(),
        "corrections_bytes": m.chunks.iter().map(|c| c.corrections.len()).sum::<usize>(),
        "side_data_bytes": m.side_data(),
        "analysis_s": m.secs,
        "analysis_cpu_s": m.cpu,
        "analysis_mb_s_gz": mb(m.gz_len(), m.secs),
        "analysis_cpu_mb_s_gz": mb(m.gz_len(), m.cpu),
        "bit_exact": rebuild.is_ok(),
        "rebuildable": rebuild.is_ok() && m.crc_ok,
        "rebuild_s": rebuild.as_ref().ok().map(|r| r.0),
        "rebuild_cpu_s": rebuild.as_ref().ok().map(|r| r.1),
        "rebuild_mb_s_gz": rebuild.as_ref().ok().map(|r| mb(m.gz_len(), r.0)),
        "rebuild_cpu_mb_s_gz": rebuild.as_ref().ok().map(|r| mb(m.gz_len(), r.1)),
        "rebuild_error": rebuild.as_ref().err(),
    })
}

/// Probes every member of `path`; `scratch` holds the content while it runs.
pub fn probe_file(path: &Path, scratch: &Path, s: Settings) -> Result<Value, String> {
    let open = |p: &Path| File::open(p).map_err(|e| format!("open {}: {e}", p.display()));
    let mut f = open(path)?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let plain_path = scratch.join(format!("gzprobe-{}.plain", std::process::id()));
    let mut plain_out = File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&plain_path)
        .map_err(|e| format!("create {}: {e}", plain_path.display()))?;
    let _ = std::fs::remove_file(&plain_path); // unlinked: gone when the probe exits

    // Analysis of each member in turn, then what follows the last one.
    rss::reset_peak();
    let mut members = Vec::new();
    let mut failure = None;
    let mut off = 0u64;
    let mut plain_off = 0u64;
    let mut trailing = 0u64;
    let mut trailing_zero = true;
    while off < size {
        let mut magic = Vec::new();
        read_at(&mut f, off, 2, &mut magic).map_err(|e| e.to_string())?;
        if magic != [0x1f, 0x8b] && !members.is_empty() {
            let mut rest = Vec::new();
            read_at(&mut f, off, (size - off) as usize, &mut rest).map_err(|e| e.to_string())?;
            trailing = rest.len() as u64;
            trailing_zero = rest.iter().all(|&b| b == 0);
            break;
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            analyze_member(&mut f, off, &mut plain_out, plain_off, s)
        }));
        match r {
            Ok(Ok(m)) => {
                off += m.gz_len();
                plain_off += m.plain_len;
                members.push(m);
            }
            Ok(Err(e)) => {
                failure = Some(json!({"member_offset": off, "error": e, "panicked": false}));
                break;
            }
            Err(p) => {
                failure =
                    Some(json!({"member_offset": off, "error": panic_text(p), "panicked": true}));
                break;
            }
        }
    }
    let analysis_rss = rss::peak_kib();
    let analysis_s: f64 = members.iter().map(|m| m.secs).sum();
    let analysis_cpu: f64 = members.iter().map(|m| m.cpu).sum();

    rss::reset_peak();
    let mut orig = open(path)?;
    let mut out = Vec::new();
    let (mut rebuild_s, mut rebuild_cpu) = (0.0, 0.0);
    let mut all_ok = failure.is_none() && !members.is_empty();
    for m in &members {
        let r = catch_unwind(AssertUnwindSafe(|| {
            rebuild_member(m, &mut orig, &mut plain_out)
        }))
        .unwrap_or_else(|p| Err(format!("panic: {}", panic_text(p))));
        all_ok &= r.is_ok() && m.crc_ok;
        if let Ok((w, c)) = r {
            rebuild_s += w;
            rebuild_cpu += c;
        }
        out.push(member_json(m, &r));
    }
    let rebuild_rss = rss::peak_kib();
    let gz: u64 = members.iter().map(|m| m.gz_len()).sum();
    let plain: u64 = members.iter().map(|m| m.plain_len).sum();
    let side: u64 = members.iter().map(|m| m.side_data()).sum::<u64>() + trailing;
    let mb = |s: f64| if s > 0.0 { gz as f64 / 1e6 / s } else { 0.0 };
    Ok(json!({
        "file": path.display().to_string(),
        "bytes": size,
        "members": out,
        "failure": failure,
        "trailing_bytes": trailing,
        "trailing_all_zero": trailing > 0 && trailing_zero,
        "rebuildable": all_ok,
        "plain_bytes": plain,
        "side_data_bytes": side,
        "side_data_per_mille_of_gz": if size > 0 { side as f64 * 1000.0 / size as f64 } else { 0.0 },
        "analysis_s": analysis_s,
        "analysis_mb_s_gz": mb(analysis_s),
        "analysis_cpu_s": analysis_cpu,
        "analysis_cpu_mb_s_gz": mb(analysis_cpu),
        "analysis_cpu_mb_s_plain": if analysis_cpu > 0.0 { plain as f64 / 1e6 / analysis_cpu } else { 0.0 },
        "rebuild_s": rebuild_s,
        "rebuild_mb_s_gz": mb(rebuild_s),
        "rebuild_cpu_s": rebuild_cpu,
        "rebuild_cpu_mb_s_gz": mb(rebuild_cpu),
        "peak_rss_analysis_kib": analysis_rss,
        "peak_rss_rebuild_kib": rebuild_rss,
        "settings": {"slice": s.slice, "plain_limit": s.plain_limit, "preflate_verify": s.verify},
    }))
}
