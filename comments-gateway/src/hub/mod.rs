//! Rooms -> local connections, and the per-room sequencer that turns the live stream (local
//! posts and Redis events, possibly late, duplicated or missing) into exactly-once, in-order
//! delivery.
//!
//! State sits behind a `std::sync::Mutex` that is never held across an `.await`. Each
//! broadcast is serialised once into a `ByteString`; every receiver gets a clone of the same
//! bytes through its bounded queue.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytestring::ByteString;
use shared_proto::ws::{CommentDeleted, Notice, ServerFrame, ServerMessage};
use shared_proto::{Comment, RoomId};
use tokio::sync::{Notify, oneshot};

use crate::bus::Bus;
use crate::metrics::GatewayMetrics;
use crate::store::{Slice, Store};

/// A connection's id inside this instance.
pub type ConnId = u64;

/// Most comments read from the store per gap fill round.
const FILL_BATCH: usize = 1000;
/// Live events held per room while a gap is open before the oldest gap is given up.
const MAX_PENDING: usize = 10_000;

/// A connection's bounded outbound queue. An idle connection holds no buffer at all (an
/// empty `VecDeque` does not allocate), and the queue gives its memory back after a burst.
pub struct Outbox {
    queue: Mutex<VecDeque<ByteString>>,
    max: usize,
    /// One wake-up for everything the loop must look at: frames, overflow, shutdown.
    ready: Notify,
    overflowed: AtomicBool,
    shutting_down: AtomicBool,
}

/// Why the hub wants a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The queue overflowed: 1013.
    TooSlow,
    /// The server drains: 1001.
    Shutdown,
}

impl Outbox {
    /// Takes the next queued frame, if any.
    pub fn try_recv(&self) -> Option<ByteString> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let frame = queue.pop_front();
        if queue.is_empty() && queue.capacity() > 64 {
            *queue = VecDeque::new();
        }
        frame
    }

    /// Set once the connection must close.
    pub fn closing(&self) -> Option<Closing> {
        if self.shutting_down.load(Ordering::Acquire) {
            Some(Closing::Shutdown)
        } else if self.overflowed.load(Ordering::Acquire) {
            Some(Closing::TooSlow)
        } else {
            None
        }
    }

    /// Resolves after frames were queued or [`Outbox::closing`] changed (possibly already
    /// handled: check both).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }
}

/// What the hub needs to reach one connection: a handle to its outbox.
#[derive(Clone)]
pub struct ConnTx(Arc<Outbox>);

impl ConnTx {
    /// A queue holding at most `max` frames.
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Outbox {
            queue: Mutex::new(VecDeque::new()),
            max: max.max(1),
            ready: Notify::new(),
            overflowed: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// The receiving side.
    pub fn outbox(&self) -> &Outbox {
        &self.0
    }

    /// Marks the connection too slow; it closes with 1013.
    pub fn overflow(&self, metrics: &GatewayMetrics) {
        if !self.0.overflowed.swap(true, Ordering::AcqRel) {
            metrics.slow_client_closes.inc();
            self.0.ready.notify_one();
        }
    }

    /// Asks the connection to close with 1001.
    pub fn shut_down(&self) {
        self.0.shutting_down.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }

    /// Queues a frame; on overflow marks the connection for a 1013 close. False if not queued.
    pub fn push(&self, frame: ByteString, metrics: &GatewayMetrics) -> bool {
        let queued = self.enqueue(frame, metrics);
        if queued {
            metrics.messages_out.inc();
        }
        queued
    }

    /// [`ConnTx::push`] without counting (the caller counts a whole fan-out at once).
    fn enqueue(&self, frame: ByteString, metrics: &GatewayMetrics) -> bool {
        if self.0.overflowed.load(Ordering::Acquire) {
            return false;
        }
        {
            let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.len() >= self.0.max {
                drop(queue);
                self.overflow(metrics);
                return false;
            }
            queue.push_back(frame);
        }
        self.0.ready.notify_one();
        true
    }
}

#[derive(Clone)]
struct Delivery {
    seq: u64,
    frame: ByteString,
}

enum MemberState {
    /// Registered, backlog not sent yet: live comments wait here.
    Joining(Vec<Delivery>),
    Active,
}

struct Member {
    conn: ConnTx,
    state: MemberState,
    last_seq: u64,
}

struct Room {
    generation: u64,
    members: HashMap<ConnId, Member>,
    /// Next seq to deliver; `None` until the room is followed and initialised from the store.
    expected: Option<u64>,
    initialising: bool,
    waiters: Vec<oneshot::Sender<bool>>,
    pending: BTreeMap<u64, Delivery>,
    gap_timer: bool,
    /// Most live comments held for a joining member before it counts as too slow.
    joining_max: usize,
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomId, Room>,
    conns: HashMap<ConnId, ConnTx>,
    next_generation: u64,
    shutting_down: bool,
}

struct Inner {
    state: Mutex<State>,
    store: Store,
    bus: Bus,
    metrics: GatewayMetrics,
    gap_delay: Duration,
    joining_max: usize,
    runtime: tokio::runtime::Handle,
    tasks: tokio_util::task::TaskTracker,
}

/// Cloneable handle to the hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// Serialises a comment broadcast once.
pub fn comment_frame(comment: &Comment) -> ByteString {
    ByteString::from(ServerFrame::push(ServerMessage::Comment(comment.clone())).encode())
}

impl Hub {
    /// A hub over `store`, following rooms on `bus`.
    pub fn new(
        store: Store,
        bus: Bus,
        metrics: GatewayMetrics,
        joining_max: usize,
        tasks: tokio_util::task::TaskTracker,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                store,
                bus,
                metrics,
                gap_delay: Duration::from_millis(75),
                joining_max,
                runtime: tokio::runtime::Handle::current(),
                tasks,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let fut = self.inner.tasks.track_future(fut);
        self.inner.runtime.spawn(fut);
    }

    /// Registers a connection (for notices to everyone, and the shutdown).
    pub fn register(&self, id: ConnId, conn: ConnTx) {
        let mut state = self.lock();
        if state.shutting_down {
            conn.shut_down();
        }
        state.conns.insert(id, conn);
    }

    /// Asks every connection, present and future, to close with 1001.
    pub fn shut_down_all(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        for conn in state.conns.values() {
            conn.shut_down();
        }
    }

    /// Removes a connection from every room it is in.
    pub fn unregister<'a>(&self, id: ConnId, rooms: impl IntoIterator<Item = &'a RoomId>) {
        let mut emptied = Vec::new();
        {
            let mut state = self.lock();
            state.conns.remove(&id);
            for room in rooms {
                if remove_member(&mut state, room, id) {
                    emptied.push(room.clone());
                }
            }
            self.inner.metrics.rooms.set(state.rooms.len() as i64);
        }
        for room in emptied {
            self.inner.bus.unfollow(&room);
        }
    }

    /// Registers `id` in `room` (live comments are held until [`Hub::activate`]). Resolves to
    /// true once the room is followed and its sequencer initialised, false if the store failed.
    pub fn join(&self, room: &RoomId, id: ConnId, conn: ConnTx) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let mut start_init = None;
        {
            let mut state = self.lock();
            let generation = state.next_generation;
            let created = !state.rooms.contains_key(room);
            if created {
                state.next_generation += 1;
            }
            let entry = state.rooms.entry(room.clone()).or_insert_with(|| Room {
                generation,
                members: HashMap::new(),
                expected: None,
                initialising: false,
                waiters: Vec::new(),
                pending: BTreeMap::new(),
                gap_timer: false,
                joining_max: self.inner.joining_max,
            });
            match entry.members.get_mut(&id) {
                // Subscribing again: hold live comments until the new backlog has gone out.
                Some(member) => {
                    if matches!(member.state, MemberState::Active) {
                        member.state = MemberState::Joining(Vec::new());
                    }
                }
                None => {
                    entry.members.insert(
                        id,
                        Member {
                            conn,
                            state: MemberState::Joining(Vec::new()),
                            last_seq: 0,
                        },
                    );
                }
            }
            if entry.expected.is_some() {
                let _ = tx.send(true);
            } else {
                entry.waiters.push(tx);
                if !entry.initialising {
                    entry.initialising = true;
                    start_init = Some((entry.generation, created));
                }
            }
            let rooms = state.rooms.len() as i64;
            self.inner.metrics.rooms.set(rooms);
        }
        if let Some((generation, _created)) = start_init {
            let followed = self.inner.bus.follow(room);
            let hub = self.clone();
            let room = room.clone();
            self.spawn(async move { hub.initialise(room, generation, followed).await });
        }
        rx
    }

    async fn initialise(&self, room: RoomId, generation: u64, followed: oneshot::Receiver<()>) {
        // Subscribe on the bus first, then read where the room stands: an event stored after
        // the read arrives through the subscription.
        let _ = tokio::time::timeout(Duration::from_secs(3), followed).await;
        let max = self.inner.store.max_seq(&room).await;
        let mut gap = false;
        {
            let mut state = self.lock();
            let Some(entry) = state.rooms.get_mut(&room) else {
                return;
            };
            if entry.generation != generation {
                return;
            }
            entry.initialising = false;
            match max {
                Ok(max) => {
                    entry.expected = Some(max + 1);
                    gap = drain(entry, &self.inner.metrics);
                    for waiter in entry.waiters.drain(..) {
                        let _ = waiter.send(true);
                    }
                }
                Err(e) => {
                    tracing::warn!(%room, error = %e, "cannot initialise room");
                    for waiter in entry.waiters.drain(..) {
                        let _ = waiter.send(false);
                    }
                }
            }
        }
        if gap {
            self.start_gap_timer(&room);
        }
    }

    /// Ends the joining phase: live comments held meanwhile with seq above `backlog_last` go
    /// out, and from now on only comments above the last delivered one.
    pub fn activate(&self, room: &RoomId, id: ConnId, backlog_last: u64) {
        let mut state = self.lock();
        let Some(member) = state
            .rooms
            .get_mut(room)
            .and_then(|r| r.members.get_mut(&id))
        else {
            return;
        };
        match std::mem::replace(&mut member.state, MemberState::Active) {
            MemberState::Joining(held) => {
                member.last_seq = backlog_last;
                for delivery in held {
                    if delivery.seq > member.last_seq {
                        member.conn.push(delivery.frame, &self.inner.metrics);
                        member.last_seq = delivery.seq;
                    }
                }
            }
            MemberState::Active => {
                member.last_seq = member.last_seq.max(backlog_last);
            }
        }
    }

    /// Removes `id` from `room`.
    pub fn leave(&self, room: &RoomId, id: ConnId) {
        let emptied = {
            let mut state = self.lock();
            let emptied = remove_member(&mut state, room, id);
            self.inner.metrics.rooms.set(state.rooms.len() as i64);
            emptied
        };
        if emptied {
            self.inner.bus.unfollow(room);
        }
    }

    /// A stored comment, from this instance or another: delivered in seq order, once.
    pub fn comment(&self, comment: &Comment) {
        let delivery = Delivery {
            seq: comment.seq,
            frame: comment_frame(comment),
        };
        let gap = {
            let mut state = self.lock();
            let Some(room) = state.rooms.get_mut(&comment.room) else {
                return;
            };
            offer(room, delivery, &self.inner.metrics)
        };
        if gap {
            self.start_gap_timer(&comment.room);
        }
    }

    /// A deleted comment: `comment_deleted` to the room's local subscribers.
    pub fn deleted(&self, room: &RoomId, id: &str) {
        let frame = ByteString::from(
            ServerFrame::push(ServerMessage::CommentDeleted(CommentDeleted {
                room: room.clone(),
                id: id.to_owned(),
            }))
            .encode(),
        );
        let state = self.lock();
        if let Some(entry) = state.rooms.get(room) {
            for member in entry.members.values() {
                member.conn.push(frame.clone(), &self.inner.metrics);
            }
        }
    }

    /// An admin notice: to a room's local subscribers, or to every local connection.
    pub fn notice(&self, text: &str, room: Option<&RoomId>) {
        let frame = ByteString::from(
            ServerFrame::push(ServerMessage::Notice(Notice {
                text: text.to_owned(),
                from: "admin".to_owned(),
                room: room.cloned(),
            }))
            .encode(),
        );
        let state = self.lock();
        match room {
            Some(room) => {
                if let Some(entry) = state.rooms.get(room) {
                    for member in entry.members.values() {
                        member.conn.push(frame.clone(), &self.inner.metrics);
                    }
                }
            }
            None => {
                for conn in state.conns.values() {
                    conn.push(frame.clone(), &self.inner.metrics);
                }
            }
        }
    }

    /// Local connections.
    pub fn connection_count(&self) -> usize {
        self.lock().conns.len()
    }

    /// Rooms currently followed.
    pub fn rooms(&self) -> Vec<RoomId> {
        self.lock().rooms.keys().cloned().collect()
    }

    /// After the bus reconnects: reads every followed room's comments from where its live
    /// stream stands, so nothing published while the bus was down is missed.
    pub fn resync_all(&self) {
        let rooms: Vec<RoomId> = self.lock().rooms.keys().cloned().collect();
        for room in rooms {
            let hub = self.clone();
            self.spawn(async move { hub.catch_up(room).await });
        }
    }

    async fn catch_up(&self, room: RoomId) {
        loop {
            let (expected, generation) = {
                let state = self.lock();
                match state.rooms.get(&room) {
                    Some(Room {
                        expected: Some(e),
                        generation,
                        ..
                    }) => (*e, *generation),
                    _ => return,
                }
            };
            let page = match self
                .inner
                .store
                .read(
                    &room,
                    Slice::After {
                        after: expected.saturating_sub(1),
                        upto: None,
                        max: FILL_BATCH,
                    },
                )
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(%room, error = %e, "catch-up read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let more = page.more;
            let gap = {
                let mut state = self.lock();
                let Some(entry) = state.rooms.get_mut(&room) else {
                    return;
                };
                if entry.generation != generation {
                    return;
                }
                let mut gap = false;
                for comment in page.comments {
                    if let Some(exp) = entry.expected
                        && comment.seq > exp
                    {
                        // Everything below a stored comment is visible: the rest were deleted.
                        entry.expected = Some(comment.seq);
                    }
                    self.inner.metrics.gap_fills.inc();
                    let delivery = Delivery {
                        seq: comment.seq,
                        frame: comment_frame(&comment),
                    };
                    gap = offer(entry, delivery, &self.inner.metrics);
                }
                gap
            };
            if gap {
                self.start_gap_timer(&room);
            }
            if !more {
                return;
            }
        }
    }

    fn start_gap_timer(&self, room: &RoomId) {
        let generation = {
            let mut state = self.lock();
            let Some(entry) = state.rooms.get_mut(room) else {
                return;
            };
            if entry.gap_timer || entry.pending.is_empty() {
                return;
            }
            entry.gap_timer = true;
            entry.generation
        };
        let hub = self.clone();
        let room = room.clone();
        self.spawn(async move { hub.fill_gap(room, generation).await });
    }

    async fn fill_gap(&self, room: RoomId, generation: u64) {
        tokio::time::sleep(self.inner.gap_delay).await;
        loop {
            let (from, to) = {
                let mut state = self.lock();
                let Some(entry) = state.rooms.get_mut(&room) else {
                    return;
                };
                if entry.generation != generation {
                    return;
                }
                let (Some(expected), Some((&first, _))) =
                    (entry.expected, entry.pending.first_key_value())
                else {
                    entry.gap_timer = false;
                    return;
                };
                if first <= expected {
                    drain(entry, &self.inner.metrics);
                    if entry.pending.is_empty() {
                        entry.gap_timer = false;
                        return;
                    }
                    continue;
                }
                (expected, first)
            };
            let read = self
                .inner
                .store
                .read(
                    &room,
                    Slice::After {
                        after: from.saturating_sub(1),
                        upto: Some(to),
                        max: FILL_BATCH,
                    },
                )
                .await;
            let page = match read {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(%room, error = %e, "gap fill failed; retrying");
                    let give_up = {
                        let mut state = self.lock();
                        let Some(entry) = state.rooms.get_mut(&room) else {
                            return;
                        };
                        entry.pending.len() > MAX_PENDING
                    };
                    if !give_up {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    crate::store::Page::default()
                }
            };
            let more = page.more;
            let done = {
                let mut state = self.lock();
                let Some(entry) = state.rooms.get_mut(&room) else {
                    return;
                };
                if entry.generation != generation {
                    return;
                }
                for comment in page.comments {
                    self.inner.metrics.gap_fills.inc();
                    if let Some(exp) = entry.expected
                        && comment.seq > exp
                    {
                        entry.expected = Some(comment.seq);
                    }
                    let delivery = Delivery {
                        seq: comment.seq,
                        frame: comment_frame(&comment),
                    };
                    offer(entry, delivery, &self.inner.metrics);
                }
                if !more {
                    // What the store does not have below `to` was deleted or never stored.
                    if entry.expected.is_some_and(|e| e < to) {
                        entry.expected = Some(to);
                    }
                    drain(entry, &self.inner.metrics);
                }
                if entry.pending.is_empty() {
                    entry.gap_timer = false;
                }
                entry.pending.is_empty()
            };
            if done {
                return;
            }
            if !more {
                tokio::time::sleep(self.inner.gap_delay).await;
            }
        }
    }
}

/// Removes a member; true when the room emptied (and was dropped).
fn remove_member(state: &mut State, room: &RoomId, id: ConnId) -> bool {
    let Some(entry) = state.rooms.get_mut(room) else {
        return false;
    };
    entry.members.remove(&id);
    if entry.members.is_empty() {
        state.rooms.remove(room);
        return true;
    }
    false
}

/// Offers one live event to the room's sequencer; true when a gap is open.
fn offer(room: &mut Room, delivery: Delivery, metrics: &GatewayMetrics) -> bool {
    match room.expected {
        None => {
            room.pending.insert(delivery.seq, delivery);
            false
        }
        Some(expected) if delivery.seq < expected => false,
        Some(expected) if delivery.seq == expected => {
            deliver(room, &delivery, metrics);
            room.expected = Some(expected + 1);
            drain(room, metrics)
        }
        Some(_) => {
            room.pending.insert(delivery.seq, delivery);
            if room.pending.len() > MAX_PENDING {
                // Give up on the oldest gap rather than hold memory without bound.
                if let Some((&first, _)) = room.pending.first_key_value() {
                    room.expected = Some(first);
                }
                return drain(room, metrics);
            }
            true
        }
    }
}

/// Delivers consecutive held events; true when some are still held behind a gap.
fn drain(room: &mut Room, metrics: &GatewayMetrics) -> bool {
    let Some(mut expected) = room.expected else {
        return !room.pending.is_empty();
    };
    while let Some(entry) = room.pending.first_entry() {
        let seq = *entry.key();
        if seq < expected {
            entry.remove();
        } else if seq == expected {
            let delivery = entry.remove();
            deliver(room, &delivery, metrics);
            expected += 1;
        } else {
            break;
        }
    }
    room.expected = Some(expected);
    !room.pending.is_empty()
}

fn deliver(room: &mut Room, delivery: &Delivery, metrics: &GatewayMetrics) {
    let joining_max = room.joining_max;
    let mut queued = 0;
    for member in room.members.values_mut() {
        match &mut member.state {
            MemberState::Joining(held) => {
                if held.len() < joining_max {
                    held.push(delivery.clone());
                } else {
                    member.conn.overflow(metrics);
                }
            }
            MemberState::Active => {
                if delivery.seq > member.last_seq {
                    queued += u64::from(member.conn.enqueue(delivery.frame.clone(), metrics));
                    member.last_seq = delivery.seq;
                }
            }
        }
    }
    metrics.messages_out.inc_by(queued);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> GatewayMetrics {
        GatewayMetrics::new(&prometheus::Registry::new())
    }

    fn room(expected: Option<u64>) -> Room {
        Room {
            generation: 0,
            members: HashMap::new(),
            expected,
            initialising: false,
            waiters: Vec::new(),
            pending: BTreeMap::new(),
            gap_timer: false,
            joining_max: 16,
        }
    }

    fn member(room: &mut Room, id: ConnId, active: bool) -> ConnTx {
        let conn = ConnTx::new(64);
        room.members.insert(
            id,
            Member {
                conn: conn.clone(),
                state: if active {
                    MemberState::Active
                } else {
                    MemberState::Joining(Vec::new())
                },
                last_seq: 0,
            },
        );
        conn
    }

    fn d(seq: u64) -> Delivery {
        Delivery {
            seq,
            frame: ByteString::from(seq.to_string()),
        }
    }

    fn received(rx: &mut ConnTx) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(frame) = rx.outbox().try_recv() {
            out.push(frame.parse().unwrap_or(0));
        }
        out
    }

    #[test]
    fn delivers_in_order_once_and_holds_across_gaps() {
        let m = metrics();
        let mut r = room(Some(1));
        let mut rx = member(&mut r, 1, true);
        assert!(!offer(&mut r, d(1), &m));
        assert!(!offer(&mut r, d(1), &m), "duplicate");
        assert!(offer(&mut r, d(3), &m), "gap at 2");
        assert!(offer(&mut r, d(4), &m));
        assert_eq!(received(&mut rx), vec![1]);
        assert!(!offer(&mut r, d(2), &m), "late arrival closes the gap");
        assert_eq!(received(&mut rx), vec![2, 3, 4]);
        assert!(!offer(&mut r, d(3), &m), "late duplicate");
        assert_eq!(received(&mut rx), Vec::<u64>::new());
        assert_eq!(r.expected, Some(5));
    }

    #[test]
    fn events_before_initialisation_wait_for_the_starting_point() {
        let m = metrics();
        let mut r = room(None);
        let mut rx = member(&mut r, 1, true);
        offer(&mut r, d(6), &m);
        offer(&mut r, d(7), &m);
        assert_eq!(received(&mut rx), Vec::<u64>::new());
        // The store said max = 6: 6 is in the backlog, 7 is live.
        r.expected = Some(7);
        assert!(!drain(&mut r, &m));
        assert_eq!(received(&mut rx), vec![7]);
    }

    #[test]
    fn joining_members_get_only_what_their_backlog_lacks() {
        let m = metrics();
        let mut r = room(Some(10));
        let mut rx = member(&mut r, 1, false);
        offer(&mut r, d(10), &m);
        offer(&mut r, d(11), &m);
        assert_eq!(received(&mut rx), Vec::<u64>::new(), "held while joining");
        // Backlog read after 10 was stored: it ends at 10.
        let member = r.members.get_mut(&1).expect("member");
        let MemberState::Joining(held) = std::mem::replace(&mut member.state, MemberState::Active)
        else {
            panic!("joining")
        };
        member.last_seq = 10;
        for delivery in held {
            if delivery.seq > member.last_seq {
                member.conn.push(delivery.frame, &m);
                member.last_seq = delivery.seq;
            }
        }
        offer(&mut r, d(12), &m);
        assert_eq!(received(&mut rx), vec![11, 12]);
    }
}
