//! Reading OTLP export requests — OTLP/HTTP in protobuf or JSON, plain or compressed, and
//! unary gRPC `Export` calls — for what the proxy's rules need: the names APM Server gives
//! each resource (service, agent) and the count of spans, metric data points and log
//! records. The body is read whole (an export is one message and its resources can come in
//! any order) within a size bound, before and after decompression, and forwarded unchanged.
//!
//! A field walker rather than a full decode: the proxy needs three attributes per resource
//! and a count, and a full decode allocates every span (`bench/otlp.sh` measures both).

mod json;
mod names;
mod protobuf;
mod wire;

use std::io::Read;

pub use names::ResourceNames;
#[cfg(any(fuzzing, test))]
pub(crate) use names::{AttrValue, ResourceAttributes};

/// A protobuf export message (no framing, no compression) read as the proxy reads it.
#[cfg(any(fuzzing, test))]
pub(crate) fn read_message(message: &[u8], signal: Signal) -> Result<Summary, OtlpError> {
    protobuf::read(message, signal)
}

/// Which export: its path (`/v1/traces`) or gRPC method says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    /// An OTLP/HTTP path's signal.
    pub fn of_path(path: &str) -> Option<Signal> {
        match path {
            "/v1/traces" => Some(Signal::Traces),
            "/v1/metrics" => Some(Signal::Metrics),
            "/v1/logs" => Some(Signal::Logs),
            _ => None,
        }
    }

    /// An OTLP/gRPC method's signal.
    pub fn of_grpc_method(path: &str) -> Option<Signal> {
        match path {
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => Some(Signal::Traces),
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => {
                Some(Signal::Metrics)
            }
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => Some(Signal::Logs),
            _ => None,
        }
    }
}

/// How the export is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// OTLP/HTTP, `application/x-protobuf`.
    HttpProtobuf,
    /// OTLP/HTTP, `application/json`.
    HttpJson,
    /// A unary gRPC call: one length-prefixed message.
    Grpc,
}

impl Carrier {
    /// The OTLP/HTTP carrier a `Content-Type` names (media type only, any case, as Go's
    /// `mime.ParseMediaType` reads it); anything else is not read.
    pub fn of_content_type(value: Option<&[u8]>) -> Option<Carrier> {
        let value = value?;
        let media = value.split(|&b| b == b';').next().unwrap_or(value);
        let media = media.trim_ascii();
        if media.eq_ignore_ascii_case(b"application/x-protobuf") {
            Some(Carrier::HttpProtobuf)
        } else if media.eq_ignore_ascii_case(b"application/json") {
            Some(Carrier::HttpJson)
        } else {
            None
        }
    }
}

/// What one export request holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// One entry per resource, in order.
    pub resources: Vec<ResourceNames>,
    /// Spans, metric data points or log records.
    pub items: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OtlpError {
    #[error("not a valid OTLP export request")]
    Malformed,
    #[error("the compressed body is corrupt")]
    Compression,
    #[error("an encoding the proxy cannot read")]
    UnsupportedEncoding,
    #[error("larger than the proxy reads")]
    TooLarge,
}

/// Compression, from `Content-Encoding` (HTTP) or `grpc-encoding` (gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zlib,
}

impl Compression {
    /// `None` for an encoding the proxy cannot read (zstd, snappy, …).
    pub fn of_header(value: Option<&[u8]>) -> Option<Compression> {
        let Some(value) = value.map(<[u8]>::trim_ascii) else {
            return Some(Compression::None);
        };
        if value.is_empty() || value.eq_ignore_ascii_case(b"identity") {
            Some(Compression::None)
        } else if value.eq_ignore_ascii_case(b"gzip") || value.eq_ignore_ascii_case(b"x-gzip") {
            Some(Compression::Gzip)
        } else if value.eq_ignore_ascii_case(b"deflate") || value.eq_ignore_ascii_case(b"zlib") {
            Some(Compression::Zlib)
        } else {
            None
        }
    }
}

/// Read one request body carried by `carrier`, compressed with `compression` (for gRPC:
/// the message's, when its frame says compressed), decompressed to at most `max_size` bytes.
pub fn read_body(
    body: &[u8],
    signal: Signal,
    carrier: Carrier,
    compression: Option<Compression>,
    max_size: u64,
) -> Result<Summary, OtlpError> {
    let (message, compression) = match carrier {
        Carrier::Grpc => {
            let (compressed, message) = grpc_message(body)?;
            (
                message,
                if compressed {
                    compression
                } else {
                    Some(Compression::None)
                },
            )
        }
        _ => (body, compression),
    };
    let compression = compression.ok_or(OtlpError::UnsupportedEncoding)?;
    let decompressed;
    let message = match compression {
        Compression::None if message.len() as u64 > max_size => return Err(OtlpError::TooLarge),
        Compression::None => message,
        Compression::Gzip => {
            decompressed = decompress(flate2::read::MultiGzDecoder::new(message), max_size)?;
            &decompressed[..]
        }
        Compression::Zlib => {
            decompressed = decompress(flate2::read::ZlibDecoder::new(message), max_size)?;
            &decompressed[..]
        }
    };
    match carrier {
        Carrier::HttpJson => json::read(message, signal),
        Carrier::HttpProtobuf | Carrier::Grpc => protobuf::read(message, signal),
    }
}

/// A unary call's body: exactly one gRPC message (flag byte, 4-byte big-endian length).
fn grpc_message(body: &[u8]) -> Result<(bool, &[u8]), OtlpError> {
    let (&flag, rest) = body.split_first().ok_or(OtlpError::Malformed)?;
    let (len, message) = rest.split_first_chunk::<4>().ok_or(OtlpError::Malformed)?;
    let len = u32::from_be_bytes(*len) as usize;
    if flag > 1 || message.len() != len {
        return Err(OtlpError::Malformed);
    }
    Ok((flag == 1, message))
}

fn decompress(reader: impl Read, max_size: u64) -> Result<Vec<u8>, OtlpError> {
    let mut out = Vec::new();
    reader
        .take(max_size + 1)
        .read_to_end(&mut out)
        .map_err(|_| OtlpError::Compression)?;
    if out.len() as u64 > max_size {
        return Err(OtlpError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
