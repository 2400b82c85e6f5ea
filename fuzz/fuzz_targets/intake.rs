#![no_main]
use apm_auth_proxy::fuzzing::{intake, Format};
use libfuzzer_sys::fuzz_target;

// First byte: format, encoding and chunk size; the rest: the body.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let format = if mode & 1 == 0 {
        Format::V2
    } else {
        Format::V3
    };
    let encoding: Option<&[u8]> = match (mode >> 1) & 3 {
        0 => None,
        1 => Some(b"gzip"),
        2 => Some(b"deflate"),
        _ => Some(b"identity"),
    };
    intake(body, format, encoding, usize::from(mode >> 3) + 1);
});
