//! Reading a request body ahead of forwarding (Pingora keeps what is read in its retry
//! buffer and replays it upstream first), releasing `Expect: 100-continue` clients first.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{ErrorType, Result};

use super::response;
use crate::admission::{Rejection, Reply};

pub enum ReadAhead {
    Chunk(Bytes),
    End,
    /// Past what Pingora's retry buffer can replay.
    TooLarge,
    /// The client sent nothing for `server.read_timeout`.
    TimedOut,
}

/// The next body chunk read ahead (kept in the retry buffer for the replay). Errors are the
/// client's (its connection), so they count as downstream errors.
pub async fn read_ahead(session: &mut Session) -> Result<ReadAhead> {
    let chunk = match session.as_downstream_mut().read_request_body().await {
        Ok(Some(chunk)) => chunk,
        Ok(None) => return Ok(ReadAhead::End),
        Err(e) if *e.etype() == ErrorType::ReadTimedout => return Ok(ReadAhead::TimedOut),
        Err(e) => return Err(e.into_down()),
    };
    if session.as_downstream().retry_buffer_truncated() {
        return Ok(ReadAhead::TooLarge);
    }
    Ok(ReadAhead::Chunk(chunk))
}

/// Before reading a body ahead: keep what is read for the replay (up to `limit` bytes, at
/// least Pingora's 64 KiB), and release a client that waits for `100 Continue` (HTTP/1.1) —
/// it would otherwise send nothing to read. No `100 Continue` is promised for a body that is
/// empty by its framing.
pub async fn prepare_read_ahead(session: &mut Session, limit: u64) -> Result<()> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    session
        .as_downstream_mut()
        .enable_retry_buffering_up_to(limit);
    let continues = response::expects_continue(session.req_header());
    if continues && !session.is_http2() && !session.as_downstream_mut().is_body_empty() {
        let header = ResponseHeader::build(100, Some(0))?;
        session
            .as_downstream_mut()
            .write_response_header(Box::new(header))
            .await?;
    }
    if continues {
        // Answered here (or not needed): the upstream must not wait for it again.
        session
            .req_header_mut()
            .remove_header(&http::header::EXPECT);
    }
    Ok(())
}

/// Read a body whole before forwarding any of it (kept in Pingora's retry buffer, which
/// replays it upstream), refusing it beyond `limit` bytes. `Err`: the answer instead.
pub async fn read_whole(
    session: &mut Session,
    limit: u64,
) -> Result<std::result::Result<Vec<u8>, Reply>> {
    prepare_read_ahead(session, limit).await?;
    let mut body = Vec::new();
    loop {
        match read_ahead(session).await? {
            ReadAhead::Chunk(chunk) => body.extend_from_slice(&chunk),
            ReadAhead::End => return Ok(Ok(body)),
            ReadAhead::TooLarge => return Ok(Err(Reply::plain(Rejection::BodyTooLarge))),
            ReadAhead::TimedOut => return Ok(Err(Reply::plain(Rejection::ClientTimeout))),
        }
        if body.len() as u64 > limit {
            return Ok(Err(Reply::plain(Rejection::BodyTooLarge)));
        }
    }
}
