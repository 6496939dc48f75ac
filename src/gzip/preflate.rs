//! The one home of preflate-rs: a member's deflate stream taken apart
//! piece by piece, and put back together. preflate panics on some inputs
//! (its own asserts, arithmetic overflow in debug builds); a panic here is
//! caught and becomes an error of the piece, so the caller cuts the member
//! (analysis) or reports damage (rebuild), never unwinds through the store.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use preflate_rs::{ExitCode, PreflateConfig, PreflateStreamProcessor, RecreateStreamProcessor};

use super::{MAX_PIECE_GZ, MAX_PIECE_PLAIN, PIECE_PLAIN_LIMIT};

/// Takes one member's deflate stream apart.
pub(super) struct Analyzer {
    proc: PreflateStreamProcessor,
}

/// A piece taken: its gz length and corrections; its content is
/// [`Analyzer::content`] until the next piece.
pub(super) struct Taken {
    pub gz_len: u32,
    pub corrections: Vec<u8>,
}

/// Why no piece was taken.
pub(super) enum Stop {
    /// No whole deflate block in the bytes given: give more.
    NeedMore,
    /// The stream cannot be taken further (invalid deflate, not
    /// predictable, a preflate error or panic): the reason.
    Failed(String),
}

impl Analyzer {
    pub(super) fn new() -> Analyzer {
        Analyzer {
            proc: PreflateStreamProcessor::new(&PreflateConfig {
                // zlib's own maximum (level 9); preflate's default.
                max_chain_length: 4096,
                plain_text_limit: PIECE_PLAIN_LIMIT,
                // Each piece is recompressed and compared before it is
                // accepted: a piece that would not rebuild cuts the member
                // at analysis, not at a read.
                verify_compression: true,
            }),
        }
    }

    /// Take the next piece from `gz`, the member's deflate bytes not taken
    /// yet (as many as the caller has; the piece ends at the last block
    /// boundary in them, or at preflate's plain-text limit).
    pub(super) fn take(&mut self, gz: &[u8]) -> Result<Taken, Stop> {
        let proc = &mut self.proc;
        // The previous piece's content is no longer needed (the caller
        // wrote it); keep the 32 KiB dictionary only.
        proc.shrink_to_dictionary();
        let r = catch_unwind(AssertUnwindSafe(|| proc.decompress(gz)))
            .map_err(|p| Stop::Failed(format!("preflate panicked: {}", panic_message(&*p))))?;
        let r = match r {
            Ok(r) => r,
            Err(e) if e.exit_code() == ExitCode::ShortRead => return Err(Stop::NeedMore),
            Err(e) => {
                return Err(Stop::Failed(format!(
                    "preflate: {} ({:?})",
                    e.message(),
                    e.exit_code()
                )))
            }
        };
        if r.compressed_size == 0 && !self.proc.is_done() {
            return Err(Stop::NeedMore);
        }
        let plain = self.proc.plain_text().len();
        if plain > MAX_PIECE_PLAIN as usize || r.compressed_size > MAX_PIECE_GZ as usize {
            return Err(Stop::Failed(format!(
                "a piece of {} gz bytes inflating to {plain} bytes is over the piece bounds",
                r.compressed_size
            )));
        }
        Ok(Taken {
            gz_len: r.compressed_size as u32,
            corrections: r.corrections,
        })
    }

    /// The content of the piece last taken.
    pub(super) fn content(&self) -> &[u8] {
        self.proc.plain_text().text()
    }

    /// Whether the deflate stream ended with the piece last taken.
    pub(super) fn is_done(&self) -> bool {
        self.proc.is_done()
    }
}

/// Puts one member's deflate stream back together, piece by piece, in
/// order (the predictor's state carries from one piece to the next).
pub(super) struct Recompressor {
    proc: RecreateStreamProcessor,
    /// A panic left `proc` in an unknown state.
    poisoned: bool,
}

impl Recompressor {
    pub(super) fn new() -> Recompressor {
        Recompressor {
            proc: RecreateStreamProcessor::new(),
            poisoned: false,
        }
    }

    /// The gz bytes of the next piece, from its content and corrections.
    pub(super) fn piece(&mut self, content: &[u8], corrections: &[u8]) -> Result<Vec<u8>, String> {
        if self.poisoned {
            return Err("an earlier piece of the member failed".into());
        }
        let proc = &mut self.proc;
        match catch_unwind(AssertUnwindSafe(|| {
            proc.recompress(&mut Cursor::new(content), corrections)
        })) {
            Ok(Ok((gz, _blocks))) => Ok(gz),
            Ok(Err(e)) => {
                self.poisoned = true;
                Err(format!("preflate: {} ({:?})", e.message(), e.exit_code()))
            }
            Err(p) => {
                self.poisoned = true;
                Err(format!("preflate panicked: {}", panic_message(&*p)))
            }
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
