//! Per-user limits of discussions, per instance: reactions (a sliding window) and typing (one
//! relay per user and room per interval). Both maps forget idle keys, so they stay bounded by
//! the users active in the last interval.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before idle ones are swept out.
const SWEEP_AT: usize = 4096;

/// At most `max` events per key within any `window`.
pub struct SlidingWindow<K> {
    max: usize,
    window: Duration,
    seen: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Eq + Hash + Clone> SlidingWindow<K> {
    /// `max` events per `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `key` at `now`; false (and not counted) when over the limit.
    pub fn allow(&self, key: &K, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= SWEEP_AT && !seen.contains_key(key) {
            let window = self.window;
            seen.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < window)
            });
        }
        let times = seen.entry(key.clone()).or_default();
        while times
            .front()
            .is_some_and(|first| now.duration_since(*first) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.max {
            return false;
        }
        times.push_back(now);
        true
    }

    /// Keys currently remembered (for tests).
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// At most one event per key every `every`; the rest are dropped.
pub struct Throttle<K> {
    inner: SlidingWindow<K>,
}

impl<K: Eq + Hash + Clone> Throttle<K> {
    /// One event per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            inner: SlidingWindow::new(1, every),
        }
    }

    /// True when `key` may go now.
    pub fn allow(&self, key: &K, now: Instant) -> bool {
        self.inner.allow(key, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_counts_within_the_window() {
        let limit = SlidingWindow::new(20, Duration::from_secs(10));
        let start = Instant::now();
        let key = "JD".to_owned();
        for i in 0..20 {
            assert!(limit.allow(&key, start + Duration::from_millis(i)), "{i}");
        }
        assert!(!limit.allow(&key, start + Duration::from_secs(5)));
        assert!(limit.allow(&"other".to_owned(), start + Duration::from_secs(5)));
        // Refused events do not count: ten seconds after the first, one slot is free again.
        assert!(limit.allow(&key, start + Duration::from_millis(10_000)));
        assert!(!limit.allow(&key, start + Duration::from_millis(10_000)));
    }

    #[test]
    fn throttle_lets_one_through_per_interval() {
        let throttle = Throttle::new(Duration::from_secs(2));
        let start = Instant::now();
        let key = ("JD".to_owned(), "1".to_owned());
        assert!(throttle.allow(&key, start));
        assert!(!throttle.allow(&key, start + Duration::from_millis(1999)));
        assert!(throttle.allow(&key, start + Duration::from_secs(2)));
    }

    #[test]
    fn idle_keys_are_swept() {
        let limit = SlidingWindow::new(1, Duration::from_secs(1));
        let start = Instant::now();
        for i in 0..SWEEP_AT {
            assert!(limit.allow(&i, start));
        }
        assert_eq!(limit.len(), SWEEP_AT);
        assert!(limit.allow(&usize::MAX, start + Duration::from_secs(2)));
        assert_eq!(limit.len(), 1);
    }
}
