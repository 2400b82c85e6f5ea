#![no_main]
use apm_auth_proxy::fuzzing::{otlp, otlp_signal, Carrier, Compression};
use libfuzzer_sys::fuzz_target;

// First byte: signal (mod 3), carrier (bits 2-3), compression (bits 4-5); the rest: the body.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let carrier = [Carrier::HttpProtobuf, Carrier::HttpJson, Carrier::Grpc];
    let compression = [Compression::None, Compression::Gzip, Compression::Zlib];
    let (c, z) = (usize::from(mode >> 2) % 3, usize::from(mode >> 4) % 3);
    otlp(body, otlp_signal(mode), carrier[c], Some(compression[z]));
});
