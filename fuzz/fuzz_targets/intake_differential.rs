#![no_main]
use apm_auth_proxy::fuzzing::{intake_differential, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, line)) = data.split_first() else {
        return;
    };
    let format = if mode & 1 == 0 {
        Format::V2
    } else {
        Format::V3
    };
    intake_differential(line, format);
});
