//! The global action budget (storm protection): at most N actions in any window W, all rules
//! together.
//!
//! Why not a token-bucket crate such as governor: a bucket of N refilling at N/W admits up
//! to 2N−1 actions within one window (a full burst, then the refill), which breaks the
//! promise an operator reads in `ACTION_BUDGET=10/10m`. A sliding log of the last N action
//! times keeps the promise exactly, costs O(N) memory, and takes the time as an argument
//! so `simulate` and the property tests are deterministic.

use std::collections::VecDeque;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Budget {
    limit: u32,
    window: Duration,
    taken: VecDeque<Duration>,
}

impl Budget {
    pub fn new(limit: u32, window: Duration) -> Self {
        Budget {
            limit,
            window,
            // Grows as actions are taken: a limit of millions must not allocate them up front.
            taken: VecDeque::with_capacity((limit as usize).min(64)),
        }
    }

    fn expire(&mut self, now: Duration) {
        while self.taken.front().is_some_and(|t| *t + self.window <= now) {
            self.taken.pop_front();
        }
    }

    /// Takes one action from the budget; false when the window is full.
    pub fn try_take(&mut self, now: Duration) -> bool {
        self.expire(now);
        if self.taken.len() < self.limit as usize {
            self.taken.push_back(now);
            true
        } else {
            false
        }
    }

    /// Gives back an action taken at `at` that was never carried out (the writer dropped
    /// it): the budget counts what was done, not what was planned.
    pub fn refund(&mut self, at: Duration) {
        if let Some(i) = self.taken.iter().rposition(|t| *t == at) {
            self.taken.remove(i);
        }
    }

    /// Actions left right now.
    pub fn left(&mut self, now: Duration) -> u32 {
        self.expire(now);
        self.limit.saturating_sub(self.taken.len() as u32)
    }

    /// When the next action becomes possible, if the budget is exhausted.
    pub fn next_free(&self) -> Option<Duration> {
        (self.taken.len() >= self.limit as usize)
            .then(|| self.taken.front().map(|t| *t + self.window))
            .flatten()
    }

    /// Every recorded action time, oldest first (expired ones included until the next
    /// look at the window).
    pub fn taken_times(&self) -> impl Iterator<Item = Duration> + '_ {
        self.taken.iter().copied()
    }

    /// Adds action times recorded elsewhere (the guard state kept in the cluster): their
    /// union as multisets, in order. Two actions of one tick share a time, so a time held
    /// n times on one side and m on the other is kept max(n, m) times.
    pub fn merge(&mut self, times: impl Iterator<Item = Duration>) {
        let mut theirs: Vec<Duration> = times.collect();
        theirs.sort_unstable();
        let mine: Vec<Duration> = self.taken.drain(..).collect();
        let (mut i, mut j) = (0, 0);
        while i < mine.len() || j < theirs.len() {
            let next = match (mine.get(i), theirs.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    j += 1;
                    i += 1;
                    *a
                }
                (Some(a), Some(b)) if a < b => {
                    i += 1;
                    *a
                }
                (Some(_), Some(b)) | (None, Some(b)) => {
                    j += 1;
                    *b
                }
                (Some(a), None) => {
                    i += 1;
                    *a
                }
                (None, None) => break,
            };
            self.taken.push_back(next);
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// The same log of past actions under new limits: a reload that edits a limit must not
    /// forget what was already done.
    pub fn relimited(mut self, limit: u32, window: Duration) -> Self {
        self.limit = limit;
        self.window = window;
        let keep = self.taken.len().saturating_sub(limit as usize);
        self.taken.drain(..keep);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refund_frees_exactly_the_action_that_was_not_carried_out() {
        let mut b = Budget::new(2, Duration::from_secs(60));
        assert!(b.try_take(Duration::from_secs(1)));
        assert!(b.try_take(Duration::from_secs(2)));
        assert!(!b.try_take(Duration::from_secs(3)));
        b.refund(Duration::from_secs(2));
        assert_eq!(b.left(Duration::from_secs(3)), 1);
        b.refund(Duration::from_secs(30));
        assert_eq!(b.left(Duration::from_secs(3)), 1, "nothing was taken at 30s");
        assert_eq!(b.next_free(), None);
    }

    #[test]
    fn a_merge_keeps_each_action_once_and_actions_of_one_tick_apart() {
        let s = Duration::from_secs;
        let mut b = Budget::new(10, s(600));
        for t in [1, 1, 5] {
            b.try_take(s(t));
        }
        b.merge([s(1), s(3), s(5), s(5)].into_iter());
        let got: Vec<u64> = b.taken_times().map(|t| t.as_secs()).collect();
        assert_eq!(got, [1, 1, 3, 5, 5]);
        b.merge(std::iter::empty());
        assert_eq!(b.taken_times().count(), 5);
    }

    #[test]
    fn never_more_than_n_in_any_window() {
        let mut b = Budget::new(3, Duration::from_secs(600));
        let s = Duration::from_secs;
        assert!(b.try_take(s(0)) && b.try_take(s(10)) && b.try_take(s(20)));
        assert!(!b.try_take(s(599)));
        assert_eq!(b.next_free(), Some(s(600)));
        assert!(b.try_take(s(600)));
        assert!(!b.try_take(s(609)));
        assert!(b.try_take(s(610)));
        assert_eq!(b.left(s(610)), 0);
        assert_eq!(b.left(s(1300)), 3);
    }
}
