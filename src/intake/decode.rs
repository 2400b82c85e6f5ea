//! One intake line, read for the names the proxy checks exactly as APM Server's decoder will
//! read them, so an allow-list cannot be walked around by a key only one of the two sees:
//! keys match case-insensitively as Go's jsoniter (without `CaseSensitive`) matches struct
//! fields — ASCII case, and the two non-ASCII letters that fold to ASCII ones (`ſ`, `K`);
//! an event's type is its line's *first* key; RUM v3 bodies have only `m` metadata, v2 only
//! `metadata`. Lines that two readers could read differently — a key present twice in
//! different cases, more than one event key — are refused.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Service and agent names an event names (metadata, or a per-event override).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub service: Option<String>,
    pub agent: Option<String>,
}

/// Which intake protocol a body speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `/intake/v2/events`, `/intake/v2/rum/events`.
    V2,
    /// `/intake/v3/rum/events` (abbreviated keys).
    V3,
}

impl Format {
    fn metadata_key(self) -> &'static str {
        match self {
            Format::V2 => "metadata",
            Format::V3 => "m",
        }
    }

    fn event_keys(self) -> &'static [&'static str] {
        match self {
            Format::V2 => &["transaction", "span", "error", "metricset", "log"],
            Format::V3 => &["x", "y", "e", "me", "l"],
        }
    }

    fn service(self) -> &'static str {
        match self {
            Format::V2 => "service",
            Format::V3 => "se",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::V2 => "name",
            Format::V3 => "n",
        }
    }

    fn agent(self) -> &'static str {
        match self {
            Format::V2 => "agent",
            Format::V3 => "a",
        }
    }

    fn context(self) -> &'static str {
        match self {
            Format::V2 => "context",
            Format::V3 => "c",
        }
    }
}

/// What a line is.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Metadata(Names),
    /// An event, with the names its context overrides.
    Event(Names),
    /// Anything else (a blank line, an unknown type): APM Server decides.
    Other,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LineError {
    InvalidJson,
    /// Keys that APM Server and a case-sensitive reader would read differently.
    Ambiguous,
}

/// A key as Go matches it to a field name: `strings.EqualFold` for the ASCII names here.
fn fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17f}' => 's',  // LATIN SMALL LETTER LONG S
            '\u{212a}' => 'k', // KELVIN SIGN
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// An object's keys (folded) and raw values, in document order, duplicates kept.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::new();
                while let Some((key, value)) =
                    map.next_entry::<std::borrow::Cow<'de, str>, &'de RawValue>()?
                {
                    fields.push((fold(&key), value));
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Fields<'a> {
    fn parse(raw: &'a str) -> Option<Fields<'a>> {
        serde_json::from_str(raw).ok()
    }

    /// The value of `name`; ambiguous when it is there more than once.
    fn get(&self, name: &str) -> Result<Option<&'a RawValue>, LineError> {
        let mut found = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| *v);
        let first = found.next();
        match found.next() {
            Some(_) => Err(LineError::Ambiguous),
            None => Ok(first),
        }
    }
}

/// `name` of the object `raw` as a string (other JSON types: none, as APM would refuse them).
fn string_field(raw: &RawValue, name: &str) -> Result<Option<String>, LineError> {
    let Some(fields) = Fields::parse(raw.get()) else {
        return Ok(None);
    };
    Ok(fields
        .get(name)?
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok()))
}

/// The service and agent names of a `service` object.
fn service_names(raw: Option<&RawValue>, f: Format) -> Result<Names, LineError> {
    let Some(fields) = raw.and_then(|r| Fields::parse(r.get())) else {
        return Ok(Names::default());
    };
    let service = match fields.get(f.name())? {
        Some(v) => serde_json::from_str::<String>(v.get()).ok(),
        None => None,
    };
    let agent = match fields.get(f.agent())? {
        Some(a) => string_field(a, f.name())?,
        None => None,
    };
    Ok(Names { service, agent })
}

/// Read one non-blank line of a body in format `f`.
pub fn line(text: &[u8], f: Format) -> Result<Line, LineError> {
    let text = std::str::from_utf8(text).map_err(|_| LineError::InvalidJson)?;
    let fields: Fields = serde_json::from_str(text).map_err(|_| LineError::InvalidJson)?;
    let metadata = f.metadata_key();
    let events = f.event_keys();
    let typed = fields
        .0
        .iter()
        .filter(|(k, _)| k == metadata || events.contains(&k.as_str()))
        .count();
    if typed > 1 {
        return Err(LineError::Ambiguous);
    }
    let Some((first, value)) = fields.0.first() else {
        return Ok(Line::Other);
    };
    if first == metadata {
        let service = match Fields::parse(value.get()) {
            Some(m) => m.get(f.service())?,
            None => None,
        };
        return Ok(Line::Metadata(service_names(service, f)?));
    }
    if events.contains(&first.as_str()) {
        let context = match Fields::parse(value.get()) {
            Some(e) => e.get(f.context())?,
            None => None,
        };
        let service = match context.and_then(|c| Fields::parse(c.get())) {
            Some(c) => c.get(f.service())?,
            None => None,
        };
        return Ok(Line::Event(service_names(service, f)?));
    }
    Ok(Line::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(service: &str, agent: &str) -> Names {
        Names {
            service: Some(service.into()),
            agent: Some(agent.into()),
        }
    }

    #[test]
    fn keys_match_case_insensitively_as_in_go() {
        let l = br#"{"Metadata":{"SERVICE":{"Name":"shop","other":1,"AGENT":{"nAme":"rum-js"}}}}"#;
        assert_eq!(
            line(l, Format::V2),
            Ok(Line::Metadata(names("shop", "rum-js")))
        );
        let long_s = "{\"metadata\":{\"\u{17f}ervice\":{\"name\":\"evil\"}}}";
        assert_eq!(
            line(long_s.as_bytes(), Format::V2),
            Ok(Line::Metadata(Names {
                service: Some("evil".into()),
                agent: None
            }))
        );
        assert_eq!(fold("\u{212a}IND"), "kind");
        let v3 = "{\"x\":{\"c\":{\"se\":{\"n\":\"evil\",\"a\":{\"n\":\"go\"}}}}}";
        assert_eq!(
            line(v3.as_bytes(), Format::V3),
            Ok(Line::Event(names("evil", "go")))
        );
        let upper = br#"{"x":{"C":{"se":{"n":"evil"}}}}"#;
        assert_eq!(
            line(upper, Format::V3),
            Ok(Line::Event(Names {
                service: Some("evil".into()),
                agent: None
            }))
        );
    }

    #[test]
    fn keys_present_twice_in_two_cases_are_refused() {
        for l in [
            &br#"{"metadata":{"service":{"name":"shop"},"Service":{"name":"evil"}}}"#[..],
            br#"{"metadata":{"service":{"name":"shop","Name":"evil"}}}"#,
            br#"{"transaction":{"context":{"service":{"name":"a"}},"CONTEXT":{}}}"#,
            "{\"metadata\":{\"service\":{\"name\":\"a\",\"nameſ\":1,\"\u{17f}\":2,\"NAME\":\"b\"}}}".as_bytes(),
        ] {
            assert_eq!(line(l, Format::V2), Err(LineError::Ambiguous), "{}", String::from_utf8_lossy(l));
        }
    }

    #[test]
    fn the_first_key_is_the_type_and_one_event_key_per_line() {
        let two = br#"{"span":{"context":{"service":{"name":"evil"}}},"transaction":{}}"#;
        assert_eq!(line(two, Format::V2), Err(LineError::Ambiguous));
        // APM Server types a line by its first key: an unknown one is not an event of ours.
        let unknown_first = br#"{"foo":1,"transaction":{"context":{"service":{"name":"x"}}}}"#;
        assert_eq!(line(unknown_first, Format::V2), Ok(Line::Other));
    }

    #[test]
    fn v3_reads_only_m_and_v2_only_metadata() {
        let both = br#"{"metadata":{"service":{"name":"shop"}},"m":{"se":{"n":"evil"}}}"#;
        // On v3 only `m` is metadata (the other key is unknown to the v3 decoder) and it is
        // not first: not a metadata line at all.
        assert_eq!(line(both, Format::V3), Ok(Line::Other));
        let m_first = br#"{"m":{"se":{"n":"evil"}},"metadata":{"service":{"name":"shop"}}}"#;
        assert_eq!(
            line(m_first, Format::V3),
            Ok(Line::Metadata(Names {
                service: Some("evil".into()),
                agent: None
            }))
        );
        assert_eq!(
            line(br#"{"m":{"se":{"n":"x"}}}"#, Format::V2),
            Ok(Line::Other)
        );
        assert_eq!(line(b"[1]", Format::V2), Err(LineError::InvalidJson));
        assert_eq!(line(b"{\"span\":", Format::V2), Err(LineError::InvalidJson));
    }
}
