#![no_main]
use libfuzzer_sys::fuzz_target;

// pattern \0 subject
fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, subject) = text.split_once('\0').unwrap_or((text, ""));
    apm_auth_proxy::fuzzing::cors(pattern, subject);
});
