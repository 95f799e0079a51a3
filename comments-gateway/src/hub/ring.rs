//! A room's most recent comments, as its ordered live stream left them: every comment with a
//! seq from `lo` up to where the stream stands, each in its current state (edits, reaction
//! counts; deleted ones removed). Backlogs that start inside it (`since >= lo - 1`, or the
//! latest page when it holds enough) are answered from memory, so the reload storm after a
//! fault reads nothing from the store. Bounded in comments and in text bytes; the oldest go
//! first and `lo` moves up with them. Pure data structure: no I/O, no locks, no clocks.

use std::collections::VecDeque;
use std::sync::Arc;

use shared_proto::Comment;

use crate::sequencer::{Change, Event};
use crate::store::Page;

/// Most comments a room keeps in memory.
pub const RING_COMMENTS: usize = 1000;
/// Most text bytes (comment texts) a room keeps in memory.
pub const RING_BYTES: usize = 512 * 1024;
/// Comments read from the store when a room starts, to fill its ring (a restarted instance
/// then answers resumes and refreshes from memory at once, not after the room's next 1,000).
pub const RING_PREFILL: u32 = 200;

#[derive(Debug)]
struct Entry {
    comment: Arc<Comment>,
    /// Change counter of the text (last edit applied).
    text_rev: u64,
    /// Change counter of the reaction counts applied.
    reactions_rev: u64,
}

/// The ring of one room.
#[derive(Debug)]
pub struct Ring {
    /// Every stored comment with seq in `[lo, next)` is in `entries` (unless deleted).
    lo: u64,
    /// The seq after the last one the stream released.
    next: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    max_comments: usize,
    max_bytes: usize,
}

impl Ring {
    /// An empty ring that covers nothing (until [`Ring::reset`]).
    pub fn new(max_comments: usize, max_bytes: usize) -> Self {
        Self {
            lo: u64::MAX,
            next: u64::MAX,
            entries: VecDeque::new(),
            bytes: 0,
            max_comments: max_comments.max(1),
            max_bytes,
        }
    }

    /// Starts over at `next`: the stream's next comment will have a seq of at least `next`,
    /// and nothing below it is known (a room's start, or a gap given up unread).
    pub fn reset(&mut self, next: u64) {
        self.entries.clear();
        self.bytes = 0;
        self.lo = next;
        self.next = next;
    }

    /// Right after [`Ring::reset`]`(max + 1)` at the room's start: `page` is the store's newest
    /// comments read after `max` (so it holds every stored comment from its first seq on, and
    /// perhaps some above `max` that the live stream brings). Those up to `max` go in; the ring
    /// then covers from the page's first seq (from seq 1 when nothing older exists).
    pub fn prefill(&mut self, page: &Page, max: u64) {
        if !self.started() || !self.entries.is_empty() || self.next != max + 1 {
            return;
        }
        for comment in page.comments.iter().filter(|c| c.seq <= max) {
            self.bytes += comment.text.len();
            self.entries.push_back(Entry {
                comment: Arc::new(comment.clone()),
                text_rev: 0,
                reactions_rev: 0,
            });
        }
        self.lo = match (page.more, page.comments.first()) {
            (false, _) => 1,
            (true, Some(first)) => first.seq.min(max + 1),
            (true, None) => max + 1,
        };
        while self.entries.len() > self.max_comments
            || (self.bytes > self.max_bytes && !self.entries.is_empty())
        {
            self.evict();
        }
    }

    /// True once [`Ring::reset`] gave it a starting point.
    pub fn started(&self) -> bool {
        self.lo != u64::MAX
    }

    /// Comments held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds no comment.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The lowest seq it covers (everything from it on is known).
    pub fn lo(&self) -> u64 {
        self.lo
    }

    /// Takes what the room's sequencer released, in its order.
    pub fn take(&mut self, events: &[Event]) {
        if !self.started() {
            return;
        }
        for event in events {
            match event {
                Event::Comment { seq, comment, .. } => self.push(*seq, comment),
                Event::Update { seq, change, .. } => self.apply(*seq, change),
            }
        }
    }

    fn push(&mut self, seq: u64, comment: &Arc<Comment>) {
        if seq < self.next {
            // Below the start (already in the backlogs the store serves) or a repeat.
            return;
        }
        self.next = seq + 1;
        self.bytes += comment.text.len();
        self.entries.push_back(Entry {
            comment: comment.clone(),
            text_rev: 0,
            reactions_rev: 0,
        });
        while self.entries.len() > self.max_comments
            || (self.bytes > self.max_bytes && !self.entries.is_empty())
        {
            self.evict();
        }
    }

    fn evict(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            self.bytes -= old.comment.text.len();
            self.lo = old.comment.seq + 1;
        }
    }

    fn apply(&mut self, seq: u64, change: &Change) {
        let Ok(at) = self.entries.binary_search_by_key(&seq, |e| e.comment.seq) else {
            return;
        };
        match change {
            Change::Deleted => {
                if let Some(gone) = self.entries.remove(at) {
                    self.bytes -= gone.comment.text.len();
                }
            }
            Change::Edited { comment, rev } => {
                let entry = &mut self.entries[at];
                let mut next = (*entry.comment).clone();
                if *rev > entry.text_rev {
                    entry.text_rev = *rev;
                    self.bytes = self.bytes - next.text.len() + comment.text.len();
                    next.text.clone_from(&comment.text);
                    next.edited_at.clone_from(&comment.edited_at);
                }
                if *rev > entry.reactions_rev {
                    entry.reactions_rev = *rev;
                    next.reactions.clone_from(&comment.reactions);
                }
                entry.comment = Arc::new(next);
            }
            Change::Reactions { reactions, rev } => {
                let entry = &mut self.entries[at];
                if *rev > entry.reactions_rev {
                    entry.reactions_rev = *rev;
                    let mut next = (*entry.comment).clone();
                    next.reactions = (**reactions).clone();
                    entry.comment = Arc::new(next);
                }
            }
        }
        while self.bytes > self.max_bytes && !self.entries.is_empty() {
            self.evict();
        }
    }

    /// The comments after `since`, at most `max` (and whether more exist), if the ring covers
    /// everything after `since`; None when the store must answer.
    pub fn after(&self, since: u64, max: usize) -> Option<Page> {
        if !self.started() || since.saturating_add(1) < self.lo {
            return None;
        }
        let start = self.entries.partition_point(|e| e.comment.seq <= since);
        let comments: Vec<Comment> = self
            .entries
            .iter()
            .skip(start)
            .take(max)
            .map(|e| (*e.comment).clone())
            .collect();
        let more = self.entries.len() - start > comments.len();
        Some(Page { comments, more })
    }

    /// The newest `limit` comments (and whether older ones exist), if the ring can tell: it
    /// holds more than `limit`, or it covers the room from its first seq.
    pub fn latest(&self, limit: usize) -> Option<Page> {
        if !self.started() {
            return None;
        }
        let from_start = self.lo <= 1;
        if self.entries.len() <= limit && !from_start {
            return None;
        }
        let skip = self.entries.len().saturating_sub(limit);
        let comments = self
            .entries
            .iter()
            .skip(skip)
            .map(|e| (*e.comment).clone())
            .collect();
        Some(Page {
            comments,
            more: skip > 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequencer::tests::{c, comment, u};
    use crate::transport::Frame;

    fn seqs(page: &Page) -> Vec<u64> {
        page.comments.iter().map(|c| c.seq).collect()
    }

    #[test]
    fn answers_only_what_it_covers() {
        let mut ring = Ring::new(100, 1 << 20);
        assert!(ring.after(0, 10).is_none(), "not started");
        // The room started at max = 10: 11.. is live.
        ring.reset(11);
        assert_eq!(seqs(&ring.after(10, 500).expect("covered")), [] as [u64; 0]);
        assert!(ring.after(9, 500).is_none(), "10 is the store's");
        ring.take(&[c(11), c(12), c(14)]);
        assert_eq!(seqs(&ring.after(10, 500).expect("covered")), [11, 12, 14]);
        assert_eq!(seqs(&ring.after(12, 500).expect("covered")), [14]);
        // A client ahead of this instance's stream (it saw more on another one).
        assert_eq!(seqs(&ring.after(20, 500).expect("covered")), [] as [u64; 0]);
        let page = ring.after(10, 2).expect("covered");
        assert_eq!(seqs(&page), [11, 12]);
        assert!(page.more, "truncated");
        // Repeats and what lies below the start are ignored.
        ring.take(&[c(12), c(3)]);
        assert_eq!(ring.len(), 3);
    }

    #[test]
    fn bounded_in_comments_and_bytes_and_the_start_moves_up() {
        let mut ring = Ring::new(3, 1 << 20);
        ring.reset(1);
        ring.take(&[c(1), c(2), c(3), c(4), c(5)]);
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.lo(), 3);
        assert!(ring.after(1, 500).is_none(), "2 was evicted");
        assert_eq!(seqs(&ring.after(2, 500).expect("covered")), [3, 4, 5]);
        // Bytes: each text is "text N" (6 bytes for one digit).
        let mut ring = Ring::new(100, 13);
        ring.reset(1);
        ring.take(&[c(1), c(2), c(3)]);
        assert_eq!(ring.len(), 2, "third text pushes the first out");
        assert!(ring.bytes <= 13);
        assert_eq!(ring.lo(), 2);
    }

    #[test]
    fn latest_only_when_it_can_tell_about_older_ones() {
        let mut ring = Ring::new(100, 1 << 20);
        ring.reset(6);
        ring.take(&[c(6), c(7)]);
        assert!(ring.latest(2).is_none(), "older ones may exist below 6");
        let page = ring.latest(1).expect("holds more than 1");
        assert_eq!(seqs(&page), [7]);
        assert!(page.more);
        let mut ring = Ring::new(100, 1 << 20);
        ring.reset(1);
        ring.take(&[c(1), c(2)]);
        let page = ring.latest(50).expect("covers the room from its start");
        assert_eq!(seqs(&page), [1, 2]);
        assert!(!page.more);
    }

    #[test]
    fn deletes_edits_and_reactions_keep_comments_current() {
        let mut ring = Ring::new(100, 1 << 20);
        ring.reset(1);
        ring.take(&[c(1), c(2), c(3), u(2)]);
        assert_eq!(seqs(&ring.after(0, 500).expect("covered")), [1, 3]);
        let mut edited = comment(3);
        edited.text = "new".into();
        edited.edited_at = Some("2026-01-01T00:01:00.000Z".into());
        let reactions: shared_proto::Reactions =
            [(shared_proto::Emoji::ThumbsUp, 2)].into_iter().collect();
        let edit = |rev| Event::Update {
            seq: 3,
            frame: Frame::text("e"),
            change: Change::Edited {
                comment: Arc::new(edited.clone()),
                rev,
            },
        };
        let react = |rev| Event::Update {
            seq: 3,
            frame: Frame::text("r"),
            change: Change::Reactions {
                reactions: Arc::new(reactions.clone()),
                rev,
            },
        };
        ring.take(&[edit(2), react(3), edit(1)]);
        let page = ring.after(2, 500).expect("covered");
        assert_eq!(page.comments[0].text, "new");
        assert!(page.comments[0].edited_at.is_some());
        assert_eq!(
            page.comments[0].reactions, reactions,
            "a stale edit does not bring old counts back"
        );
    }

    #[test]
    fn a_start_prefills_from_the_store_up_to_its_max() {
        let page = |seqs: &[u64], more| Page {
            comments: seqs.iter().map(|&s| comment(s)).collect(),
            more,
        };
        // The store's newest 3 were 5, 7, 8 (6 deleted), read after max = 7: 8 comes live.
        let mut ring = Ring::new(100, 1 << 20);
        ring.reset(8);
        ring.prefill(&page(&[5, 7, 8], true), 7);
        assert!(ring.after(3, 500).is_none(), "4 and below are the store's");
        assert_eq!(seqs(&ring.after(4, 500).expect("covered")), [5, 7]);
        ring.take(&[c(8)]);
        assert_eq!(seqs(&ring.after(4, 500).expect("covered")), [5, 7, 8]);
        // Nothing older: it covers the room from its start.
        let mut ring = Ring::new(100, 1 << 20);
        ring.reset(3);
        ring.prefill(&page(&[1, 2], false), 2);
        assert_eq!(seqs(&ring.latest(50).expect("whole room")), [1, 2]);
        // Bounded like the rest.
        let mut ring = Ring::new(2, 1 << 20);
        ring.reset(4);
        ring.prefill(&page(&[1, 2, 3], false), 3);
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.lo(), 2);
    }

    #[test]
    fn a_reset_forgets_what_came_before() {
        let mut ring = Ring::new(100, 1 << 20);
        ring.reset(1);
        ring.take(&[c(1), c(2)]);
        ring.reset(40);
        assert!(ring.after(2, 500).is_none());
        assert_eq!(ring.len(), 0);
        ring.take(&[c(41)]);
        assert_eq!(seqs(&ring.after(39, 500).expect("covered")), [41]);
    }
}
