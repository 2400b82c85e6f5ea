//! Every answer the proxy writes itself (an [`admission::Rejection`](crate::admission::Rejection)
//! in a [`Reply`]) is rendered and sent here, in APM Server's format:
//! `{"error": "<message>"}` (or the intake shape `{"accepted":0,"errors":[{"message":…}]}`),
//! pretty-printed `application/json` when `Accept` contains `*/*` or `application/json`,
//! otherwise compact JSON under `text/plain; charset=utf-8`; always `X-Content-Type-Options:
//! nosniff`, never `WWW-Authenticate`.

use std::cell::RefCell;
use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::{HttpTask, ServerSession};
use pingora::time::fast_timeout::fast_timeout;

use super::retry_hint::{grpc_retry_info, grpc_status_details, is_otlp_http, retry_after};
use crate::admission::{Rejection, Reply};
use pingora::{Error, ErrorSource, ErrorType};

/// Status line, headers and body of `reply` for a client that sent `accept`.
pub fn render(reply: &Reply, accept: Option<&[u8]>) -> (ResponseHeader, Bytes) {
    let wants_json = wants_json(accept);
    LAST_RENDERED.with_borrow_mut(|last| {
        if let Some(last) = last.as_ref().filter(|l| l.renders(reply, wants_json)) {
            return (last.header.clone(), last.body.clone());
        }
        let (header, body) = render_anew(reply, wants_json);
        *last = Some(Rendered {
            reply: reply.clone(),
            wants_json,
            header: header.clone(),
            body: body.clone(),
        });
        (header, body)
    })
}

thread_local! {
    /// The answer last rendered on this thread, cloned when the next one is the same: a flood
    /// of one refusal (a wrong token) renders its JSON and headers once, not per request.
    static LAST_RENDERED: RefCell<Option<Rendered>> = const { RefCell::new(None) };
}

struct Rendered {
    reply: Reply,
    wants_json: bool,
    header: ResponseHeader,
    body: Bytes,
}

impl Rendered {
    /// Whether this is what `render` would make of `reply` (everything it reads of it).
    fn renders(&self, reply: &Reply, wants_json: bool) -> bool {
        self.wants_json == wants_json
            && self.reply.rejection == reply.rejection
            && self.reply.accepted == reply.accepted
            && self.reply.headers == reply.headers
    }
}

/// APM Server answers JSON to a client that accepts it, plain text to any other.
fn wants_json(accept: Option<&[u8]>) -> bool {
    accept.is_some_and(|a| contains(a, b"*/*") || contains(a, b"application/json"))
}

fn render_anew(reply: &Reply, wants_json: bool) -> (ResponseHeader, Bytes) {
    let message = reply.rejection.message();
    let (body, content_type) = match message {
        None => (Bytes::new(), None),
        Some(message) => {
            let body = ErrorBody::new(&message, reply.accepted);
            let mut text = if wants_json {
                serde_json::to_string_pretty(&body)
            } else {
                serde_json::to_string(&body)
            }
            .unwrap_or_default();
            text.push('\n');
            let ct = if wants_json {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            (Bytes::from(go_html_escape(text)), Some(ct))
        }
    };
    // Without a header-case map: the names go out titled all the same (Pingora titles the
    // standard ones either way), without each insert turning the name into bytes and parsing it
    // back.
    let mut header = ResponseHeader::build_no_case(reply.status(), Some(4 + reply.headers.len()))
        .expect("a StatusCode is a valid status");
    // Inserting these fixed, valid header values cannot fail.
    let _ = header.insert_header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if let Some(ct) = content_type {
        let _ = header.insert_header(http::header::CONTENT_TYPE, ct);
    }
    let length = http::HeaderValue::from(body.len());
    let _ = header.insert_header(http::header::CONTENT_LENGTH, length);
    for (name, value) in &reply.headers {
        let _ = header.insert_header(name.clone(), value.as_str());
    }
    (header, body)
}

/// APM Server's error bodies, serialized straight from borrowed text (no JSON tree built).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum ErrorBody<'a> {
    /// `{"error": "<message>"}`
    Plain { error: &'a str },
    /// The intake shape: `{"accepted": N, "errors": [{"message": "<message>"}]}`
    Intake {
        accepted: u64,
        errors: [IntakeError<'a>; 1],
    },
}

#[derive(serde::Serialize)]
struct IntakeError<'a> {
    message: &'a str,
}

impl<'a> ErrorBody<'a> {
    fn new(message: &'a str, accepted: Option<u64>) -> Self {
        match accepted {
            None => ErrorBody::Plain { error: message },
            Some(accepted) => ErrorBody::Intake {
                accepted,
                errors: [IntakeError { message }],
            },
        }
    }
}

/// `reply` as a gRPC client expects it: HTTP 200 with no body, the status and APM Server's
/// message in the headers (a "trailers-only" response once sent with the end of stream).
pub fn render_grpc(reply: &Reply) -> ResponseHeader {
    let mut header = ResponseHeader::build_no_case(http::StatusCode::OK, Some(3))
        .expect("200 is a valid status");
    let _ = header.insert_header(http::header::CONTENT_TYPE, "application/grpc");
    let _ = header.insert_header("grpc-status", reply.rejection.grpc_status().to_string());
    let message = reply.rejection.message();
    if let Some(message) = &message {
        let _ = header.insert_header("grpc-message", grpc_percent_encode(message));
    }
    let code = reply.rejection.grpc_status();
    let text = message.as_deref().unwrap_or("");
    if let Some(details) = grpc_status_details(code, text, reply.retry_after) {
        let _ = header.insert_header("grpc-status-details-bin", details);
    }
    if let Some(retry_info) = grpc_retry_info(code, reply.retry_after) {
        let _ = header.insert_header("google.rpc.retryinfo-bin", retry_info);
    }
    header
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
fn grpc_percent_encode(message: &str) -> String {
    const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');
    percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE).to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings; APM Server's
/// bodies do too. In our bodies these characters only occur inside strings.
fn go_html_escape(text: String) -> String {
    // A byte scan (0xE2 leads both U+2028 and U+2029): `contains` over chars cost ≈ 500
    // instructions an answer.
    if !text.bytes().any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2)) {
        return text;
    }
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// How much of a rejected request's body the proxy reads before answering, to keep the
/// connection alive for the client's next request. Beyond this the connection is closed
/// after the answer (an agent with a bad token must stay cheap, but not at any price).
pub const KEEPALIVE_DRAIN_LIMIT: usize = 256 * 1024;

/// Send `reply` on `session`. The unread request body is drained first when it is small, so
/// an HTTP/1.1 connection can be reused and an HTTP/2 stream ends cleanly; otherwise the
/// reply is sent (HTTP/1.1: with the connection marked for close, the body then drained for
/// up to `drain_timeout`, so a client that reads only after sending still sees the status).
pub async fn send(
    session: &mut ServerSession,
    reply: &Reply,
    drain_timeout: Duration,
) -> pingora::Result<()> {
    // Every answer to a gRPC call is in gRPC's form, whichever stage refused it.
    if crate::admission::is_grpc(session.req_header()) {
        return send_grpc(session, reply, drain_timeout).await;
    }
    let (mut header, body) = render(
        reply,
        session
            .req_header()
            .headers
            .get(http::header::ACCEPT)
            .map(|v| v.as_bytes()),
    );
    if is_otlp_http(crate::admission::path_of(session.req_header().raw_path())) {
        let status = reply.status().as_u16();
        if let Some(seconds) = retry_after(status, reply.retry_after) {
            let _ = header.insert_header(http::header::RETRY_AFTER, seconds);
        }
    }
    let h1 = !session.is_http2();
    let expects_continue = expects_continue(session.req_header());
    let mut body_done = session.is_body_done();
    // A client that stalled will not send the rest: answer now, and close.
    let stalled = reply.rejection == Rejection::ClientTimeout;
    if stalled {
        session.set_keepalive(None);
    }
    // Also for HTTP/2: a reply sent before the body ends is followed by RST_STREAM, which
    // some clients (curl among them) report as a failure instead of showing the reply.
    if !body_done && !expects_continue && !stalled {
        body_done = drain_up_to(session, KEEPALIVE_DRAIN_LIMIT, drain_timeout).await;
    }
    if body.is_empty() {
        session.write_response_header(Box::new(header)).await?;
    } else {
        // HTTP/1.1: head and body in one write (one TLS record).
        session
            .write_response_with_body(Box::new(header), body)
            .await?;
    }
    if h1 && !body_done && !expects_continue && !stalled {
        let _ = fast_timeout(drain_timeout, session.drain_request_body()).await;
    }
    Ok(())
}

/// A gRPC call's answer: trailers-only (one HEADERS frame that ends the stream), after what
/// is left of a small request body, so the client sees the status rather than a reset.
async fn send_grpc(
    session: &mut ServerSession,
    reply: &Reply,
    drain_timeout: Duration,
) -> pingora::Result<()> {
    if !session.is_body_done() {
        drain_up_to(session, KEEPALIVE_DRAIN_LIMIT, drain_timeout).await;
    }
    let header = Box::new(render_grpc(reply));
    // Pingora's `write_response_header` always leaves the stream open (and later ends it
    // with an empty DATA frame, which gRPC clients refuse as a missing status).
    session
        .response_duplex_vec(vec![HttpTask::Header(header, true)])
        .await?;
    Ok(())
}

/// Does the client wait for `100 Continue` before sending its body?
pub fn expects_continue(req: &pingora::http::RequestHeader) -> bool {
    req.headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Read and discard up to `limit` body bytes within `timeout`; true when the body ended.
async fn drain_up_to(session: &mut ServerSession, limit: usize, timeout: Duration) -> bool {
    let drain = async {
        let mut read = 0usize;
        while read <= limit {
            match session.read_request_body().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
        false
    };
    // Pingora's coarse timer: a tokio timer set mid-request wakes the driver.
    fast_timeout(timeout, drain).await.unwrap_or(false)
}

/// The answer for a request that failed after admission; `None` when the client is gone.
pub fn rejection_for(e: &Error) -> Option<Rejection> {
    use ErrorType::*;
    if let HTTPStatus(code) = e.etype() {
        let status = http::StatusCode::from_u16(*code).unwrap_or(http::StatusCode::BAD_REQUEST);
        return Some(Rejection::RequestFailed(status));
    }
    match e.esource() {
        ErrorSource::Upstream => Some(match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => Rejection::UpstreamTimeout,
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure => {
                Rejection::UpstreamUnreachable
            }
            _ => Rejection::UpstreamClosed,
        }),
        ErrorSource::Downstream => match e.etype() {
            ReadError | WriteError | ConnectionClosed => None,
            ReadTimedout => Some(Rejection::ClientTimeout),
            _ => Some(Rejection::InvalidRequest),
        },
        ErrorSource::Internal | ErrorSource::Unset => Some(Rejection::Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::admission::{NameRefused, Rejection};
    use crate::auth::AuthFailure;

    #[test]
    fn messages_are_escaped_as_go_escapes_them() {
        let text = "a<b>&c\u{2028}d\u{2029}e\u{e9}".to_string();
        assert_eq!(
            go_html_escape(text),
            "a\\u003cb\\u003e\\u0026c\\u2028d\\u2029e\u{e9}"
        );
        assert_eq!(go_html_escape("plain \u{e2}".into()), "plain \u{e2}");
    }

    fn text(reply: &Reply, accept: Option<&[u8]>) -> (String, Option<String>) {
        let (h, b) = render(reply, accept);
        let ct = h
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h.headers.get("x-content-type-options").unwrap(), "nosniff");
        assert!(h.headers.get("www-authenticate").is_none());
        (String::from_utf8(b.to_vec()).unwrap(), ct)
    }

    #[test]
    fn an_answer_rendered_again_is_the_one_rendered_anew() {
        let refused = Reply::plain(Rejection::AuthenticationFailed(
            AuthFailure::InvalidCredentials,
        ));
        let not_found = Reply::plain(Rejection::NotFound);
        let mid_stream = Reply::intake(Rejection::NotFound, 3);
        let mut with_header = refused.clone();
        with_header.headers = vec![(
            http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            "https://app.example".to_string(),
        )];
        let json: Option<&[u8]> = Some(b"application/json");
        let sequence = [
            (&refused, None),
            (&refused, None),
            (&refused, json),
            (&not_found, json),
            (&mid_stream, json),
            (&with_header, json),
            (&refused, json),
            (&refused, None),
        ];
        for (reply, accept) in sequence {
            let (header, body) = render(reply, accept);
            let (fresh_header, fresh_body) = render_anew(reply, wants_json(accept));
            assert_eq!(body, fresh_body, "{reply:?} {accept:?}");
            assert_eq!(header.status, fresh_header.status, "{reply:?}");
            assert_eq!(header.headers, fresh_header.headers, "{reply:?} {accept:?}");
        }
    }

    #[test]
    fn accept_decides_format() {
        let r = Reply::plain(Rejection::AuthenticationFailed(
            AuthFailure::InvalidCredentials,
        ));
        assert_eq!(
            text(&r, None),
            (
                "{\"error\":\"authentication failed\"}\n".into(),
                Some("text/plain; charset=utf-8".into())
            )
        );
        assert_eq!(
            text(&r, Some(b"*/*")),
            (
                "{\n  \"error\": \"authentication failed\"\n}\n".into(),
                Some("application/json".into())
            )
        );
        assert_eq!(
            text(&r, Some(b"text/html, application/json;q=0.9"))
                .1
                .as_deref(),
            Some("application/json")
        );
        assert_eq!(
            text(&r, Some(b"text/html")).1.as_deref(),
            Some("text/plain; charset=utf-8")
        );
    }

    #[test]
    fn stream_shape_and_go_escaping() {
        let r = Reply::intake(
            Rejection::NameNotPermitted(NameRefused::KeyService("ads".into())),
            7,
        );
        assert_eq!(
            text(&r, None).0,
            "{\"accepted\":7,\"errors\":[{\"message\":\"unauthorized: API Key not permitted for service \\\"ads\\\"\"}]}\n"
        );
        let r = Reply::plain(Rejection::AuthenticationFailed(AuthFailure::UnknownScheme(
            "<a&b>".into(),
        )));
        assert!(
            text(&r, None)
                .0
                .starts_with("{\"error\":\"authentication failed: unknown Authentication header \\u003ca\\u0026b\\u003e:"),
            "{}",
            text(&r, None).0
        );
    }

    #[test]
    fn empty_reply_has_no_content_type() {
        let (body, ct) = text(
            &Reply::plain(Rejection::RootWithoutCredentials),
            Some(b"*/*"),
        );
        assert_eq!(body, "");
        assert_eq!(ct, None);
    }

    #[test]
    fn upstream_failures_map_to_gateway_errors() {
        let refused = Error::new(ErrorType::ConnectRefused).into_up();
        assert_eq!(
            rejection_for(&refused),
            Some(Rejection::UpstreamUnreachable)
        );
        let timeout = Error::new(ErrorType::ConnectTimedout).into_up();
        assert_eq!(rejection_for(&timeout), Some(Rejection::UpstreamTimeout));
        let reset = Error::new(ErrorType::ConnectionClosed).into_up();
        assert_eq!(rejection_for(&reset), Some(Rejection::UpstreamClosed));
        let gone = Error::new(ErrorType::ConnectionClosed).into_down();
        assert_eq!(rejection_for(&gone), None);
        let slow = Error::new(ErrorType::ReadTimedout).into_down();
        assert_eq!(rejection_for(&slow), Some(Rejection::ClientTimeout));
    }

    #[test]
    fn grpc_answers_carry_status_and_encoded_message_in_headers() {
        let header = render_grpc(&Reply::plain(Rejection::MissingCredentials));
        assert_eq!(header.status, 200);
        assert_eq!(header.headers["content-type"], "application/grpc");
        assert_eq!(header.headers["grpc-status"], "16");
        assert_eq!(
            header.headers["grpc-message"],
            "authentication failed: missing or improperly formatted Authorization header: \
             expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey \
             base64(API key ID:API key)'"
        );
        assert_eq!(grpc_percent_encode("100% \u{e9}\n"), "100%25 %C3%A9%0A");
        let header = render_grpc(&Reply::plain(Rejection::UpstreamUnreachable));
        assert_eq!(header.headers["grpc-status"], "14");
        let header = render_grpc(&Reply::plain(Rejection::UpstreamTimeout));
        assert_eq!(header.headers["grpc-status"], "4");
    }
}
