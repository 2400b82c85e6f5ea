//! The service and agent names APM Server gives an OTLP resource, from its attributes
//! (elastic/apm-data `input/otlp/metadata.go`, `translateResourceMetadata`): the rules the
//! proxy applies must see the names APM Server will store, not the raw attributes.

/// APM Server keeps at most this many characters of a keyword.
const KEYWORD_LENGTH: usize = 1024;

/// The resource attributes the names come from, as the decoder met them (strings as bytes:
/// Go keeps invalid UTF-8 as it is). A later attribute of the same key replaces an earlier
/// one, as APM Server's loop over them does; `telemetry.distro.name` is looked up and the
/// first one counts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResourceAttributes<'a> {
    pub service_name: Option<AttrValue<'a>>,
    pub sdk_name: Option<AttrValue<'a>>,
    pub sdk_language: Option<AttrValue<'a>>,
    pub distro_name: Option<AttrValue<'a>>,
    pub exporter_version: Option<AttrValue<'a>>,
}

/// An attribute's value: a string, or anything else (which reads as `""` in APM Server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrValue<'a> {
    Str(&'a [u8]),
    Other,
}

impl<'a> AttrValue<'a> {
    fn str(self) -> &'a [u8] {
        match self {
            AttrValue::Str(s) => s,
            AttrValue::Other => b"",
        }
    }
}

impl<'a> ResourceAttributes<'a> {
    /// Record one attribute.
    pub fn set(&mut self, key: &[u8], value: AttrValue<'a>) {
        let slot = match key {
            b"service.name" => &mut self.service_name,
            b"telemetry.sdk.name" => &mut self.sdk_name,
            b"telemetry.sdk.language" => &mut self.sdk_language,
            b"opencensus.exporterversion" => &mut self.exporter_version,
            b"telemetry.distro.name" => {
                self.distro_name.get_or_insert(value);
                return;
            }
            _ => return,
        };
        *slot = Some(value);
    }

    /// The names APM Server stores for this resource's events.
    pub fn names(&self) -> ResourceNames {
        fn get<'v>(v: &Option<AttrValue<'v>>) -> &'v [u8] {
            v.map_or(&b""[..], |v| v.str())
        }
        let mut language = truncate(get(&self.sdk_language));
        let mut agent = truncate(get(&self.sdk_name));
        let exporter = get(&self.exporter_version);
        if exporter.starts_with(b"Jaeger") {
            // `Jaeger-<language>-<version>`
            let parts: Vec<&[u8]> = exporter.splitn(3, |&b| b == b'-').collect();
            if language.is_empty() && parts.len() == 3 {
                language = go_string(parts[1]);
            }
            agent = "Jaeger".into();
        }
        let mut service = clean_service_name(get(&self.service_name));
        if service.is_empty() {
            service = "unknown".into();
        }
        if agent.is_empty() {
            agent = "otlp".into();
        }
        let distro = get(&self.distro_name);
        if !distro.is_empty() {
            let language = if language.is_empty() {
                "unknown"
            } else {
                &language
            };
            agent = format!("{agent}/{language}/{}", go_string(distro));
        } else if !language.is_empty() {
            agent = format!("{agent}/{language}");
        }
        ResourceNames { service, agent }
    }
}

/// What APM Server names a resource's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    pub service: String,
    pub agent: String,
}

/// Go's view of a string's characters: valid UTF-8 as it is, each byte of an invalid
/// sequence one U+FFFD (how `for range` and the regexp package read it).
fn go_chars(bytes: &[u8]) -> impl Iterator<Item = char> + '_ {
    bytes.utf8_chunks().flat_map(|chunk| {
        let invalid = chunk.invalid().iter().map(|_| char::REPLACEMENT_CHARACTER);
        chunk.valid().chars().chain(invalid)
    })
}

/// A Go string as Rust text (the same characters).
fn go_string(bytes: &[u8]) -> String {
    go_chars(bytes).collect()
}

/// apm-data's `truncate`: the first 1024 characters.
fn truncate(bytes: &[u8]) -> String {
    go_chars(bytes).take(KEYWORD_LENGTH).collect()
}

/// apm-data's `cleanServiceName`: truncated, and every character but `[a-zA-Z0-9 _-]`
/// replaced by `_`.
fn clean_service_name(bytes: &[u8]) -> String {
    go_chars(bytes)
        .take(KEYWORD_LENGTH)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(attrs: &[(&str, AttrValue<'static>)]) -> (String, String) {
        let mut r = ResourceAttributes::default();
        for (k, v) in attrs {
            r.set(k.as_bytes(), *v);
        }
        let n = r.names();
        (n.service, n.agent)
    }

    fn s(v: &'static str) -> AttrValue<'static> {
        AttrValue::Str(v.as_bytes())
    }

    #[test]
    fn names_follow_apm_data() {
        assert_eq!(names(&[]), ("unknown".into(), "otlp".into()));
        let web = [
            ("service.name", s("shop")),
            ("telemetry.sdk.name", s("opentelemetry")),
            ("telemetry.sdk.language", s("webjs")),
        ];
        assert_eq!(names(&web), ("shop".into(), "opentelemetry/webjs".into()));
        let mut distro = web.to_vec();
        distro.push(("telemetry.distro.name", s("elastic")));
        distro.push(("telemetry.distro.name", s("second")));
        assert_eq!(names(&distro).1, "opentelemetry/webjs/elastic");
        assert_eq!(
            names(&[("telemetry.distro.name", s("d"))]).1,
            "otlp/unknown/d"
        );
        // The last of a repeated key counts; a non-string value reads as "".
        assert_eq!(
            names(&[("service.name", s("a")), ("service.name", s("b"))]).0,
            "b"
        );
        assert_eq!(
            names(&[("service.name", s("a")), ("service.name", AttrValue::Other)]).0,
            "unknown"
        );
        assert_eq!(
            names(&[("opencensus.exporterversion", s("Jaeger-Go-2.20.0"))]).1,
            "Jaeger/Go"
        );
    }

    #[test]
    fn service_names_are_cleaned_as_apm_server_stores_them() {
        assert_eq!(clean_service_name(b"my shop-1_a"), "my shop-1_a");
        assert_eq!(clean_service_name(b"shop!/\xc3\xa9"), "shop___");
        // Each byte of invalid UTF-8 is one character.
        assert_eq!(clean_service_name(b"a\xe2\x82b"), "a__b");
        assert_eq!(clean_service_name(&[b'x'; 2000]).len(), 1024);
    }
}
