//! The gzip member framing (RFC 1952) around each deflate stream: what the
//! probe keeps verbatim as side data (header, trailer) and checks (CRC32, ISIZE).

/// Why a header could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the header needs: read more, or the file is cut short.
    Short,
    /// Not a gzip member here (magic, method or reserved flags wrong).
    NotGzip(String),
}

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

/// The length of the gzip header at the start of `buf`.
pub fn header_len(buf: &[u8]) -> Result<usize, HeaderError> {
    if buf.len() < 10 {
        if buf.len() >= 2 && buf[..2] != [0x1f, 0x8b] {
            return Err(HeaderError::NotGzip("no gzip magic".into()));
        }
        return Err(HeaderError::Short);
    }
    if buf[..2] != [0x1f, 0x8b] {
        return Err(HeaderError::NotGzip("no gzip magic".into()));
    }
    if buf[2] != 8 {
        return Err(HeaderError::NotGzip(format!(
            "compression method {} (not deflate)",
            buf[2]
        )));
    }
    let flags = buf[3];
    if flags & 0xe0 != 0 {
        return Err(HeaderError::NotGzip(format!(
            "reserved flag bits set ({flags:#x})"
        )));
    }
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let x = buf.get(pos..pos + 2).ok_or(HeaderError::Short)?;
        pos += 2 + u16::from_le_bytes([x[0], x[1]]) as usize;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = buf.get(pos..).ok_or(HeaderError::Short)?;
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(HeaderError::Short)?;
            pos += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    if pos > buf.len() {
        return Err(HeaderError::Short);
    }
    Ok(pos)
}

/// CRC32 and ISIZE of a member's trailer.
pub fn trailer(t: &[u8; 8]) -> (u32, u32) {
    (
        u32::from_le_bytes([t[0], t[1], t[2], t[3]]),
        u32::from_le_bytes([t[4], t[5], t[6], t[7]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header_is_ten_bytes() {
        let h = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xaa];
        assert_eq!(header_len(&h), Ok(10));
    }

    #[test]
    fn name_extra_and_hcrc_are_counted() {
        let mut h = vec![0x1f, 0x8b, 8, FNAME | FEXTRA | FHCRC, 0, 0, 0, 0, 0, 3];
        h.extend_from_slice(&[3, 0, 1, 2, 3]); // FEXTRA: 3 bytes
        h.extend_from_slice(b"a.img\0");
        h.extend_from_slice(&[9, 9]); // FHCRC
        assert_eq!(header_len(&h), Ok(h.len()));
        assert_eq!(header_len(&h[..h.len() - 3]), Err(HeaderError::Short));
    }

    #[test]
    fn wrong_magic_is_not_gzip() {
        assert!(matches!(header_len(&[0; 16]), Err(HeaderError::NotGzip(_))));
        assert!(matches!(
            header_len(&[0x1f, 0x8b, 7, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::NotGzip(_))
        ));
    }
}
