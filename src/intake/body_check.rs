//! The checks on an admitted request's body, as plain state fed with bytes: the intake
//! reader with its name rules, the anonymous size cap and the per-event rate limit. The
//! Pingora hooks only move bytes in and out (`forward::proxy`); every rule is here and
//! unit-tested.
//!
//! Two phases: before anything is forwarded the body is read ahead until the metadata line
//! has been checked ([`BodyCheck::feed_ahead`]); then every chunk is checked as it streams
//! ([`BodyCheck::on_chunk`]), the read-ahead bytes first again as Pingora replays them.

use std::time::{Duration, Instant};

use super::decode::Format;
use super::reader::{IntakeReader, ScanError};
use super::rules::EventRules;
use crate::admission::{BodyLimits, NameRefused, NameRules, Rejection, Reply};
use crate::limits::{EventCharge, Grant};

/// Events per rate-limit step, as APM Server's intake handler batches them.
pub(super) const EVENT_BATCH: u64 = 10;
/// How much of a body the proxy may read ahead before forwarding (Pingora's retry buffer).
pub const READ_AHEAD_LIMIT: u64 = 64 * 1024;

/// The answer when `charge`'s bucket has no tokens left for the next events.
pub(super) fn rate_refusal(charge: &EventCharge) -> Rejection {
    if charge.is_credential() {
        Rejection::CredentialEventRateLimited
    } else {
        Rejection::EventRateLimited
    }
}

pub struct BodyCheck {
    /// Event names and counts; `None` once the body is done.
    reader: Option<IntakeReader<EventRules>>,
    /// Bytes read ahead: Pingora replays them through `on_chunk`, where they must not be
    /// read twice.
    read_ahead: u64,
    /// Body bytes seen by `on_chunk`.
    seen: u64,
    max_bytes: Option<u64>,
    rate: Option<EventCharge>,
    /// Events that passed in chunks already forwarded (an error reply's `accepted`).
    forwarded: u64,
    /// Events charged to the rate limit so far, in batches of ten as APM Server does.
    charged: u64,
    /// Blank lines read so far (charged with the events).
    blank_charged: u64,
}

impl BodyCheck {
    /// The checks for an ndjson intake body under `rules`; anonymous bodies are also capped
    /// in size; events are charged to `rate` when given (the caller picks the bucket: the
    /// anonymous client IP's, or the credential's own).
    pub fn intake(
        rules: NameRules,
        format: Format,
        content_encoding: Option<&[u8]>,
        limits: &BodyLimits,
        rate: Option<EventCharge>,
    ) -> BodyCheck {
        let anonymous = rules.is_anonymous();
        BodyCheck {
            reader: Some(IntakeReader::with_limit(
                content_encoding,
                format,
                limits.max_event_size,
                anonymous.then_some(limits.max_anonymous_decompressed_size),
                EventRules::new(rules),
            )),
            read_ahead: 0,
            seen: 0,
            max_bytes: anonymous.then_some(limits.max_anonymous_request_size),
            rate,
            forwarded: 0,
            charged: 0,
            blank_charged: 0,
        }
    }

    /// Events forwarded so far (all of them once the body has ended).
    pub fn events_forwarded(&self) -> u64 {
        self.forwarded
    }

    /// Must more be read ahead before anything may be forwarded?
    pub fn needs_read_ahead(&self) -> bool {
        self.reader.as_ref().is_some_and(|r| !r.seen_metadata())
    }

    /// A chunk read ahead. Nothing has been forwarded yet, so a refusal accepted nothing.
    pub fn feed_ahead(&mut self, chunk: &[u8]) -> Result<(), Reply> {
        self.read_ahead += chunk.len() as u64;
        if self.read_ahead > READ_AHEAD_LIMIT {
            return Err(Reply::intake(Rejection::MetadataBeyondReadAhead, 0));
        }
        match self.reader.as_mut() {
            Some(reader) => reader.feed(chunk).map_err(|e| scan_reply(e, 0)),
            None => Ok(()),
        }
    }

    /// The body ended while being read ahead: check its end now.
    pub fn end_ahead(&mut self) -> Result<(), Reply> {
        match self.reader.take() {
            Some(mut reader) => reader.finish().map_err(|e| scan_reply(e, 0)),
            None => Ok(()),
        }
    }

    /// One chunk as it streams (`None` with `end_of_stream` at the end). `Ok(wait)`: how long
    /// to hold the stream so the rate limit's tokens are due; `Err`: stop with that reply.
    pub fn on_chunk(
        &mut self,
        chunk: Option<&[u8]>,
        end_of_stream: bool,
        now: Instant,
    ) -> Result<Duration, Reply> {
        if let Some(chunk) = chunk {
            let len = chunk.len() as u64;
            // What was read ahead comes back first; it was read already.
            let skip = self.read_ahead.saturating_sub(self.seen).min(len) as usize;
            self.seen += len;
            if self.max_bytes.is_some_and(|max| self.seen > max) {
                return Err(Reply::plain(Rejection::BodyTooLarge));
            }
            if let Some(reader) = self.reader.as_mut() {
                reader
                    .feed(&chunk[skip..])
                    .map_err(|e| scan_reply(e, self.forwarded))?;
            }
        }
        if end_of_stream {
            if let Some(mut reader) = self.reader.take() {
                reader.finish().map_err(|e| scan_reply(e, self.forwarded))?;
                let (events, blank) = (reader.events(), reader.blank_lines());
                let wait = self.charge(events + blank, true, now)?;
                self.forwarded = events;
                self.blank_charged = blank;
                return Ok(wait);
            }
        }
        let (events, blank) = self
            .reader
            .as_ref()
            .map_or((self.forwarded, self.blank_charged), |r| {
                (r.events(), r.blank_lines())
            });
        // Blank lines cost reading too: they are charged like events (not counted as accepted).
        let wait = self.charge(events + blank, end_of_stream, now)?;
        // This chunk goes upstream now, and its events with it.
        self.forwarded = events;
        self.blank_charged = blank;
        Ok(wait)
    }

    /// Charge `events` read so far to the rate limit, in batches of ten (a final partial
    /// batch at the end of the body).
    fn charge(
        &mut self,
        events: u64,
        end_of_stream: bool,
        now: Instant,
    ) -> Result<Duration, Reply> {
        let Some(rate) = &self.rate else {
            return Ok(Duration::ZERO);
        };
        let mut wait = Duration::ZERO;
        loop {
            let pending = events - self.charged;
            if pending == 0 || (pending < EVENT_BATCH && !end_of_stream) {
                return Ok(wait);
            }
            let batch = pending.min(EVENT_BATCH);
            match rate.reserve(batch as u32, now) {
                Grant::Now => {}
                Grant::After(d) => wait = wait.max(d),
                Grant::Refused => return Err(Reply::intake(rate_refusal(rate), self.forwarded)),
            }
            self.charged += batch;
        }
    }
}

/// APM Server's intake error for what the reader found; `accepted` events went before it.
fn scan_reply(e: ScanError<NameRefused>, accepted: u64) -> Reply {
    let rejection = match e {
        ScanError::Rejected(refused) => Rejection::NameNotPermitted(refused),
        ScanError::EventTooLarge => Rejection::EventTooLarge,
        ScanError::MissingMetadata => Rejection::MissingMetadata,
        ScanError::InvalidJson => Rejection::InvalidJson,
        ScanError::Decompression => Rejection::CorruptCompression,
        ScanError::Ambiguous => Rejection::AmbiguousEvent,
        ScanError::TooLarge => Rejection::BodyTooLarge,
    };
    Reply::intake(rejection, accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::AnonymousPolicy;
    use crate::limits::{CredentialRates, RateLimiter};
    use std::num::NonZeroUsize;
    use std::sync::Arc;

    const META: &str =
        "{\"metadata\":{\"service\":{\"name\":\"shop\",\"agent\":{\"name\":\"rum-js\"}}}}\n";
    const EVENT: &str = "{\"transaction\":{}}\n";
    const EVIL: &str = "{\"span\":{\"context\":{\"service\":{\"name\":\"evil\"}}}}\n";

    fn limits() -> BodyLimits {
        BodyLimits {
            max_event_size: 1024,
            max_anonymous_request_size: 1 << 20,
            max_anonymous_decompressed_size: 1 << 24,
            max_otlp_size: 1 << 22,
        }
    }

    fn anonymous_check(event_limit: u32) -> BodyCheck {
        let policy = AnonymousPolicy::new(&[], &["rum-js".into()], &["shop".into()]);
        let limiter = Arc::new(RateLimiter::new(event_limit, NonZeroUsize::new(8).unwrap()));
        let rate = EventCharge::PerIp {
            limiter,
            ip: "192.0.2.1".parse().unwrap(),
        };
        BodyCheck::intake(
            NameRules::Anonymous(Arc::new(policy)),
            Format::V2,
            None,
            &limits(),
            Some(rate),
        )
    }

    fn events(n: usize) -> String {
        EVENT.repeat(n)
    }

    #[test]
    fn read_ahead_bytes_are_not_read_twice_when_replayed() {
        let mut check = anonymous_check(1000);
        let ahead = format!("{META}{}", events(3));
        check.feed_ahead(ahead.as_bytes()).unwrap();
        assert!(!check.needs_read_ahead());
        let now = Instant::now();
        // The replay: were the read-ahead bytes fed again, the metadata line would come
        // twice and be an event with no names (still counted), so the count tells.
        check.on_chunk(Some(ahead.as_bytes()), false, now).unwrap();
        let next = events(2);
        check.on_chunk(Some(next.as_bytes()), false, now).unwrap();
        check.on_chunk(None, true, now).unwrap();
        assert_eq!(check.forwarded, 5);
    }

    #[test]
    fn a_replayed_chunk_split_across_the_read_ahead_boundary_reads_only_the_new_part() {
        let mut check = anonymous_check(1000);
        check.feed_ahead(META.as_bytes()).unwrap();
        // Pingora may hand the replay and new bytes over in one chunk.
        let joined = format!("{META}{EVENT}");
        check
            .on_chunk(Some(joined.as_bytes()), false, Instant::now())
            .unwrap();
        check.on_chunk(None, true, Instant::now()).unwrap();
        assert_eq!(check.forwarded, 1);
    }

    #[test]
    fn a_refusal_in_the_read_ahead_accepted_nothing() {
        let mut check = anonymous_check(1000);
        let body = format!("{META}{}{EVIL}", events(12));
        let reply = check.feed_ahead(body.as_bytes()).unwrap_err();
        assert_eq!(reply.accepted, Some(0));
        assert!(
            matches!(reply.rejection, Rejection::NameNotPermitted(NameRefused::AnonymousService(ref s)) if s == "evil")
        );
    }

    #[test]
    fn a_streamed_refusal_counts_the_events_already_forwarded() {
        let mut check = anonymous_check(1000);
        check.feed_ahead(META.as_bytes()).unwrap();
        let now = Instant::now();
        check.on_chunk(Some(META.as_bytes()), false, now).unwrap();
        let twelve = events(12);
        check.on_chunk(Some(twelve.as_bytes()), false, now).unwrap();
        // Good events in the refused chunk do not go upstream: they are not counted.
        let last = format!("{}{EVIL}", events(2));
        let reply = check
            .on_chunk(Some(last.as_bytes()), false, now)
            .unwrap_err();
        assert_eq!(reply.accepted, Some(12));
        assert_eq!(reply.status(), http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn events_are_charged_in_batches_of_ten_and_a_batch_waits_for_tokens() {
        // 10 events/s, burst 30; the request itself was not charged here.
        let mut check = anonymous_check(10);
        check.feed_ahead(META.as_bytes()).unwrap();
        let t0 = Instant::now();
        check.on_chunk(Some(META.as_bytes()), false, t0).unwrap();
        // 9 events: below a batch, nothing charged yet.
        let nine = events(9);
        assert_eq!(
            check.on_chunk(Some(nine.as_bytes()), false, t0),
            Ok(Duration::ZERO)
        );
        assert_eq!(check.charged, 0);
        // 30 more: three batches charged from the burst at once, all 30 tokens gone.
        let more = events(30);
        assert_eq!(
            check.on_chunk(Some(more.as_bytes()), false, t0),
            Ok(Duration::ZERO)
        );
        assert_eq!(check.charged, 30);
        // The next batch must wait for ten new tokens: one second at 10/s.
        let ten = events(10);
        let wait = check.on_chunk(Some(ten.as_bytes()), false, t0).unwrap();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Another batch right away would need more than the longest wait: refused, with
        // the events of the chunks already forwarded (9 + 30 + 10) as accepted.
        let again = events(10);
        let reply = check
            .on_chunk(Some(again.as_bytes()), false, t0)
            .unwrap_err();
        assert_eq!(reply.rejection, Rejection::EventRateLimited);
        assert_eq!(reply.accepted, Some(49));
    }

    #[test]
    fn the_end_of_the_body_charges_a_partial_batch() {
        let mut check = anonymous_check(1000);
        check.feed_ahead(META.as_bytes()).unwrap();
        let now = Instant::now();
        let three = format!("{META}{}", events(3));
        check.on_chunk(Some(three.as_bytes()), false, now).unwrap();
        assert_eq!(check.charged, 0);
        check.on_chunk(None, true, now).unwrap();
        assert_eq!(check.charged, 3);
    }

    #[test]
    fn read_ahead_is_bounded_and_anonymous_bodies_are_capped() {
        let mut check = anonymous_check(1000);
        let filler = vec![b' '; READ_AHEAD_LIMIT as usize + 1];
        let reply = check.feed_ahead(&filler).unwrap_err();
        assert_eq!(reply.rejection, Rejection::MetadataBeyondReadAhead);
        assert_eq!(reply.status(), http::StatusCode::PAYLOAD_TOO_LARGE);

        let small = BodyLimits {
            max_event_size: 1024,
            max_anonymous_request_size: 100,
            max_anonymous_decompressed_size: 1 << 24,
            max_otlp_size: 1 << 22,
        };
        let policy = AnonymousPolicy::new(&[], &[], &[]);
        let mut capped = BodyCheck::intake(
            NameRules::Anonymous(Arc::new(policy)),
            Format::V2,
            None,
            &small,
            None,
        );
        let body = format!("{META}{}", events(10));
        let reply = capped
            .on_chunk(Some(body.as_bytes()), false, Instant::now())
            .unwrap_err();
        assert_eq!(reply.rejection, Rejection::BodyTooLarge);
    }

    #[test]
    fn blank_lines_are_charged_and_decompressed_bodies_are_bounded() {
        // 10 events/s, burst 30: 2 events and 40 blank lines need more than the burst.
        let mut check = anonymous_check(10);
        check.feed_ahead(META.as_bytes()).unwrap();
        let now = Instant::now();
        let body = format!("{META}{}{}", events(2), "\n".repeat(40));
        let reply = check
            .on_chunk(Some(body.as_bytes()), true, now)
            .unwrap_err();
        assert_eq!(reply.rejection, Rejection::EventRateLimited);
        assert_eq!(
            reply.accepted,
            Some(0),
            "blank lines are charged, not accepted"
        );

        let limits = BodyLimits {
            max_event_size: 1024,
            max_anonymous_request_size: 1 << 20,
            max_anonymous_decompressed_size: 4096,
            max_otlp_size: 1 << 22,
        };
        let policy = AnonymousPolicy::new(&[], &[], &[]);
        let mut check = BodyCheck::intake(
            NameRules::Anonymous(Arc::new(policy)),
            Format::V2,
            Some(b"gzip"),
            &limits,
            None,
        );
        let blanks = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(META.as_bytes()).unwrap();
            e.write_all(&vec![b'\n'; 1 << 20]).unwrap();
            e.finish().unwrap()
        };
        assert!(blanks.len() < 4096, "a small compressed body");
        let reply = check
            .feed_ahead(&blanks)
            .err()
            .or_else(|| check.on_chunk(Some(&blanks), true, Instant::now()).err());
        assert_eq!(reply.map(|r| r.rejection), Some(Rejection::BodyTooLarge));
    }

    #[test]
    fn bound_keys_are_not_capped() {
        let rules = NameRules::BoundKey(Arc::from(vec!["shop".to_string()]));
        let mut check = BodyCheck::intake(rules, Format::V2, None, &limits(), None);
        let body = format!("{META}{}", events(100));
        let now = Instant::now();
        assert_eq!(
            check.on_chunk(Some(body.as_bytes()), true, now),
            Ok(Duration::ZERO)
        );
        assert_eq!(check.events_forwarded(), 100);
    }

    #[test]
    fn a_credentials_events_limit_applies_mid_stream_with_the_events_that_went_before() {
        let rates = Arc::new(CredentialRates::default());
        let rate = EventCharge::Credential {
            rates,
            who: (crate::credential::CredentialKind::Token, "ci".into()),
            spec: "5/s burst 10".parse().unwrap(),
        };
        let mut check = BodyCheck::intake(NameRules::Any, Format::V2, None, &limits(), Some(rate));
        let now = Instant::now();
        let first = format!("{META}{}", events(10));
        assert_eq!(
            check.on_chunk(Some(first.as_bytes()), false, now),
            Ok(Duration::ZERO)
        );
        // The next ten would wait two seconds for tokens: refused, ten already accepted.
        let reply = check
            .on_chunk(Some(events(10).as_bytes()), false, now)
            .unwrap_err();
        assert_eq!(reply.rejection, Rejection::CredentialEventRateLimited);
        assert_eq!(reply.accepted, Some(10));
    }
}
