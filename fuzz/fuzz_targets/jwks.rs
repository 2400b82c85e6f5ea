#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| apm_auth_proxy::fuzzing::jwks(data));
