//! The per-room sequencer: turns the live stream of a room (local posts, remote events,
//! retries, store reads; possibly late, duplicated or missing) into one ordered stream.
//!
//! Comments come out once each, in `seq` order. Updates of a comment (`comment_deleted`, and
//! the edits and reaction counts of discussions) are keyed by the comment's `seq` and never come
//! out before the comment itself: an update of a comment still held behind a gap waits with it,
//! and an update of a comment that turns out to be missing from the store (deleted before it
//! was seen) is dropped with it. Pure data structure: no I/O, no locks, no clocks.

use std::collections::BTreeMap;
use std::sync::Arc;

use shared_proto::{Comment, Reactions};

use crate::transport::Frame;

/// Live events held per room while a gap is open or the room initialises; past it the
/// oldest gap is given up (clients recover it with `since`).
pub const MAX_PENDING: usize = 10_000;

/// One event of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A stored comment, as its finished `comment` frame.
    Comment {
        /// The comment's seq.
        seq: u64,
        /// The encoded frame.
        frame: Frame,
        /// The comment itself (for the room's recent-comments ring).
        comment: Arc<Comment>,
    },
    /// Something that happened to the comment `seq` (deleted, edited, reactions).
    Update {
        /// The comment's seq.
        seq: u64,
        /// The encoded frame.
        frame: Frame,
        /// What changed (for the room's recent-comments ring).
        change: Change,
    },
}

/// What an update did to its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Deleted.
    Deleted,
    /// Edited: the comment as stored after the edit, and its change counter.
    Edited {
        /// The comment with its new text.
        comment: Arc<Comment>,
        /// Bumped by every edit and reaction change of the comment.
        rev: u64,
    },
    /// New reaction counts, and the comment's change counter.
    Reactions {
        /// Counts now.
        reactions: Arc<Reactions>,
        /// Bumped by every edit and reaction change of the comment.
        rev: u64,
    },
}

impl Event {
    /// The seq the event is keyed by.
    pub fn seq(&self) -> u64 {
        match self {
            Event::Comment { seq, .. } | Event::Update { seq, .. } => *seq,
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    comment: Option<Event>,
    updates: Vec<Event>,
}

impl Slot {
    fn len(&self) -> usize {
        usize::from(self.comment.is_some()) + self.updates.len()
    }
}

/// The ordering state of one room.
#[derive(Debug)]
pub struct Sequencer {
    /// Next comment seq to release; `None` until the room's starting point is known.
    expected: Option<u64>,
    pending: BTreeMap<u64, Slot>,
    held: usize,
    max_pending: usize,
    /// Gaps given up without the store's word (the stream is not known complete across them).
    given_up: u64,
}

impl Default for Sequencer {
    fn default() -> Self {
        Self::new(MAX_PENDING)
    }
}

impl Sequencer {
    /// A sequencer waiting for its starting point, holding at most `max_pending` events.
    pub fn new(max_pending: usize) -> Self {
        Self {
            expected: None,
            pending: BTreeMap::new(),
            held: 0,
            max_pending: max_pending.max(1),
            given_up: 0,
        }
    }

    /// The next comment seq to release, once started.
    pub fn expected(&self) -> Option<u64> {
        self.expected
    }

    /// True once the starting point is known.
    pub fn started(&self) -> bool {
        self.expected.is_some()
    }

    /// Events held (behind a gap or before the start).
    pub fn held(&self) -> usize {
        self.held
    }

    /// How many gaps were given up without the store's word (see [`MAX_PENDING`]).
    pub fn given_up(&self) -> u64 {
        self.given_up
    }

    /// The open gap: seqs in `[from, to)` are missing while `to` is held.
    pub fn gap(&self) -> Option<(u64, u64)> {
        let expected = self.expected?;
        let (&first, _) = self
            .pending
            .iter()
            .find(|(_, slot)| slot.comment.is_some())?;
        (first > expected).then_some((expected, first))
    }

    /// Starts the room: `max` is the highest seq the store had once the room was followed
    /// (everything up to it is in the members' backlogs). Returns what can go out now.
    pub fn start(&mut self, max: u64) -> Vec<Event> {
        self.expected = Some(max + 1);
        self.drain()
    }

    /// Offers one event; returns what can go out now, in order.
    pub fn offer(&mut self, event: Event) -> Vec<Event> {
        match (self.expected, event) {
            (Some(expected), Event::Comment { seq, .. }) if seq < expected => Vec::new(),
            (Some(expected), event @ Event::Update { .. }) if event.seq() < expected => {
                vec![event]
            }
            (Some(expected), event @ Event::Comment { .. }) if event.seq() == expected => {
                let seq = event.seq();
                let mut out = vec![event];
                self.expected = Some(expected + 1);
                if let Some(slot) = self.pending.remove(&seq) {
                    self.held -= slot.len();
                    out.extend(slot.updates);
                }
                out.extend(self.drain());
                out
            }
            (_, event) => {
                self.hold(event);
                if self.held > self.max_pending {
                    return self.give_up_oldest_gap();
                }
                Vec::new()
            }
        }
    }

    /// The store's answer for the open gap: `comments` are the stored comments with seq in
    /// `[from, to)` (in any order). Seqs of the range it does not have were deleted or never
    /// stored: they are skipped, with any updates held for them.
    pub fn fill(&mut self, to: u64, comments: Vec<Event>) -> Vec<Event> {
        let mut out = Vec::new();
        let mut comments = comments;
        comments.sort_by_key(Event::seq);
        for event in comments {
            out.extend(self.offer(event));
        }
        if let Some(expected) = self.expected
            && expected < to
        {
            self.skip_below(to);
            out.extend(self.drain());
        }
        out
    }

    /// Comments read from the store after `expected` (a catch-up after the bus was away):
    /// offered in order; a comment above `expected` proves the seqs below it are gone.
    pub fn caught_up(&mut self, comments: Vec<Event>) -> Vec<Event> {
        let mut out = Vec::new();
        let mut comments = comments;
        comments.sort_by_key(Event::seq);
        for event in comments {
            if let Some(expected) = self.expected
                && event.seq() > expected
            {
                self.skip_below(event.seq());
                out.extend(self.drain());
            }
            out.extend(self.offer(event));
        }
        out
    }

    fn hold(&mut self, event: Event) {
        let slot = self.pending.entry(event.seq()).or_default();
        match event {
            Event::Comment { .. } => {
                if slot.comment.is_none() {
                    slot.comment = Some(event);
                    self.held += 1;
                }
            }
            Event::Update { .. } => {
                slot.updates.push(event);
                self.held += 1;
            }
        }
    }

    /// Drops the held events of seqs below `to` that have no comment (their comment is not in
    /// the store) and moves `expected` to `to`.
    fn skip_below(&mut self, to: u64) {
        let Some(expected) = self.expected else {
            return;
        };
        let doomed: Vec<u64> = self
            .pending
            .range(expected..to)
            .filter(|(_, slot)| slot.comment.is_none())
            .map(|(&seq, _)| seq)
            .collect();
        for seq in doomed {
            if let Some(slot) = self.pending.remove(&seq) {
                self.held -= slot.len();
            }
        }
        // Held comments below `to` are released by the drain that follows, in order.
        let first_comment = self
            .pending
            .range(expected..to)
            .find(|(_, slot)| slot.comment.is_some())
            .map(|(&seq, _)| seq);
        self.expected = Some(first_comment.unwrap_or(to));
    }

    /// Before the start: drops the oldest held event. After: gives up the oldest gap.
    fn give_up_oldest_gap(&mut self) -> Vec<Event> {
        if self.expected.is_none() {
            if let Some((_, slot)) = self.pending.pop_first() {
                self.held -= slot.len();
            }
            return Vec::new();
        }
        match self.gap() {
            Some((_, to)) => {
                self.given_up += 1;
                self.skip_below(to);
                self.drain()
            }
            None => {
                // Only updates of not-yet-seen comments are held: drop the oldest.
                if let Some((_, slot)) = self.pending.pop_first() {
                    self.held -= slot.len();
                }
                Vec::new()
            }
        }
    }

    /// Releases what is consecutive from `expected`.
    fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        let Some(mut expected) = self.expected else {
            return out;
        };
        while let Some(entry) = self.pending.first_entry() {
            let seq = *entry.key();
            if seq < expected {
                // The comment went out before (or was in the backlogs): its updates may follow.
                let slot = entry.remove();
                self.held -= slot.len();
                out.extend(slot.updates);
            } else if seq == expected && entry.get().comment.is_some() {
                let slot = entry.remove();
                self.held -= slot.len();
                out.extend(slot.comment);
                out.extend(slot.updates);
                expected += 1;
            } else {
                break;
            }
        }
        self.expected = Some(expected);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn c(seq: u64) -> Event {
        Event::Comment {
            seq,
            frame: Frame::text(format!("c{seq}")),
            comment: Arc::new(comment(seq)),
        }
    }

    pub(crate) fn u(seq: u64) -> Event {
        Event::Update {
            seq,
            frame: Frame::text(format!("u{seq}")),
            change: Change::Deleted,
        }
    }

    pub(crate) fn comment(seq: u64) -> Comment {
        Comment {
            id: format!("id{seq}"),
            seq,
            room: shared_proto::RoomId::parse("r").expect("room"),
            author: shared_proto::Author {
                id: "a".into(),
                name: "A".into(),
            },
            text: format!("text {seq}"),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            reply_to: None,
            edited_at: None,
            reactions: Reactions::new(),
        }
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Comment { frame, .. } | Event::Update { frame, .. } => {
                    String::from_utf8_lossy(frame.payload()).into_owned()
                }
            })
            .collect()
    }

    #[test]
    fn in_order_once_across_gaps() {
        let mut s = Sequencer::default();
        assert!(s.start(0).is_empty());
        assert_eq!(names(&s.offer(c(1))), ["c1"]);
        assert!(s.offer(c(1)).is_empty(), "duplicate");
        assert!(s.offer(c(3)).is_empty(), "gap at 2");
        assert_eq!(s.gap(), Some((2, 3)));
        assert!(s.offer(c(4)).is_empty());
        assert_eq!(names(&s.offer(c(2))), ["c2", "c3", "c4"]);
        assert!(s.offer(c(3)).is_empty(), "late duplicate");
        assert_eq!(s.expected(), Some(5));
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn events_before_the_start_wait_for_it() {
        let mut s = Sequencer::default();
        assert!(s.offer(c(6)).is_empty());
        assert!(s.offer(c(7)).is_empty());
        // The store said max = 6: 6 is in the backlogs, 7 is live.
        assert_eq!(names(&s.start(6)), ["c7"]);
    }

    #[test]
    fn a_delete_never_overtakes_its_comment() {
        let mut s = Sequencer::default();
        s.start(0);
        s.offer(c(1));
        assert!(s.offer(c(3)).is_empty());
        // The delete of 3 arrives while 3 waits behind the gap at 2.
        assert!(s.offer(u(3)).is_empty(), "held with its comment");
        assert_eq!(names(&s.offer(c(2))), ["c2", "c3", "u3"]);
        // An update of a comment already out goes at once.
        assert_eq!(names(&s.offer(u(1))), ["u1"]);
    }

    #[test]
    fn an_update_of_an_unseen_comment_waits_and_goes_after_it() {
        let mut s = Sequencer::default();
        s.start(0);
        assert!(s.offer(u(1)).is_empty());
        assert_eq!(names(&s.offer(c(1))), ["c1", "u1"]);
    }

    #[test]
    fn fill_skips_what_the_store_does_not_have_with_its_updates() {
        let mut s = Sequencer::default();
        s.start(0);
        assert!(s.offer(c(4)).is_empty());
        assert!(s.offer(u(2)).is_empty(), "delete of a comment never seen");
        assert_eq!(s.gap(), Some((1, 4)));
        // The store has 1 and 3; 2 was deleted meanwhile.
        assert_eq!(names(&s.fill(4, vec![c(3), c(1)])), ["c1", "c3", "c4"]);
        assert_eq!(s.held(), 0);
        assert_eq!(s.expected(), Some(5));
    }

    #[test]
    fn catch_up_skips_missing_seqs_and_keeps_order() {
        let mut s = Sequencer::default();
        s.start(2);
        assert_eq!(
            names(&s.caught_up(vec![c(5), c(4), c(7)])),
            ["c4", "c5", "c7"]
        );
        assert_eq!(s.expected(), Some(8));
    }

    #[test]
    fn held_events_are_bounded() {
        let mut s = Sequencer::new(3);
        // Before the start: the oldest is dropped.
        for seq in 10..20 {
            s.offer(c(seq));
        }
        assert!(s.held() <= 3);
        let mut s = Sequencer::new(3);
        s.start(0);
        assert!(s.offer(c(5)).is_empty());
        assert!(s.offer(c(6)).is_empty());
        assert!(s.offer(c(7)).is_empty());
        // The fourth held event gives the gap at 1..5 up.
        assert_eq!(s.given_up(), 0);
        assert_eq!(names(&s.offer(c(9))), ["c5", "c6", "c7"]);
        assert_eq!(s.given_up(), 1, "counted: the stream is not known complete");
        assert!(s.held() <= 3);
        let mut s = Sequencer::new(2);
        s.start(0);
        for _ in 0..10 {
            s.offer(u(50));
        }
        assert!(s.held() <= 2, "updates of unseen comments are bounded too");
    }
}
