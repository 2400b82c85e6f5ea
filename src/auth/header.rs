//! Parsing of the `Authorization` header exactly as APM Server 7.15+ does it
//! (`internal/beater/auth/header.go`): trim, split at the first space, scheme names are
//! case-sensitive, and a header without a space counts as *missing*.

/// What the client presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No header, or one APM Server treats as missing (no space, empty).
    Missing,
    /// `Bearer <token>`; the token is verbatim (a double space leaves a leading space).
    Bearer(&'a [u8]),
    /// `ApiKey <base64(id:key)>`.
    ApiKey(&'a [u8]),
    /// Any other scheme, e.g. `Basic` or `bearer`.
    Unknown { scheme: &'a [u8] },
}

pub const BEARER: &[u8] = b"Bearer";
pub const API_KEY: &[u8] = b"ApiKey";

pub fn parse(value: Option<&[u8]>) -> Presented<'_> {
    let Some(value) = value else {
        return Presented::Missing;
    };
    let value = value.trim_ascii();
    match value.iter().position(|&b| b == b' ') {
        None | Some(0) => Presented::Missing,
        Some(i) => {
            let (scheme, rest) = (&value[..i], &value[i + 1..]);
            match scheme {
                BEARER => Presented::Bearer(rest),
                API_KEY => Presented::ApiKey(rest),
                _ => Presented::Unknown { scheme },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apm_parsing_rules() {
        assert_eq!(parse(None), Presented::Missing);
        assert_eq!(parse(Some(b"")), Presented::Missing);
        assert_eq!(parse(Some(b"Bearer")), Presented::Missing);
        assert_eq!(
            parse(Some(b"Bearer ")),
            Presented::Missing,
            "trimmed to 'Bearer'"
        );
        assert_eq!(parse(Some(b"  Bearer abc  ")), Presented::Bearer(b"abc"));
        assert_eq!(parse(Some(b"Bearer  abc")), Presented::Bearer(b" abc"));
        assert_eq!(parse(Some(b"ApiKey xyz")), Presented::ApiKey(b"xyz"));
        assert_eq!(
            parse(Some(b"bearer abc")),
            Presented::Unknown { scheme: b"bearer" }
        );
        assert_eq!(
            parse(Some(b"Basic dXNlcjpwYXNz")),
            Presented::Unknown { scheme: b"Basic" }
        );
    }
}
