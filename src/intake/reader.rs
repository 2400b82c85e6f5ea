//! A streaming reader of APM intake bodies (ndjson, v2 and RUM v3): finds the metadata
//! line's service and agent names and the per-event overrides, through gzip, zlib/deflate or
//! plain bodies (sniffed like APM Server when `Content-Encoding` says nothing useful), fed
//! chunk by chunk as the body streams. Memory stays bounded: at most one event line
//! (`max_event_size`) plus the decompressor's window, whatever the body's size or ratio.
//!
//! The checks themselves (allow-lists, service-bound keys, event counting for rate limits)
//! belong to the caller, through [`EventVisitor`]; the first rejection stops the reading.

use std::io::Write;

use super::decode::{self, Format, Line, LineError, Names};

/// What the caller decides per line; an `Err` stops the body with that rejection.
pub trait EventVisitor {
    type Reject;
    fn metadata(&mut self, names: Names) -> Result<(), Self::Reject>;
    /// Every event after the metadata; `overrides` is empty when the event names nothing.
    fn event(&mut self, overrides: Names) -> Result<(), Self::Reject>;
}

#[derive(Debug, PartialEq, Eq)]
pub enum ScanError<R> {
    /// The visitor refused a line.
    Rejected(R),
    /// A line longer than `max_event_size` (APM Server: `event exceeded the permitted size`).
    EventTooLarge,
    /// The first line is not a metadata object.
    MissingMetadata,
    /// A line is not JSON.
    InvalidJson,
    /// The compressed stream is corrupt.
    Decompression,
    /// A line whose keys APM Server and a case-sensitive reader would read differently.
    Ambiguous,
    /// The body decompressed beyond the reader's limit.
    TooLarge,
}

enum Stage<V: EventVisitor> {
    /// Waiting for the first bytes to sniff the encoding.
    Sniff(Lines<V>, Vec<u8>),
    Plain(Lines<V>),
    Gzip(Box<flate2::write::MultiGzDecoder<Lines<V>>>),
    Zlib(Box<flate2::write::ZlibDecoder<Lines<V>>>),
    Done,
}

/// Feed body chunks with [`IntakeReader::feed`], then call [`IntakeReader::finish`].
pub struct IntakeReader<V: EventVisitor> {
    stage: Stage<V>,
    /// Events the visitor accepted so far; kept when the reading stops on an error, so an
    /// error reply can say how many events went before it.
    events: u64,
    blank_lines: u64,
}

impl<V: EventVisitor> IntakeReader<V> {
    #[cfg(test)]
    pub fn new(
        content_encoding: Option<&[u8]>,
        format: Format,
        max_event_size: usize,
        visitor: V,
    ) -> Self {
        Self::with_limit(content_encoding, format, max_event_size, None, visitor)
    }

    /// Like `new`, refusing a body that decompresses to more than `max_body` bytes.
    pub fn with_limit(
        content_encoding: Option<&[u8]>,
        format: Format,
        max_event_size: usize,
        max_body: Option<u64>,
        visitor: V,
    ) -> Self {
        let mut lines = Lines::new(format, max_event_size, visitor);
        lines.max_body = max_body;
        let stage = match content_encoding.map(|e| e.trim_ascii().to_ascii_lowercase()) {
            Some(e) if e == b"gzip" => {
                Stage::Gzip(Box::new(flate2::write::MultiGzDecoder::new(lines)))
            }
            Some(e) if e == b"deflate" => {
                Stage::Zlib(Box::new(flate2::write::ZlibDecoder::new(lines)))
            }
            // Missing or unknown: sniff, as APM Server does for RUM beacons.
            _ => Stage::Sniff(lines, Vec::with_capacity(2)),
        };
        IntakeReader {
            stage,
            events: 0,
            blank_lines: 0,
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), ScanError<V::Reject>> {
        if let Stage::Sniff(_, head) = &mut self.stage {
            let take = (2 - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if head.len() < 2 {
                return Ok(());
            }
            self.choose()?;
        }
        self.write(chunk)
    }

    /// Events accepted by the visitor so far (those before an error, after one).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Blank lines read so far (APM Server skips them; they still cost reading).
    pub fn blank_lines(&self) -> u64 {
        self.blank_lines
    }

    /// Has the metadata line been read (and accepted by the visitor)?
    pub fn seen_metadata(&self) -> bool {
        let lines = match &self.stage {
            Stage::Sniff(l, _) | Stage::Plain(l) => Some(l),
            Stage::Gzip(d) => Some(d.get_ref()),
            Stage::Zlib(d) => Some(d.get_ref()),
            Stage::Done => None,
        };
        lines.is_some_and(|l| l.seen_metadata && l.error.is_none())
    }

    fn lines_mut(&mut self) -> Option<&mut Lines<V>> {
        match &mut self.stage {
            Stage::Sniff(l, _) | Stage::Plain(l) => Some(l),
            Stage::Gzip(d) => Some(d.get_mut()),
            Stage::Zlib(d) => Some(d.get_mut()),
            Stage::Done => None,
        }
    }

    /// The body ended: check the last line and the compressed stream's end.
    pub fn finish(&mut self) -> Result<(), ScanError<V::Reject>> {
        if matches!(self.stage, Stage::Sniff(..)) {
            self.choose()?;
        }
        // Decompressors hold output back; a rejection found while flushing it wins over
        // the stream error it causes.
        let flushed = match &mut self.stage {
            Stage::Gzip(d) => d.try_finish(),
            Stage::Zlib(d) => d.try_finish(),
            _ => Ok(()),
        };
        self.sync_events();
        if let Some(e) = self.lines_mut().and_then(|l| l.error.take()) {
            self.stage = Stage::Done;
            return Err(e);
        }
        let lines = match (flushed, std::mem::replace(&mut self.stage, Stage::Done)) {
            (Ok(()), Stage::Plain(l)) => Ok(l),
            (Ok(()), Stage::Gzip(d)) => d.finish().map_err(|_| ()),
            (Ok(()), Stage::Zlib(d)) => d.finish().map_err(|_| ()),
            _ => Err(()),
        };
        let mut lines = match lines {
            Ok(l) => l,
            Err(()) => return Err(ScanError::Decompression),
        };
        let end = lines.end_of_body();
        self.events = lines.events;
        self.blank_lines = lines.blank_lines;
        if end.is_ok() {
            // Kept for `into_visitor`; nothing is fed after the end.
            self.stage = Stage::Plain(lines);
        }
        end
    }

    /// The caller's visitor, after a successful [`IntakeReader::finish`] or while reading.
    #[cfg(test)]
    pub fn into_visitor(self) -> Option<V> {
        match self.stage {
            Stage::Sniff(l, _) | Stage::Plain(l) => Some(l.visitor),
            Stage::Gzip(d) => d.finish().ok().map(|l| l.visitor),
            Stage::Zlib(d) => d.finish().ok().map(|l| l.visitor),
            Stage::Done => None,
        }
    }

    fn sync_events(&mut self) {
        if let Some((events, blank)) = self.lines_mut().map(|l| (l.events, l.blank_lines)) {
            self.events = events;
            self.blank_lines = blank;
        }
    }

    /// Decide the encoding from the (up to) two sniffed bytes and replay them.
    fn choose(&mut self) -> Result<(), ScanError<V::Reject>> {
        let Stage::Sniff(lines, head) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return Ok(());
        };
        self.stage = match head.as_slice() {
            [0x1f, 0x8b, ..] => Stage::Gzip(Box::new(flate2::write::MultiGzDecoder::new(lines))),
            [b, ..] if b & 0x0f == 8 => {
                Stage::Zlib(Box::new(flate2::write::ZlibDecoder::new(lines)))
            }
            _ => Stage::Plain(lines),
        };
        self.write(&head)
    }

    fn write(&mut self, data: &[u8]) -> Result<(), ScanError<V::Reject>> {
        if data.is_empty() {
            return Ok(());
        }
        // Flushing the decompressor hands every complete line to the visitor now, so a
        // decision never waits for the next chunk.
        let result = match &mut self.stage {
            Stage::Plain(l) => l.write_all(data),
            Stage::Gzip(d) => d.write_all(data).and_then(|()| d.flush()),
            Stage::Zlib(d) => d.write_all(data).and_then(|()| d.flush()),
            Stage::Sniff(..) | Stage::Done => Ok(()),
        };
        self.sync_events();
        if let Some(e) = self.lines_mut().and_then(|l| l.error.take()) {
            self.stage = Stage::Done;
            return Err(e);
        }
        result.map_err(|_| ScanError::Decompression)
    }
}

/// Splits decompressed bytes into lines and hands each to the visitor; a `Write` sink so
/// the decompressor streams into it without an intermediate buffer.
struct Lines<V: EventVisitor> {
    visitor: V,
    format: Format,
    line: Vec<u8>,
    max_event_size: usize,
    seen_metadata: bool,
    /// Events the visitor accepted.
    events: u64,
    blank_lines: u64,
    /// Decompressed bytes so far, and the most allowed.
    body: u64,
    max_body: Option<u64>,
    error: Option<ScanError<V::Reject>>,
}

impl<V: EventVisitor> Lines<V> {
    fn new(format: Format, max_event_size: usize, visitor: V) -> Self {
        Lines {
            visitor,
            format,
            line: Vec::new(),
            max_event_size,
            seen_metadata: false,
            events: 0,
            blank_lines: 0,
            body: 0,
            max_body: None,
            error: None,
        }
    }

    fn line_done(&mut self) -> Result<(), ScanError<V::Reject>> {
        let line = std::mem::take(&mut self.line);
        let result = self.visit(line.trim_ascii());
        self.line = line;
        self.line.clear();
        result
    }

    fn visit(&mut self, line: &[u8]) -> Result<(), ScanError<V::Reject>> {
        if line.is_empty() {
            self.blank_lines += 1;
            return Ok(());
        }
        let parsed = decode::line(line, self.format).map_err(|e| match e {
            LineError::InvalidJson => ScanError::InvalidJson,
            LineError::Ambiguous => ScanError::Ambiguous,
        })?;
        if !self.seen_metadata {
            let Line::Metadata(names) = parsed else {
                return Err(ScanError::MissingMetadata);
            };
            self.seen_metadata = true;
            return self.visitor.metadata(names).map_err(ScanError::Rejected);
        }
        let overrides = match parsed {
            Line::Event(names) => names,
            Line::Metadata(_) | Line::Other => Names::default(),
        };
        self.visitor.event(overrides).map_err(ScanError::Rejected)?;
        self.events += 1;
        Ok(())
    }

    fn end_of_body(&mut self) -> Result<(), ScanError<V::Reject>> {
        if !self.line.is_empty() {
            self.line_done()?;
        }
        Ok(())
    }
}

impl<V: EventVisitor> Write for Lines<V> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Err(std::io::Error::other("stopped"));
        }
        self.body += buf.len() as u64;
        if self.max_body.is_some_and(|max| self.body > max) {
            self.error = Some(ScanError::TooLarge);
            return Err(std::io::Error::other("too large"));
        }
        let mut rest = buf;
        while !rest.is_empty() {
            let (content, ends_line) = match memchr::memchr(b'\n', rest) {
                Some(end) => {
                    let line = &rest[..end];
                    rest = &rest[end + 1..];
                    (line, true)
                }
                None => (std::mem::take(&mut rest), false),
            };
            if self.line.len() + content.len() > self.max_event_size {
                self.error = Some(ScanError::EventTooLarge);
                return Err(std::io::Error::other("event too large"));
            }
            self.line.extend_from_slice(content);
            if ends_line {
                if let Err(e) = self.line_done() {
                    self.error = Some(e);
                    return Err(std::io::Error::other("rejected"));
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it saw; refuses the service "forbidden".
    #[derive(Default)]
    struct Record {
        metadata: Vec<Names>,
        events: Vec<Names>,
    }

    impl EventVisitor for Record {
        type Reject = String;
        fn metadata(&mut self, names: Names) -> Result<(), String> {
            self.metadata.push(names);
            Ok(())
        }
        fn event(&mut self, names: Names) -> Result<(), String> {
            if names.service.as_deref() == Some("forbidden") {
                return Err("service forbidden".into());
            }
            self.events.push(names);
            Ok(())
        }
    }

    const V2: &str = "{\"metadata\":{\"service\":{\"name\":\"shop\",\"agent\":{\"name\":\"rum-js\",\"version\":\"5\"}}}}\n\
        {\"transaction\":{\"id\":\"a\",\"context\":{\"service\":{\"name\":\"checkout\",\"agent\":{\"name\":\"js-base\"}}}}}\n\
        \n\
        {\"span\":{\"id\":\"b\",\"name\":\"GET /x\"}}\n";

    fn read(
        body: &[u8],
        encoding: Option<&[u8]>,
        chunk: usize,
    ) -> Result<Record, ScanError<String>> {
        // RUM v3 bodies open with their `m` metadata.
        let format = if body.starts_with(b"{\"m\"") {
            Format::V3
        } else {
            Format::V2
        };
        let mut r = IntakeReader::new(encoding, format, 1024, Record::default());
        for c in body.chunks(chunk.max(1)) {
            r.feed(c)?;
        }
        r.finish()?;
        Ok(r.into_visitor()
            .expect("finished readers keep their visitor"))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn expect_v2(r: Record) {
        assert_eq!(
            r.metadata,
            vec![Names {
                service: Some("shop".into()),
                agent: Some("rum-js".into())
            }]
        );
        assert_eq!(
            r.events,
            vec![
                Names {
                    service: Some("checkout".into()),
                    agent: Some("js-base".into())
                },
                Names::default()
            ]
        );
    }

    #[test]
    fn plain_gzip_and_zlib_with_and_without_headers_in_any_chunking() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            expect_v2(read(V2.as_bytes(), None, chunk).unwrap());
            expect_v2(read(V2.as_bytes(), Some(b"identity"), chunk).unwrap());
            expect_v2(read(&gzip(V2.as_bytes()), Some(b"gzip"), chunk).unwrap());
            expect_v2(read(&gzip(V2.as_bytes()), None, chunk).unwrap());
            expect_v2(read(&zlib(V2.as_bytes()), Some(b"deflate"), chunk).unwrap());
            expect_v2(read(&zlib(V2.as_bytes()), None, chunk).unwrap());
        }
    }

    #[test]
    fn rum_v3_names() {
        let body = "{\"m\":{\"se\":{\"n\":\"web\",\"a\":{\"n\":\"rum-js\"}}}}\n{\"x\":{\"c\":{\"se\":{\"n\":\"other\"}}}}\n{\"e\":{\"id\":\"1\"}}";
        let r = read(body.as_bytes(), None, 5).unwrap();
        assert_eq!(r.metadata[0].service.as_deref(), Some("web"));
        assert_eq!(r.metadata[0].agent.as_deref(), Some("rum-js"));
        assert_eq!(r.events[0].service.as_deref(), Some("other"));
        assert_eq!(r.events.len(), 2, "the last line needs no newline");
    }

    #[test]
    fn rejections_and_malformed_bodies() {
        let forbidden = format!(
            "{V2}{{\"error\":{{\"context\":{{\"service\":{{\"name\":\"forbidden\"}}}}}}}}\n"
        );
        assert_eq!(
            read(forbidden.as_bytes(), None, 10).err(),
            Some(ScanError::Rejected("service forbidden".into()))
        );
        assert_eq!(
            read(&gzip(forbidden.as_bytes()), None, 10).err(),
            Some(ScanError::Rejected("service forbidden".into()))
        );
        assert_eq!(
            read(b"{\"transaction\":{}}\n", None, 10).err(),
            Some(ScanError::MissingMetadata)
        );
        assert_eq!(
            read(b"{\"metadata\":{}}\nnot json\n", None, 10).err(),
            Some(ScanError::InvalidJson)
        );
        assert_eq!(
            read(b"\x1f\x8bgarbage-that-is-not-gzip", None, 10).err(),
            Some(ScanError::Decompression)
        );
        let long = format!(
            "{{\"metadata\":{{}}}}\n{{\"span\":{{\"name\":\"{}\"}}}}\n",
            "x".repeat(2000)
        );
        assert_eq!(
            read(long.as_bytes(), None, 100).err(),
            Some(ScanError::EventTooLarge)
        );
    }

    #[test]
    fn a_compression_bomb_stays_bounded() {
        // 64 MiB of one endless line, compressed to a few tens of KiB: stopped at the limit.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b"{\"metadata\":{}}\n").unwrap();
        let block = vec![b'a'; 1 << 20];
        for _ in 0..64 {
            e.write_all(&block).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        assert_eq!(
            read(&bomb, Some(b"gzip"), 8192).err(),
            Some(ScanError::EventTooLarge)
        );
    }
}

#[cfg(test)]
mod accepted_count {
    use super::*;

    struct RefuseNth(u64);

    impl EventVisitor for RefuseNth {
        type Reject = ();
        fn metadata(&mut self, _: Names) -> Result<(), ()> {
            Ok(())
        }
        fn event(&mut self, _: Names) -> Result<(), ()> {
            self.0 = self.0.checked_sub(1).ok_or(())?;
            Ok(())
        }
    }

    /// The events before a refused one count, even when they came in the same chunk.
    #[test]
    fn events_before_a_refusal_in_the_same_chunk_are_counted() {
        let mut body = String::from("{\"metadata\":{}}\n");
        for _ in 0..13 {
            body.push_str("{\"transaction\":{}}\n");
        }
        let mut r = IntakeReader::new(None, Format::V2, 1024, RefuseNth(12));
        assert_eq!(r.feed(body.as_bytes()), Err(ScanError::Rejected(())));
        assert_eq!(r.events(), 12);
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let mut r = IntakeReader::new(Some(b"gzip"), Format::V2, 1024, RefuseNth(12));
        let fed = r.feed(&gz);
        let result = fed.and_then(|()| r.finish());
        assert_eq!(result, Err(ScanError::Rejected(())));
        assert_eq!(r.events(), 12);
    }
}
