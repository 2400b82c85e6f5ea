//! Bounded waiting: every loop in the suite ends, in count and in time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Poll `check` until it holds; panics naming `what` after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The blocking form of [`eventually`].
pub fn eventually_blocking(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `attempt` until it reports that its timing precondition held (`Some(result)`), at most
/// `tries` times. For sequences whose meaning depends on steps being close together (a rate
/// limit's bucket not yet refilled): an attempt that finds the machine too slow says `None`
/// and is run again with fresh state, instead of asserting something the clock decided.
pub async fn with_timing<T, F, Fut>(what: &str, tries: usize, mut attempt: F) -> T
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for i in 0..tries {
        if let Some(result) = attempt(i).await {
            return result;
        }
    }
    panic!("{what}: the machine was too slow for the sequence in {tries} tries");
}
