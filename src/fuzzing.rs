//! Entry points for the fuzz targets under `fuzz/` (not part of the proxy's API): the parsers
//! that read what clients send, and a reference decoder of intake lines written straight
//! from APM Server's rules, for a differential target.

use serde_json::Value;

use crate::admission::cors::glob;
use crate::admission::routes::check_path;
use crate::auth::go_base64::decode_std;
use crate::auth::header::{self, Presented};
use crate::config::ConfigFile;
use crate::intake::agent_config::query_param;
use crate::intake::decode::Names;
use crate::intake::decode::{self, Line};
use crate::intake::reader::{EventVisitor, IntakeReader};
use crate::settings::Settings;

pub use crate::intake::otlp::{Carrier, Compression, Signal};
pub use crate::intake::Format;

/// The `Authorization` parser, and the Go base64 of an `ApiKey` credential.
pub fn authorization(value: &[u8]) {
    if let Presented::ApiKey(credentials) = header::parse(Some(value)) {
        if let Ok(decoded) = decode_std(credentials) {
            // Go's decoder never yields more than 3/4 of its input.
            assert!(decoded.len() <= credentials.len() * 3 / 4 + 3);
        }
    }
}

/// Go's standard base64 (lenient as Go's is: non-zero trailing bits, CR/LF ignored): what
/// decodes survives a round trip through the canonical encoding.
pub fn go_base64(data: &[u8]) {
    if let Ok(decoded) = decode_std(data) {
        use base64::Engine;
        let canonical = base64::engine::general_purpose::STANDARD.encode(&decoded);
        assert_eq!(
            decode_std(canonical.as_bytes()).as_deref(),
            Ok(&decoded[..]),
            "{data:?}"
        );
    }
}

/// The canonical-path check: what passes has no dot segment, no escape, no empty segment.
pub fn path(raw: &[u8]) {
    if let Ok(path) = check_path(raw) {
        assert!(path.starts_with('/'));
        assert!(!path.contains('%') && !path.contains('\\'));
        let inner = &path[1..];
        for segment in inner
            .split('/')
            .take(inner.split('/').count().saturating_sub(1))
        {
            assert!(
                !segment.is_empty() && segment != "." && segment != "..",
                "{path}"
            );
        }
    }
}

/// The agent-config query parser (Go's `url.ParseQuery` rules).
pub fn query(text: &str) {
    if let Some(value) = query_param(text, "service.name") {
        assert!(!text.is_empty());
        let _ = value;
    }
}

/// The CORS origin matcher: a pattern without `*` matches only itself.
pub fn cors(pattern: &str, subject: &str) {
    let matched = glob(pattern, subject);
    if !pattern.contains('*') {
        assert_eq!(matched, pattern == subject);
    }
}

/// A key set a JWT is checked against: one P-256 key (`kid` `fuzz`), made once.
fn jwt_verifier() -> &'static crate::auth::jwt::JwtVerifier {
    use crate::auth::jwt::{issuers, JwtVerifier, KeySet};
    static VERIFIER: std::sync::OnceLock<JwtVerifier> = std::sync::OnceLock::new();
    VERIFIER.get_or_init(|| {
        let text = "[[auth.jwt]]\nname = \"idp\"\nissuer = \"https://idp.example.com\"\n\
                    discovery = true\naudiences = [\"apm\"]\n";
        let file = ConfigFile::parse(text).expect("the fuzz issuer parses");
        let verifier = JwtVerifier::new(issuers(&file.auth.jwt).expect("valid"));
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
        let point = pair.public_key_raw();
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "fuzz",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
        let algorithms = verifier.issuers()[0].settings.algorithms.clone();
        let set = KeySet::parse(jwks.to_string().as_bytes(), &algorithms).expect("a key set");
        verifier.issuers()[0].set_keys(set);
        verifier
    })
}

/// A bearer JWT from a client: never accepted without the issuer's key's signature (which
/// the fuzzer cannot make), and never a panic.
pub fn jwt(token: &[u8]) {
    let verdict = jwt_verifier().verify(token, std::time::SystemTime::now());
    assert!(verdict.is_err(), "accepted without a signature: {token:?}");
}

/// A JWKS document from an identity provider: what it yields are keys of an accepted kind.
pub fn jwks(document: &[u8]) {
    use jsonwebtoken::Algorithm::*;
    let all = [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ];
    if let Ok(set) = crate::auth::jwt::KeySet::parse(document, &all) {
        assert!(!set.keys.is_empty());
    }
}

/// The configuration loader, file model and typed settings.
pub fn config(text: &str) {
    if let Ok(file) = ConfigFile::parse(text) {
        let _ = Settings::try_from(&file);
    }
}

struct Collect(Vec<Names>);

impl EventVisitor for Collect {
    type Reject = ();
    fn metadata(&mut self, names: Names) -> Result<(), ()> {
        self.0.push(names);
        Ok(())
    }
    fn event(&mut self, names: Names) -> Result<(), ()> {
        self.0.push(names);
        Ok(())
    }
}

/// The streaming intake reader over any body, encoding and chunking.
pub fn intake(body: &[u8], format: Format, encoding: Option<&[u8]>, chunk: usize) {
    let mut reader =
        IntakeReader::with_limit(encoding, format, 4096, Some(1 << 20), Collect(Vec::new()));
    for part in body.chunks(chunk.max(1)) {
        if reader.feed(part).is_err() {
            return;
        }
    }
    let _ = reader.finish();
}

/// Differential: the proxy's line decoder against a reference written from APM Server's
/// rules over `serde_json::Value` (which cannot see duplicate keys, so lines the proxy calls
/// ambiguous are skipped). Where both read a line, they must read the same names.
pub fn intake_differential(line: &[u8], format: Format) {
    let ours = decode::line(line, format);
    let Ok(ours) = ours else { return };
    // `Value` reads an object keyed by serde_json's private raw-value token as the JSON text
    // inside it; the proxy's decoder and Go see an ordinary key. The reference cannot judge.
    if line
        .windows(RAW_VALUE_TOKEN.len())
        .any(|w| w == RAW_VALUE_TOKEN)
    {
        return;
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(line) else {
        // Valid JSON that `Value` cannot hold (a number beyond f64, as `77e1117`): Go's
        // decoder skips unknown values without converting them, so only the reference is
        // out of its depth. Anything else the reference cannot parse is a finding.
        if serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok() {
            return;
        }
        panic!(
            "the proxy read a line the reference cannot parse: {:?}",
            String::from_utf8_lossy(line)
        );
    };
    assert!(
        parsed.is_object(),
        "the proxy read a line that is not an object: {:?}",
        String::from_utf8_lossy(line)
    );
    assert_eq!(
        ours,
        reference_line(format, line),
        "{:?}",
        String::from_utf8_lossy(line)
    );
}

const RAW_VALUE_TOKEN: &[u8] = b"$serde_json::private::RawValue";

fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| fold(k) == name)
        .map(|(_, v)| v)
}

fn reference_line(format: Format, raw: &[u8]) -> Line {
    let (meta, events, service, name, agent, context): (&str, &[&str], &str, &str, &str, &str) =
        match format {
            Format::V2 => (
                "metadata",
                &["transaction", "span", "error", "metricset", "log"],
                "service",
                "name",
                "agent",
                "context",
            ),
            Format::V3 => ("m", &["x", "y", "e", "me", "l"], "se", "n", "a", "c"),
        };
    // The first key in the document, which a `Value` map does not keep: read it off the text.
    let mut de = serde_json::Deserializer::from_slice(raw);
    let first: Option<String> = {
        use serde::Deserializer;
        struct First;
        impl<'de> serde::de::Visitor<'de> for First {
            type Value = Option<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Option<String>, A::Error> {
                let first = map.next_key::<String>()?;
                if first.is_some() {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(first)
            }
        }
        (&mut de).deserialize_map(First).ok().flatten()
    };
    let Some(first) = first.map(|k| fold(&k)) else {
        return Line::Other;
    };
    let whole: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let value = whole
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| fold(k) == first))
        .map(|(_, v)| v.clone());
    let names = |svc: Option<&Value>| Names {
        service: svc
            .and_then(|s| field(s, name))
            .and_then(|v| v.as_str())
            .map(str::to_string),
        agent: svc
            .and_then(|s| field(s, agent))
            .and_then(|a| field(a, name))
            .and_then(|v| v.as_str())
            .map(str::to_string),
    };
    match value {
        Some(v) if first == meta => Line::Metadata(names(field(&v, service))),
        Some(v) if events.contains(&first.as_str()) => {
            Line::Event(names(field(&v, context).and_then(|c| field(c, service))))
        }
        _ => Line::Other,
    }
}

/// The OTLP reader on any body: it never panics, and every resource it reports has the
/// names APM Server would store (a service of `[a-zA-Z0-9 _-]`, at most 1024 characters, an
/// agent), whatever the carrier and compression.
pub fn otlp(body: &[u8], signal: Signal, carrier: Carrier, compression: Option<Compression>) {
    if let Ok(summary) = crate::intake::otlp::read_body(body, signal, carrier, compression, 1 << 20)
    {
        for names in summary.resources {
            assert!(!names.service.is_empty() && !names.agent.is_empty());
            assert!(names.service.chars().count() <= 1024, "{names:?}");
            assert!(
                (names.service.chars()).all(|c| c.is_ascii_alphanumeric() || " _-".contains(c)),
                "{names:?}"
            );
        }
    }
}

/// One signal per value of a mode byte.
pub fn otlp_signal(mode: u8) -> Signal {
    match mode % 3 {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        _ => Signal::Logs,
    }
}

/// What the proxy's walker reads of a protobuf export: each resource's (service, agent), and
/// the spans, data points or log records; `None` when it refuses the message.
pub fn otlp_walk(message: &[u8], signal: Signal) -> Option<(Vec<(String, String)>, u64)> {
    let summary = crate::intake::otlp::read_message(message, signal).ok()?;
    let names = summary.resources.into_iter();
    Some((names.map(|n| (n.service, n.agent)).collect(), summary.items))
}

/// The names APM Server gives a resource with these attributes in order (key, and the value
/// when it is a string): for a full decoder to be held against [`otlp_walk`].
pub fn otlp_names(attributes: &[(&[u8], Option<&[u8]>)]) -> (String, String) {
    use crate::intake::otlp::{AttrValue, ResourceAttributes};
    let mut resource = ResourceAttributes::default();
    for (key, value) in attributes {
        resource.set(key, value.map_or(AttrValue::Other, AttrValue::Str));
    }
    let names = resource.names();
    (names.service, names.agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed and every finding kept in `fuzz/corpus` runs through its target on every
    /// test run: what fuzzing found once stays fixed.
    #[test]
    fn the_corpus_passes() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut ran = 0;
        for target in std::fs::read_dir(&root).unwrap() {
            let target = target.unwrap().path();
            let name = target.file_name().unwrap().to_string_lossy().to_string();
            for input in std::fs::read_dir(&target).unwrap() {
                let data = std::fs::read(input.unwrap().path()).unwrap();
                let text = std::str::from_utf8(&data).ok();
                let split = |d: &[u8]| d.split_first().map(|(m, rest)| (*m, rest.to_vec()));
                match name.as_str() {
                    "authorization" => authorization(&data),
                    "go_base64" => go_base64(&data),
                    "path" => path(&data),
                    "query" => text.into_iter().for_each(query),
                    "cors" => text.into_iter().for_each(|t| {
                        let (p, s) = t.split_once('\0').unwrap_or((t, ""));
                        cors(p, s)
                    }),
                    "config" => text.into_iter().for_each(config),
                    "jwt" => jwt(&data),
                    "jwks" => jwks(&data),
                    "intake" => {
                        if let Some((mode, body)) = split(&data) {
                            let format = if mode & 1 == 0 {
                                Format::V2
                            } else {
                                Format::V3
                            };
                            intake(&body, format, None, usize::from(mode >> 3) + 1);
                        }
                    }
                    "intake_differential" => {
                        if let Some((mode, line)) = split(&data) {
                            let format = if mode & 1 == 0 {
                                Format::V2
                            } else {
                                Format::V3
                            };
                            intake_differential(&line, format);
                        }
                    }
                    "otlp" => {
                        if let Some((mode, body)) = split(&data) {
                            let carrier = [Carrier::HttpProtobuf, Carrier::HttpJson, Carrier::Grpc];
                            let compression =
                                [Compression::None, Compression::Gzip, Compression::Zlib];
                            let (c, z) = (usize::from(mode >> 2) % 3, usize::from(mode >> 4) % 3);
                            otlp(&body, otlp_signal(mode), carrier[c], Some(compression[z]));
                        }
                    }
                    "otlp_differential" => {
                        if let Some((mode, message)) = split(&data) {
                            let signal = otlp_signal(mode);
                            let decoded =
                                crate::intake::otlp::tests::decoded_summary(&message, signal);
                            if let Some(decoded) = decoded {
                                let walked = crate::intake::otlp::read_message(&message, signal);
                                assert_eq!(walked, Ok(decoded));
                            }
                        }
                    }
                    other => panic!("no target for corpus {other}"),
                }
                ran += 1;
            }
        }
        assert!(ran >= 20, "{ran} corpus inputs");
    }
}
