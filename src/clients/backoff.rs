//! Exponential backoff with full jitter and a cap ("Exponential Backoff And Jitter", AWS
//! Architecture Blog): each delay is drawn uniformly from `[0, min(cap, base * 2^n)]`, so
//! replicas and clients that failed together do not retry together.
//!
//! backon's own `with_jitter()` adds `rand(0..d)` to `d` (delays in `[d, 2d)`, above the
//! cap), and without backon's `std` feature, which this crate leaves off, its generator
//! starts from one fixed seed, so every process draws the same "random" sequence. This
//! wrapper keeps backon's exponential schedule (built without jitter) and its retry loop,
//! and draws the jitter itself from a randomly seeded `fastrand` generator.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// A `Retry-After` (HTTP header, or a Kubernetes Status' `retryAfterSeconds`) longer than
/// this is not waited for: the action fails now and the next evaluation decides again with
/// fresh data. Actions run one after another inside a tick, so a long wait would hold up
/// every other action (three retries at the cap: 30 s).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The delay before the next attempt: the server's `Retry-After` (`asked`) replaces the
/// computed one (`next`), up to [`MAX_RETRY_AFTER`]; beyond it, or when the schedule is
/// exhausted, there is no next attempt. For backon's `adjust`.
pub fn after(asked: Option<Duration>, next: Option<Duration>) -> Option<Duration> {
    match asked {
        Some(wait) if wait > MAX_RETRY_AFTER => None,
        Some(wait) => next.map(|_| wait),
        None => next,
    }
}

/// The retry schedule of transient failures (429, 5xx, timeouts): 3 retries, 200 ms
/// doubling up to 2 s, full jitter, so an action gives up within seconds and the next tick
/// decides again with fresh data.
pub fn default_backoff() -> FullJitter {
    FullJitter::exponential(Duration::from_millis(200), Duration::from_secs(2), 3)
}

/// Builds a [`FullJitterBackoff`]: backon's exponential schedule, each delay `d` replaced
/// by a uniformly random duration in `[0, d]`.
#[derive(Debug, Clone, Copy)]
pub struct FullJitter {
    schedule: ExponentialBuilder,
    seed: Option<u64>,
}

impl FullJitter {
    /// Full jitter over `schedule`, which must not jitter itself (`with_jitter()` would
    /// stretch each delay before it is drawn from).
    pub fn new(schedule: ExponentialBuilder) -> Self {
        FullJitter { schedule, seed: None }
    }

    /// `min` doubling up to `max`, at most `max_times` retries, full jitter.
    pub fn exponential(min: Duration, max: Duration, max_times: usize) -> Self {
        FullJitter::new(
            ExponentialBuilder::new()
                .with_min_delay(min)
                .with_max_delay(max)
                .with_max_times(max_times),
        )
    }

    /// A fixed seed, for tests that want the same delays every run.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl BackoffBuilder for FullJitter {
    type Backoff = FullJitterBackoff;

    fn build(self) -> FullJitterBackoff {
        FullJitterBackoff {
            schedule: self.schedule.build(),
            rng: self
                .seed
                .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
        }
    }
}

/// The delays of one retry loop.
#[derive(Debug)]
pub struct FullJitterBackoff {
    schedule: ExponentialBackoff,
    rng: fastrand::Rng,
}

impl Iterator for FullJitterBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ceiling = self.schedule.next()?;
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(self.rng.u64(0..=nanos)))
    }
}

/// The pod watch's reconnect schedule, for kube-runtime's `StreamBackoff`: 500 ms doubling
/// to 5 s, full jitter, never giving up, and from the start again after an event arrives.
/// kube-runtime's default (800 ms doubling to 30 s, plus a jitter that can double that) can
/// leave pod signals unknown for a minute after the API server is back.
#[derive(Debug)]
pub struct Reconnect {
    schedule: FullJitter,
    current: FullJitterBackoff,
}

impl Default for Reconnect {
    fn default() -> Self {
        let schedule = FullJitter::new(
            ExponentialBuilder::new()
                .with_min_delay(Duration::from_millis(500))
                .with_max_delay(Duration::from_secs(5))
                .without_max_times(),
        );
        Reconnect {
            current: schedule.build(),
            schedule,
        }
    }
}

impl Iterator for Reconnect {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.current.next()
    }
}

impl kube::runtime::utils::Backoff for Reconnect {
    fn reset(&mut self) {
        self.current = self.schedule.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_reconnects_within_five_seconds_forever_and_starts_over_after_a_reset() {
        use kube::runtime::utils::Backoff;
        let mut r = Reconnect::default();
        let first: Vec<Duration> = r.by_ref().take(200).collect();
        assert_eq!(first.len(), 200, "never gives up");
        assert!(first.iter().all(|d| *d <= Duration::from_secs(5)), "{first:?}");
        r.reset();
        assert!(r.next().unwrap() <= Duration::from_millis(500));
    }

    #[test]
    fn delays_are_drawn_from_zero_to_the_capped_exponential() {
        let (min, cap) = (Duration::from_millis(200), Duration::from_secs(2));
        let delays: Vec<Duration> = FullJitter::exponential(min, cap, 6).build().collect();
        assert_eq!(delays.len(), 6, "one delay per retry, then none");
        // The ceilings: 200 ms, 400 ms, 800 ms, 1.6 s, then the cap.
        let ceilings = [200, 400, 800, 1600, 2000, 2000].map(Duration::from_millis);
        for (delay, ceiling) in delays.iter().zip(ceilings) {
            assert!(*delay <= ceiling, "{delay:?} above {ceiling:?}");
        }
        let many: Vec<Duration> = FullJitter::exponential(min, cap, 50).build().collect();
        assert!(many.iter().all(|d| *d <= cap));
        assert!(many.windows(2).any(|w| w[0] != w[1]), "jittered: {many:?}");
        assert!(
            many.iter().any(|d| *d < min),
            "full jitter goes below the base delay: {many:?}"
        );
    }

    #[test]
    fn two_loops_draw_different_delays_and_a_seed_repeats_them() {
        let schedule = FullJitter::exponential(Duration::from_secs(1), Duration::from_secs(30), 8);
        let a: Vec<Duration> = schedule.build().collect();
        let b: Vec<Duration> = schedule.build().collect();
        assert_ne!(a, b, "not one fixed sequence for every process");
        let seeded = schedule.with_seed(7);
        assert_eq!(
            seeded.build().collect::<Vec<_>>(),
            seeded.build().collect::<Vec<_>>()
        );
    }
}
