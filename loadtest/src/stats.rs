//! Counters and histograms shared by the connection tasks of one run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hdrhistogram::Histogram;

/// A fixed-size set of post indexes.
#[derive(Clone)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub fn new(bits: usize) -> Self {
        Self {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    /// Sets `bit`; returns whether it was already set. Out-of-range bits count as set.
    pub fn set(&mut self, bit: usize) -> bool {
        match self.words.get_mut(bit / 64) {
            Some(w) => {
                let mask = 1u64 << (bit % 64);
                let was = *w & mask != 0;
                *w |= mask;
                was
            }
            None => true,
        }
    }

    pub fn get(&self, bit: usize) -> bool {
        self.words
            .get(bit / 64)
            .is_some_and(|w| w & (1u64 << (bit % 64)) != 0)
    }
}

/// A bitset many tasks set concurrently.
pub struct AtomicBitset {
    words: Vec<AtomicU64>,
}

impl AtomicBitset {
    pub fn new(bits: usize) -> Self {
        Self {
            words: (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Sets `bit`; returns whether it was already set.
    pub fn set(&self, bit: usize) -> bool {
        match self.words.get(bit / 64) {
            Some(w) => {
                let mask = 1u64 << (bit % 64);
                w.fetch_or(mask, Ordering::Relaxed) & mask != 0
            }
            None => true,
        }
    }

    pub fn get(&self, bit: usize) -> bool {
        self.words
            .get(bit / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1u64 << (bit % 64)) != 0)
    }
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Latency histogram in microseconds, 1 us .. 10 min, 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant histogram bounds are valid")
}

/// State of one run shared by every connection task.
pub struct Shared {
    pub run_id: u32,
    pub total_posts: u64,
    pub text_len: usize,
    /// Subscribers per room (connections, posters included).
    pub room_subscribers: Vec<u64>,
    /// Which room post `i` goes to.
    pub posters: u64,
    pub rooms: u64,
    pub latency: Vec<Mutex<Histogram<u64>>>,
    pub ack_latency: Mutex<Histogram<u64>>,
    pub acked: AtomicBitset,
    /// The `seq` each acknowledged post got (0: none yet).
    pub acked_seq: Vec<AtomicU64>,
    pub refused: AtomicBitset,
    pub acks: AtomicU64,
    pub refusals: AtomicU64,
    pub posts_sent: AtomicU64,
    /// Deliveries expected from the posts acknowledged so far.
    pub expected: AtomicU64,
    pub unique_delivered: AtomicU64,
    pub last_delivery_us: AtomicU64,
    /// `typing` frames sent by the typing connections, and received by all connections.
    pub typing_sent: AtomicU64,
    pub typing_received: AtomicU64,
    pub errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    pub fn new(
        run_id: u32,
        total_posts: u64,
        text_len: usize,
        posters: u64,
        room_subscribers: Vec<u64>,
    ) -> Self {
        let rooms = room_subscribers.len() as u64;
        Self {
            run_id,
            total_posts,
            text_len,
            room_subscribers,
            posters,
            rooms,
            latency: (0..16).map(|_| Mutex::new(new_histogram())).collect(),
            ack_latency: Mutex::new(new_histogram()),
            acked: AtomicBitset::new(total_posts as usize),
            acked_seq: (0..total_posts).map(|_| AtomicU64::new(0)).collect(),
            refused: AtomicBitset::new(total_posts as usize),
            acks: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            posts_sent: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            unique_delivered: AtomicU64::new(0),
            typing_sent: AtomicU64::new(0),
            typing_received: AtomicU64::new(0),
            last_delivery_us: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// The poster (connection index) that sends post `i`.
    pub fn poster_of(&self, post: u64) -> u64 {
        post % self.posters
    }

    /// The room (index) post `i` goes to: its poster's room.
    pub fn room_of(&self, post: u64) -> usize {
        (self.poster_of(post) % self.rooms) as usize
    }

    pub fn record_latency(&self, shard: usize, us: u64) {
        if let Some(h) = self.latency.get(shard) {
            lock(h).saturating_record(us.max(1));
        }
    }

    pub fn on_ack(&self, post: u64, seq: u64, ack_us: u64) {
        if post >= self.total_posts || self.acked.set(post as usize) {
            return;
        }
        if let Some(s) = self.acked_seq.get(post as usize) {
            s.store(seq, Ordering::Relaxed);
        }
        self.acks.fetch_add(1, Ordering::Relaxed);
        let subs = self
            .room_subscribers
            .get(self.room_of(post))
            .copied()
            .unwrap_or(0);
        self.expected.fetch_add(subs, Ordering::Relaxed);
        lock(&self.ack_latency).saturating_record(ack_us.max(1));
    }

    pub fn on_refused(&self, post: u64) {
        if post < self.total_posts && !self.refused.set(post as usize) {
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_error(&self, code: &str) {
        *lock(&self.errors).entry(code.to_owned()).or_default() += 1;
    }

    pub fn merged_latency(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for h in &self.latency {
            let _ = all.add(&*lock(h));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitsets() {
        let mut b = Bitset::new(130);
        assert!(!b.set(129));
        assert!(b.set(129));
        assert!(b.get(129));
        assert!(!b.get(3));
        assert!(b.set(1000), "out of range counts as set");
        let a = AtomicBitset::new(70);
        assert!(!a.set(64));
        assert!(a.set(64));
        assert!(a.get(64));
    }
}
