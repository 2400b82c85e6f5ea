//! The checks on an OTLP export the proxy must read (a service-bound credential, an
//! anonymous browser, an events rate limit): read whole within the size bound, every
//! resource's names held to the rules — one refused resource refuses the whole request,
//! before anything is forwarded — and its spans, data points and log records charged to
//! the events limit.

use std::time::{Duration, Instant};

use super::body_check;
use super::otlp::{self, Carrier, Compression, OtlpError, Signal};
use crate::admission::{BodyLimits, NameRules, Rejection, Reply};
use crate::limits::{EventCharge, Grant};

pub struct OtlpCheck {
    signal: Signal,
    /// `None`: a `Content-Type` the proxy cannot read.
    carrier: Option<Carrier>,
    /// `None`: a compression the proxy cannot read.
    compression: Option<Compression>,
    rules: NameRules,
    /// Largest body held, as sent.
    max_held: u64,
    /// Largest message decompressed.
    max_decompressed: u64,
    rate: Option<EventCharge>,
}

/// An export that passed: its items, and how long to hold it so their tokens are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtlpPassed {
    pub items: u64,
    pub wait: Duration,
}

impl OtlpCheck {
    pub fn new(
        signal: Signal,
        carrier: Option<Carrier>,
        compression: Option<Compression>,
        rules: NameRules,
        limits: &BodyLimits,
        rate: Option<EventCharge>,
    ) -> OtlpCheck {
        let (mut max_held, mut max_decompressed) = (limits.max_otlp_size, limits.max_otlp_size);
        if rules.is_anonymous() {
            max_held = max_held.min(limits.max_anonymous_request_size);
            max_decompressed = max_decompressed.min(limits.max_anonymous_decompressed_size);
        }
        OtlpCheck {
            signal,
            carrier,
            compression,
            rules,
            max_held,
            max_decompressed,
            rate,
        }
    }

    /// The most the proxy holds of this body while reading it.
    pub fn max_held(&self) -> u64 {
        self.max_held
    }

    /// Refused before reading: a body the proxy could not read anyway.
    pub fn refuse_unread(&self) -> Option<Reply> {
        self.carrier
            .is_none()
            .then(|| Reply::plain(Rejection::UnsupportedMediaType))
    }

    /// The whole body, read.
    pub fn check(&self, body: &[u8], now: Instant) -> Result<OtlpPassed, Reply> {
        let carrier = self
            .carrier
            .ok_or(Reply::plain(Rejection::UnsupportedMediaType))?;
        if body.len() as u64 > self.max_held {
            return Err(Reply::plain(Rejection::BodyTooLarge));
        }
        let summary = otlp::read_body(
            body,
            self.signal,
            carrier,
            self.compression,
            self.max_decompressed,
        )
        .map_err(|e| {
            Reply::plain(match e {
                OtlpError::Malformed => Rejection::InvalidOtlp,
                OtlpError::Compression => Rejection::CorruptCompression,
                OtlpError::UnsupportedEncoding => Rejection::UnsupportedEncoding,
                OtlpError::TooLarge => Rejection::BodyTooLarge,
            })
        })?;
        for names in &summary.resources {
            (self.rules)
                .check_event(Some(&names.agent), Some(&names.service))
                .map_err(|refused| Reply::intake(Rejection::NameNotPermitted(refused), 0))?;
        }
        let wait = self.charge(summary.items, now)?;
        Ok(OtlpPassed {
            items: summary.items,
            wait,
        })
    }

    /// Charge `items` to the events limit, in batches of ten as the intake does.
    fn charge(&self, items: u64, now: Instant) -> Result<Duration, Reply> {
        let Some(rate) = &self.rate else {
            return Ok(Duration::ZERO);
        };
        let mut wait = Duration::ZERO;
        let mut left = items;
        while left > 0 {
            let batch = left.min(body_check::EVENT_BATCH);
            match rate.reserve(batch as u32, now) {
                Grant::Now => {}
                Grant::After(d) => wait = wait.max(d),
                Grant::Refused => {
                    let retry = rate.next_token_in(now).max(wait);
                    let refused = Reply::plain(body_check::rate_refusal(rate));
                    return Err(refused.with_retry_after(Some(retry)));
                }
            }
            left -= batch;
        }
        Ok(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::AnonymousPolicy;
    use crate::limits::RateLimiter;
    use std::num::NonZeroUsize;
    use std::sync::Arc;

    fn limits() -> BodyLimits {
        BodyLimits {
            max_event_size: 1024,
            max_anonymous_request_size: 1 << 20,
            max_anonymous_decompressed_size: 1 << 20,
            max_otlp_size: 1 << 22,
        }
    }

    /// `{"resourceSpans":[…]}` with one resource per (service, spans).
    fn body(groups: &[(&str, usize)]) -> Vec<u8> {
        let groups: Vec<String> = groups
            .iter()
            .map(|(service, spans)| {
                format!(
                    r#"{{"resource":{{"attributes":[
                        {{"key":"service.name","value":{{"stringValue":"{service}"}}}},
                        {{"key":"telemetry.sdk.name","value":{{"stringValue":"opentelemetry"}}}},
                        {{"key":"telemetry.sdk.language","value":{{"stringValue":"webjs"}}}}]}},
                      "scopeSpans":[{{"spans":[{}]}}]}}"#,
                    vec!["{}"; *spans].join(",")
                )
            })
            .collect();
        format!(r#"{{"resourceSpans":[{}]}}"#, groups.join(",")).into_bytes()
    }

    fn anonymous(event_limit: u32) -> OtlpCheck {
        let policy = AnonymousPolicy::new(
            &["/v1/traces".into()],
            &["opentelemetry/webjs".into()],
            &["shop".into()],
        );
        let limiter = Arc::new(RateLimiter::new(event_limit, NonZeroUsize::new(8).unwrap()));
        OtlpCheck::new(
            Signal::Traces,
            Some(Carrier::HttpJson),
            Some(Compression::None),
            NameRules::Anonymous(Arc::new(policy)),
            &limits(),
            Some(EventCharge::PerIp {
                limiter,
                ip: "192.0.2.1".parse().unwrap(),
            }),
        )
    }

    #[test]
    fn every_resource_is_held_to_the_rules_and_one_refuses_the_whole() {
        let check = anonymous(1000);
        let now = Instant::now();
        let passed = check
            .check(&body(&[("shop", 3), ("shop", 2)]), now)
            .unwrap();
        assert_eq!(passed.items, 5);
        let reply = check
            .check(&body(&[("shop", 3), ("evil", 1)]), now)
            .unwrap_err();
        assert_eq!(reply.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(
            reply.rejection.message().unwrap(),
            "unauthorized: anonymous access not permitted for service \"evil\""
        );
        let bound = OtlpCheck::new(
            Signal::Traces,
            Some(Carrier::HttpJson),
            Some(Compression::None),
            NameRules::BoundKey(Arc::from(vec!["shop".to_string()])),
            &limits(),
            None,
        );
        assert!(bound.check(&body(&[("shop", 1)]), now).is_ok());
        let reply = bound.check(&body(&[("cart", 1)]), now).unwrap_err();
        assert_eq!(
            reply.rejection.message().unwrap(),
            "unauthorized: API Key not permitted for service \"cart\""
        );
    }

    #[test]
    fn items_are_charged_and_a_refusal_says_when_to_retry() {
        // 10 events/s, burst 30.
        let check = anonymous(10);
        let now = Instant::now();
        assert_eq!(
            check.check(&body(&[("shop", 30)]), now).unwrap().wait,
            Duration::ZERO
        );
        let wait = check.check(&body(&[("shop", 10)]), now).unwrap().wait;
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        let reply = check.check(&body(&[("shop", 10)]), now).unwrap_err();
        assert_eq!(reply.rejection, Rejection::EventRateLimited);
        assert!(reply.retry_after.is_some_and(|d| d > Duration::ZERO));
    }

    #[test]
    fn unreadable_and_oversized_bodies_are_refused() {
        let unreadable = OtlpCheck::new(
            Signal::Traces,
            None,
            Some(Compression::None),
            NameRules::Any,
            &limits(),
            None,
        );
        assert_eq!(
            unreadable.refuse_unread().map(|r| r.rejection),
            Some(Rejection::UnsupportedMediaType)
        );
        let small = BodyLimits {
            max_anonymous_request_size: 100,
            ..limits()
        };
        let policy = AnonymousPolicy::new(&[], &[], &[]);
        let capped = OtlpCheck::new(
            Signal::Traces,
            Some(Carrier::HttpJson),
            Some(Compression::None),
            NameRules::Anonymous(Arc::new(policy)),
            &small,
            None,
        );
        assert_eq!(capped.max_held(), 100);
        let reply = capped
            .check(&body(&[("shop", 5)]), Instant::now())
            .unwrap_err();
        assert_eq!(reply.rejection, Rejection::BodyTooLarge);
        let garbage = anonymous(1000).check(b"{\"resourceSpans\":7}", Instant::now());
        assert_eq!(garbage.unwrap_err().rejection, Rejection::InvalidOtlp);
    }
}
