//! Reading a request body ahead of forwarding (Pingora keeps what is read in its retry
//! buffer and replays it upstream first), releasing `Expect: 100-continue` clients first.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::response;

pub enum ReadAhead {
    Chunk(Bytes),
    End,
    /// Past what Pingora's retry buffer can replay.
    TooLarge,
}

/// The next body chunk read ahead (kept in the retry buffer for the replay).
pub async fn read_ahead(session: &mut Session) -> Result<ReadAhead> {
    let Some(chunk) = session.as_downstream_mut().read_request_body().await? else {
        return Ok(ReadAhead::End);
    };
    if session.as_downstream().retry_buffer_truncated() {
        return Ok(ReadAhead::TooLarge);
    }
    Ok(ReadAhead::Chunk(chunk))
}

/// Before reading a body ahead: keep what is read for the replay, and release a client
/// that waits for `100 Continue` (HTTP/1.1) — it would otherwise send nothing to read.
pub async fn prepare_read_ahead(session: &mut Session) -> Result<()> {
    session.as_downstream_mut().enable_retry_buffering();
    if response::expects_continue(session.req_header()) && !session.is_http2() {
        let header = ResponseHeader::build(100, Some(0))?;
        session
            .as_downstream_mut()
            .write_response_header(Box::new(header))
            .await?;
        session
            .req_header_mut()
            .remove_header(&http::header::EXPECT);
    }
    Ok(())
}
