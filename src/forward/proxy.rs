//! The Pingora hooks, and only them: admission in `request_filter` (carrying out the screening
//! the connection layer made of an HTTP/1.1 head, or screening an HTTP/2 one here), the body
//! checks fed in `request_body_filter`, header rewriting in `upstream_request_filter`, the
//! anonymous agent-config trimming on the way back, error replies, and the request's record
//! (`front`). Every rule they apply lives in `admission`, `intake` and `upstream_headers` as
//! plain functions. Bodies stream chunk by chunk in both directions and are forwarded untouched.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use super::access_log;
use super::connection::take_screened;
use super::context::{Admitted, BodyWork, RequestCtx};
use super::front::{server_name, Ended, Front, ProxySettings, Screened};
use super::read_ahead::{prepare_read_ahead, read_ahead, read_whole, ReadAhead};
use super::request_id;
use super::response::{self, rejection_for};
use super::upstream_headers::{self, request_host};
use crate::admission::{Admission, Decision, NameRules, Rejection, Reply};
use crate::intake::agent_config::{self, AnswerTrimmer};
use crate::intake::{BodyPlan, LineCount, PlanInput, READ_AHEAD_LIMIT};
use crate::lifecycle::Lifecycle;
use crate::upstream::{grpc, PoolId, PoolRefused, Pools};

pub struct ApmProxy {
    /// Screens the heads of the requests the connection layer did not (HTTP/2) and
    /// records every request as it ends.
    front: Arc<Front>,
    /// The APM Servers, by pool.
    pools: Arc<Pools>,
    /// Requests in flight and whether the process is draining.
    lifecycle: Arc<Lifecycle>,
    /// Usage is tracked per credential: intake events are counted.
    count_events: bool,
    settings: ProxySettings,
}

impl ApmProxy {
    pub fn new(front: Arc<Front>, lifecycle: Arc<Lifecycle>, count_events: bool) -> Self {
        ApmProxy {
            pools: front.pools().clone(),
            settings: front.settings().clone(),
            front,
            lifecycle,
            count_events,
        }
    }
}

#[async_trait]
impl ProxyHttp for ApmProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(&self.lifecycle)
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // An HTTP/1.1 request was screened by the connection layer as its head was read.
        let screened = match take_screened() {
            Some(screened) => screened,
            None => self.front.screen(session.as_downstream_mut()),
        };
        let Screened { client, decision } = screened;
        ctx.started = client.started;
        ctx.client_ip = client.ip;
        ctx.from_trusted_proxy = client.from_trusted_proxy;
        ctx.request_id = client.request_id;
        let reply = match decision {
            Decision::Forward(admission) => {
                // The pool: the route's (SNI, else `Host`) and the credential's must agree.
                let sni = server_name(session);
                // Only routes look at the Host: no work per request without them.
                let host = (self.pools.has_routes())
                    .then(|| request_host(session.req_header()))
                    .flatten();
                let pool = (self.pools).choose(sni, host.as_deref(), admission.identity.upstream());
                match self.admit(session, ctx, admission, pool).await? {
                    None => return Ok(false),
                    Some(reply) => reply,
                }
            }
            Decision::Reply(reply, identity) => {
                ctx.refused_identity = identity;
                reply
            }
        };
        ctx.rejection = Some(reply.rejection.clone());
        let drain_timeout = self.settings.reject_drain_timeout;
        response::send(session, &reply, drain_timeout).await?;
        Ok(true)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let started = ctx.started;
        let Some(admitted) = ctx.admitted.as_mut() else {
            return Ok(());
        };
        if let (BodyWork::Lines(lines), Some(chunk)) = (&mut admitted.body, body.as_deref()) {
            lines.feed(chunk);
        }
        // The whole body within `body_deadline` of the head, however slowly it trickles.
        let now = Instant::now();
        let verdict = if now.duration_since(started) > self.settings.body_deadline {
            Err(Reply::plain(Rejection::ClientTimeout))
        } else if let BodyWork::Checked(check) = &mut admitted.body {
            check.on_chunk(body.as_deref(), end_of_stream, now)
        } else {
            return Ok(());
        };
        match verdict {
            Ok(wait) if wait.is_zero() => Ok(()),
            // The events' tokens are reserved; hold the stream until they are due.
            Ok(wait) => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(reply) => {
                let status = reply.status().as_u16();
                // The events that went before the refusal stay counted (`events`).
                let reply = reply.with_cors(admitted.cors_origin.as_deref());
                ctx.pending_reply = Some(reply);
                Err(Error::explain(
                    ErrorType::HTTPStatus(status),
                    "request body refused",
                ))
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let pool = self.pools.get(ctx.upstream.pool);
        // The consistent-hashing key (ignored by the other algorithms), on the stack.
        let mut key = [0u8; 16];
        let key: &[u8] = match ctx.client_ip {
            IpAddr::V4(ip) => {
                key[..4].copy_from_slice(&ip.octets());
                &key[..4]
            }
            IpAddr::V6(ip) => {
                key.copy_from_slice(&ip.octets());
                &key
            }
        };
        let Some(member) = pool.select(key, &ctx.upstream.tried) else {
            // No member at all (DNS discovery found none): answer at once.
            ctx.answer_with(Rejection::NoHealthyUpstream);
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no upstream member",
            ));
        };
        // Only a failed connect rules a member out (`fail_to_connect`): a request retried
        // because a reused connection was closed under it goes to the same member afresh.
        ctx.upstream.member = Some(member);
        let peer = pool.peer(member);
        if ctx.is_grpc() {
            let deadline = session.req_header().headers.get("grpc-timeout");
            let deadline = deadline.and_then(|v| grpc::timeout(v.as_bytes()));
            return Ok(Box::new(grpc::h2c(peer, deadline)));
        }
        Ok(Box::new(peer))
    }

    /// A connect that failed sent nothing (Pingora's guarantee): eject the member and try
    /// another one when there is one — unless the body read ahead is too long to replay.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        let attempt = &mut ctx.upstream;
        let pool = self.pools.get(attempt.pool);
        if let Some(member) = attempt.member {
            pool.eject(member);
            attempt.tried.push(member);
        }
        let another = pool.select(&[], &attempt.tried).is_some();
        if another && !session.as_ref().retry_buffer_truncated() {
            e.set_retry(true);
        } else if !another && attempt.tried.len() > 1 {
            // Every member of a pool refused: none is available (a lone APM Server that
            // refuses is a plain 502, as a connect failure always was).
            ctx.answer_with(Rejection::NoHealthyUpstream);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The client's credential and headers that could impersonate the proxy's view of
        // the client never reach the upstream.
        upstream_headers::rewrite(
            upstream_request,
            ctx.client_ip,
            self.settings.scheme,
            self.pools.get(ctx.upstream.pool).authorization.as_ref(),
            ctx.from_trusted_proxy,
        )?;
        if ctx.is_grpc() {
            upstream_headers::to_h2c(upstream_request);
        }
        if ctx.is_anonymous_config_query() {
            // The answer is trimmed for anonymous callers, so it must come uncompressed.
            upstream_request.remove_header(&http::header::ACCEPT_ENCODING);
        }
        upstream_request.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
        ctx.upstream.started = Some(Instant::now());
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if self.lifecycle.is_draining() {
            // A request in flight when the drain began: its connection closes after it.
            session.set_keepalive(None);
        }
        if let Some(origin) = ctx.cors_origin() {
            // Replaces any the upstream set, so the header appears once.
            response.insert_header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
        }
        let trim = ctx.is_anonymous_config_query() && response.status == http::StatusCode::OK;
        if let (true, Some(admitted)) = (trim, ctx.admitted.as_mut()) {
            response.remove_header(&http::header::CONTENT_LENGTH);
            response.remove_header(&http::header::CONTENT_ENCODING);
            if !session.is_http2() {
                response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            }
            admitted.config_answer = Some(AnswerTrimmer::default());
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        let trimmer = ctx.admitted.as_mut().and_then(|a| a.config_answer.as_mut());
        if let Some(trimmer) = trimmer {
            *body = trimmer.push(body.take(), end_of_stream);
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let reply = ctx
            .pending_reply
            .take()
            .or_else(|| rejection_for(e).map(|r| Reply::plain(r).with_cors(ctx.cors_origin())));
        let code = match reply {
            Some(reply) if session.response_written().is_none() => {
                ctx.rejection.get_or_insert(reply.rejection.clone());
                // The connection is not reused after a failed proxy attempt: say so in the
                // answer, or an HTTP/1.1 client may send its next request into the closing
                // socket and see a reset instead of an answer.
                session.set_keepalive(None);
                let drain_timeout = self.settings.reject_drain_timeout;
                match response::send(session, &reply, drain_timeout).await {
                    Ok(()) => reply.status().as_u16(),
                    Err(_) => 0,
                }
            }
            Some(reply) => reply.status().as_u16(),
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Pingora's own line for a failed request repeats the access line, with the query
    /// string: never written. The access line carries the error (or, with the access log
    /// off, one WARN line of the proxy's; see `logging`).
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _e: &Error) -> bool {
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let ended = Ended {
            entry: access_log::Entry {
                started: ctx.started,
                client_ip: ctx.client_ip,
                identity: ctx.identity(),
                rejection: ctx.rejection.as_ref(),
                upstream_duration: ctx.upstream.started.map(|t| t.elapsed()),
                pool: &self.pools.get(ctx.upstream.pool).name,
                member: ctx.upstream.member,
                request_id: &ctx.request_id,
                server_name: server_name(session),
            },
            events: ctx.events(),
        };
        self.front.record(session, e, &ended);
    }
}

impl ApmProxy {
    /// Carry an admission out in the pool chosen for it, then its body plan, reading ahead
    /// where a decision must come before anything is forwarded (the intake metadata line; an
    /// agent-config query's service). `Some(reply)` refuses the request.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        admission: Admission,
        pool: std::result::Result<PoolId, PoolRefused>,
    ) -> Result<Option<Reply>> {
        let cors = admission.cors_origin;
        let Ok(pool) = pool else {
            ctx.refused_identity = Some(admission.identity);
            return Ok(Some(
                Reply::plain(Rejection::UpstreamNotPermitted).with_cors(cors.as_deref()),
            ));
        };
        ctx.upstream.pool = pool;
        let req = session.req_header();
        let input = PlanInput {
            kind: admission.kind,
            method: &req.method,
            target: req.raw_path(),
            headers: &req.headers,
            rules: admission.rules,
            events: admission.events,
            count_events: self.count_events,
        };
        let plan = crate::intake::plan(input, &self.settings.body_limits);
        let admitted = ctx.admitted.insert(Admitted {
            identity: admission.identity,
            kind: admission.kind,
            cors_origin: cors,
            _slot: admission.slot,
            body: BodyWork::None,
            config_answer: None,
        });
        let refused = match plan {
            BodyPlan::Unread {
                count_lines,
                keep_retry_copy,
            } => {
                if !keep_retry_copy {
                    session.as_downstream_mut().disable_retry_buffering();
                }
                if count_lines {
                    admitted.body = BodyWork::Lines(LineCount::default());
                }
                None
            }
            BodyPlan::ConfigQuery { rules, in_body } => {
                self.check_config_query(session, &rules, in_body).await?
            }
            BodyPlan::Events(mut check) => {
                // Read ahead until the metadata line has been checked (or the body ends), so
                // a refused stream reaches the upstream not at all. What is read stays in
                // Pingora's retry buffer and is replayed upstream first.
                prepare_read_ahead(session, READ_AHEAD_LIMIT).await?;
                let mut refused = None;
                while refused.is_none() && check.needs_read_ahead() {
                    let checked = match read_ahead(session).await? {
                        ReadAhead::Chunk(chunk) => check.feed_ahead(&chunk),
                        ReadAhead::End => check.end_ahead(),
                        ReadAhead::TooLarge => {
                            Err(Reply::intake(Rejection::MetadataBeyondReadAhead, 0))
                        }
                        ReadAhead::TimedOut => Err(Reply::plain(Rejection::ClientTimeout)),
                    };
                    refused = checked.err();
                }
                admitted.body = BodyWork::Checked(check);
                refused
            }
            BodyPlan::Otlp(check) => {
                let body = match check.refuse_unread() {
                    Some(reply) => Err(reply),
                    None => read_whole(session, check.max_held()).await?,
                };
                match body.and_then(|body| check.check(&body, Instant::now())) {
                    Ok(passed) => {
                        admitted.body = BodyWork::Counted(passed.items);
                        // The items' tokens are reserved; forward once they are due.
                        if !passed.wait.is_zero() {
                            tokio::time::sleep(passed.wait).await;
                        }
                        None
                    }
                    Err(reply) => Some(reply),
                }
            }
        };
        Ok(refused.map(|reply| reply.with_cors(ctx.cors_origin())))
    }

    /// An agent-config query names its service in the query string (GET) or in a small
    /// JSON body (POST, read whole and replayed upstream).
    async fn check_config_query(
        &self,
        session: &mut Session,
        rules: &NameRules,
        in_body: bool,
    ) -> Result<Option<Reply>> {
        let service = if in_body {
            match read_whole(session, READ_AHEAD_LIMIT).await? {
                Ok(body) => agent_config::service_in_body(&body),
                Err(reply) => return Ok(Some(reply)),
            }
        } else {
            let query = session.req_header().uri.query().unwrap_or("");
            agent_config::query_param(query, "service.name")
        };
        Ok(agent_config::check_service(rules, service.as_deref()).err())
    }
}
