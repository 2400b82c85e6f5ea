//! What the proxy reads of a request body, and only where it must: intake streams from
//! anonymous callers and service-bound keys (event names and counts, as they stream), and
//! agent-config queries (their service, and the anonymous trimming of the answer), and OTLP
//! exports (each resource's names and the count of what it holds, read whole).

pub mod agent_config;
mod body_check;
pub(crate) mod decode;
pub mod otlp;
mod otlp_check;
mod plan;
pub(crate) mod reader;
mod rules;

pub use body_check::{BodyCheck, READ_AHEAD_LIMIT};
pub use otlp_check::{OtlpCheck, OtlpPassed};
pub use plan::{plan, BodyPlan, PlanInput};

/// Events in an uncompressed ndjson body the proxy does not otherwise read, counted by its
/// lines as they stream (the first line is the metadata).
#[derive(Debug, Default, Clone, Copy)]
pub struct LineCount {
    lines: u64,
}

impl LineCount {
    pub fn feed(&mut self, chunk: &[u8]) {
        // Counted with vector instructions: every byte of every large upload passes here.
        self.lines += memchr::memchr_iter(b'\n', chunk).count() as u64;
    }

    pub fn events(&self) -> u64 {
        self.lines.saturating_sub(1)
    }
}
pub use decode::Format;

#[cfg(test)]
mod tests {
    use super::LineCount;

    #[test]
    fn events_are_the_lines_after_the_metadata() {
        let mut count = LineCount::default();
        assert_eq!(count.events(), 0);
        count.feed(b"{\"metadata\":{}}\n{\"span\"");
        assert_eq!(count.events(), 0);
        count.feed(b":{}}\n{\"error\":{}}\n");
        assert_eq!(count.events(), 2);
    }

    #[test]
    fn long_chunks_count_every_line() {
        // Longer than any vector register: the counting's wide path and its tail.
        let body: Vec<u8> = (0..4099u32)
            .map(|i| if i % 7 == 6 { b'\n' } else { b'x' })
            .collect();
        let mut count = LineCount::default();
        count.feed(&body);
        assert_eq!(count.events(), 4099 / 7 - 1);
    }
}
