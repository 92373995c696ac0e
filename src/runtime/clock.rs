//! The daemon's engine time: milliseconds since the Unix epoch, advanced by the monotonic
//! clock from the start. Wall-clock based so the guard state kept in the cluster (cooldowns,
//! rate-limit windows, the budget) means the same thing to the next process that reads it;
//! monotonic after the start so a clock step never rewinds a cooldown. Whole milliseconds so
//! a time written to the state object and read back is exactly the time the engine holds
//! (a budget refund matches an entry by its time).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_unix: Duration,
}

impl Clock {
    pub fn start() -> Self {
        Clock {
            start: Instant::now(),
            start_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO),
        }
    }

    /// Now, in engine time, to the millisecond.
    pub fn now(&self) -> Duration {
        millis(self.start_unix + self.start.elapsed())
    }
}

/// `d` cut to whole milliseconds.
pub fn millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_time_is_unix_time_in_whole_milliseconds() {
        let clock = Clock::start();
        let now = clock.now();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(
            wall.saturating_sub(now) < Duration::from_secs(5),
            "{now:?} vs {wall:?}"
        );
        assert_eq!(now.subsec_nanos() % 1_000_000, 0);
        assert!(clock.now() >= now);
    }
}
