//! Go's `base64.StdEncoding.DecodeString`, error offsets included.
//!
//! APM Server answers a badly encoded API key with Go's own error text
//! (`illegal base64 data at input byte N`), and agents' tests compare bodies byte for byte.
//! No Rust crate reports Go's offsets (or ignores `\r`/`\n` and non-zero trailing bits the way
//! Go does), so this is a direct port of `decodeQuantum` from Go's `encoding/base64`.

/// Decode standard, padded base64 exactly as Go does. `Err(n)` is Go's `CorruptInputError(n)`.
pub fn decode_std(src: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3 + 3);
    let mut si = 0;
    while si < src.len() {
        let mut dbuf = [0u8; 4];
        let mut dlen = 4;
        let mut trailing_garbage = None;
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if let Some(v) = decode_char(c) {
                dbuf[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(si - 1);
            }
            // Padding: this is the last quantum.
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    si = skip_newlines(src, si);
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != b'=' {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            si = skip_newlines(src, si);
            if si < src.len() {
                trailing_garbage = Some(si);
            }
            dlen = j;
            break;
        }
        let val = (u32::from(dbuf[0]) << 18)
            | (u32::from(dbuf[1]) << 12)
            | (u32::from(dbuf[2]) << 6)
            | u32::from(dbuf[3]);
        let bytes = [(val >> 16) as u8, (val >> 8) as u8, val as u8];
        out.extend_from_slice(&bytes[..dlen - 1]);
        if let Some(at) = trailing_garbage {
            return Err(at);
        }
    }
    Ok(out)
}

fn skip_newlines(src: &[u8], mut si: usize) -> usize {
    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
        si += 1;
    }
    si
}

fn decode_char(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::decode_std;

    #[test]
    fn valid_input_decodes() {
        assert_eq!(decode_std(b"aWQ6a2V5").unwrap(), b"id:key");
        assert_eq!(decode_std(b"aWQ6a2V5eQ==").unwrap(), b"id:keyy");
        assert_eq!(decode_std(b"aWQ6a2V5eXk=").unwrap(), b"id:keyyy");
        assert_eq!(decode_std(b"").unwrap(), b"");
        // Go skips CR/LF anywhere and accepts non-zero trailing bits.
        assert_eq!(decode_std(b"aWQ6\r\na2V5").unwrap(), b"id:key");
        assert_eq!(decode_std(b"aWR=").unwrap(), b"id");
    }

    /// Offsets as Go 1.22 reports them (`illegal base64 data at input byte N`).
    #[test]
    fn error_offsets_match_go() {
        assert_eq!(decode_std(b"a"), Err(0));
        assert_eq!(decode_std(b"abc"), Err(0));
        assert_eq!(decode_std(b"abcde"), Err(4));
        assert_eq!(decode_std(b"ab!d"), Err(2));
        assert_eq!(decode_std(b"not base64!"), Err(3));
        assert_eq!(decode_std(b"=abc"), Err(0));
        assert_eq!(decode_std(b"ab="), Err(3));
        assert_eq!(decode_std(b"ab=x"), Err(2));
        assert_eq!(decode_std(b"abc=d"), Err(4));
        assert_eq!(decode_std(b"YWJj-A=="), Err(4));
    }
}
