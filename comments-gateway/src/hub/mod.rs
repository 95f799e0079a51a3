//! Rooms -> local connections. Each room has a [`Sequencer`] that orders its live stream and
//! one recovery worker (initialise, catch up after the bus was away, fill gaps) that owns every
//! store read the room needs, with a deadline on each and a backoff between failures.
//!
//! State sits behind a `std::sync::Mutex` that is never held across an `.await`. Each
//! broadcast is encoded once into a finished WebSocket `Frame`; every receiver gets the same
//! bytes through its bounded queue.

mod member;
pub mod ring;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::transport::Frame;
use shared_proto::channels::BusEvent;
use shared_proto::ws::{CommentDeleted, CommentEdited, Notice, ServerFrame, ServerMessage};
use shared_proto::{Comment, RoomId};
use tokio::sync::oneshot;

use self::member::Members;
use self::ring::{RING_BYTES, RING_COMMENTS, RING_PREFILL, Ring};
use crate::bus::{BusListener, SharedBus};
use crate::metrics::GatewayMetrics;
use crate::sequencer::{Change, Event, Sequencer};
use crate::store::{Page, Slice, Store};
use crate::transport::{ConnTx, Transport};

/// A connection's id inside this instance.
pub use crate::transport::ConnId;

/// Most comments read from the store per recovery round.
const FILL_BATCH: usize = 1000;
/// Longest wait between two failed recovery rounds of a room.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a room waits for its bus subscription before reading where it stands.
const FOLLOW_WAIT: Duration = Duration::from_secs(3);

struct Room {
    generation: u64,
    members: Members,
    sequencer: Sequencer,
    /// The most recent comments of the live stream, for backlogs without a store read.
    ring: Ring,
    /// The sequencer's given-up gaps the ring has seen (one more: the ring starts over).
    given_up: u64,
    /// Confirms the bus subscription; taken by the worker's initialisation.
    followed: Option<oneshot::Receiver<()>>,
    /// Subscribers waiting for the room to start (true) or fail to (false).
    waiters: Vec<oneshot::Sender<bool>>,
    /// The bus was away: read everything after `expected` from the store.
    catch_up: bool,
    /// The room's recovery worker runs.
    worker: bool,
    /// Most live events held for a joining member (like its outbound queue) before it
    /// counts as too slow.
    joining_max: usize,
    /// When the room's live stream was last written to its connections.
    written_at: Option<tokio::time::Instant>,
    /// Connections with staged frames of this room, written when the window ends.
    window: Option<Window>,
}

/// Connections whose staged frames wait for the end of a room's coalescing window; the
/// window's task writes them even if the room is gone by then.
type Window = Arc<Mutex<Vec<ConnTx>>>;

#[derive(Default)]
struct State {
    rooms: HashMap<RoomId, Room>,
    next_generation: u64,
}

struct Inner {
    state: Mutex<State>,
    store: Store,
    bus: SharedBus,
    metrics: GatewayMetrics,
    gap_delay: Duration,
    joining_max: usize,
    runtime: tokio::runtime::Handle,
    tasks: tokio_util::task::TaskTracker,
    /// Every local connection (notices without a room), once attached.
    everyone: std::sync::OnceLock<Arc<Transport>>,
    /// A room written less than this long ago gathers its next comments until then.
    coalesce: Duration,
}

/// Cloneable handle to the hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// Serialises a comment broadcast once.
pub fn comment_frame(comment: &Comment) -> Frame {
    Frame::text(ServerFrame::push(ServerMessage::Comment(comment.clone())).encode())
}

/// What one recovery round of a room does.
enum Job {
    Initialise(Option<oneshot::Receiver<()>>),
    CatchUp(u64),
    Gap,
}

/// The hub's state, locked. Fan-outs under it only stage their frames; letting go of it writes
/// them (see [`crate::transport::flush_staged`]), so the lock is held for bookkeeping, not for
/// the writes, and the next comment of a busy room is staged while this one is written.
struct Locked<'a>(Option<MutexGuard<'a, State>>);

impl std::ops::Deref for Locked<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        self.0.as_deref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.0.as_deref_mut().expect("held until dropped")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        drop(self.0.take());
        crate::transport::flush_staged();
    }
}

impl Hub {
    /// A hub over `store`, following rooms on `bus`.
    pub fn new(
        store: Store,
        bus: SharedBus,
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
                everyone: std::sync::OnceLock::new(),
                coalesce: Duration::ZERO,
            }),
        }
    }

    /// Sets the coalescing window of busy rooms (`FANOUT_COALESCE_MS`); call it right after
    /// [`Hub::new`].
    pub fn coalescing(mut self, window: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.coalesce = window;
        }
        self
    }

    fn lock(&self) -> Locked<'_> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        Locked(Some(
            self.inner.state.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let fut = self.inner.tasks.track_future(fut);
        self.inner.runtime.spawn(fut);
    }

    /// The transport's registry of connections, for notices to every connection (the one
    /// registry of connections; the hub keeps only room memberships).
    pub fn attach(&self, transport: Arc<Transport>) {
        let _ = self.inner.everyone.set(transport);
    }

    /// Removes a connection from every room it is in.
    pub fn unregister<'a>(&self, id: ConnId, rooms: impl IntoIterator<Item = &'a RoomId>) {
        let mut state = self.lock();
        for room in rooms {
            self.remove_member(&mut state, room, id);
        }
        self.inner.metrics.rooms.set(state.rooms.len() as i64);
    }

    /// Removes `id` from `room`.
    pub fn leave(&self, room: &RoomId, id: ConnId) {
        let mut state = self.lock();
        self.remove_member(&mut state, room, id);
        self.inner.metrics.rooms.set(state.rooms.len() as i64);
    }

    /// Removes a member; an emptied room is dropped and unfollowed, both under the lock so the
    /// bus sees follows and unfollows in the order they were decided.
    fn remove_member(&self, state: &mut State, room: &RoomId, id: ConnId) {
        let Some(entry) = state.rooms.get_mut(room) else {
            return;
        };
        entry.members.remove(id);
        if entry.members.is_empty() {
            state.rooms.remove(room);
            self.inner.bus.unfollow(room);
        }
    }

    /// Registers `id` in `room` as joining (live comments are held until [`Hub::activate`]).
    /// Resolves to true once the room is followed and its sequencer started, false if the
    /// store did not answer.
    pub fn join(&self, room: &RoomId, id: ConnId, conn: ConnTx) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        let generation = state.next_generation;
        if !state.rooms.contains_key(room) {
            state.next_generation += 1;
            let followed = self.inner.bus.follow(room);
            state.rooms.insert(
                room.clone(),
                Room {
                    generation,
                    members: Members::default(),
                    sequencer: Sequencer::default(),
                    ring: Ring::new(RING_COMMENTS, RING_BYTES),
                    given_up: 0,
                    followed: Some(followed),
                    waiters: Vec::new(),
                    catch_up: false,
                    worker: false,
                    joining_max: self.inner.joining_max,
                    written_at: None,
                    window: None,
                },
            );
        }
        let rooms = state.rooms.len() as i64;
        let Some(entry) = state.rooms.get_mut(room) else {
            return rx;
        };
        entry.members.join(id, conn);
        if entry.sequencer.started() {
            let _ = tx.send(true);
        } else {
            entry.waiters.push(tx);
            self.ensure_worker(room, entry);
        }
        self.inner.metrics.rooms.set(rooms);
        rx
    }

    /// Waits again for the room's start (after a start that failed: the room's worker retries
    /// with backoff); None when `id` is no longer in the room (closed, unsubscribed).
    pub fn wait_ready(&self, room: &RoomId, id: ConnId) -> Option<oneshot::Receiver<bool>> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        let entry = state.rooms.get_mut(room)?;
        if !entry.members.contains(id) {
            return None;
        }
        if entry.sequencer.started() {
            let _ = tx.send(true);
        } else {
            entry.waiters.push(tx);
            self.ensure_worker(room, entry);
        }
        Some(rx)
    }

    /// True while `id` is in `room`.
    pub fn is_member(&self, room: &RoomId, id: ConnId) -> bool {
        self.lock()
            .rooms
            .get(room)
            .is_some_and(|r| r.members.contains(id))
    }

    /// Ends the joining phase after the backlog went out: `backlog_last` is the seq of its last
    /// comment, `truncated` says more exist. A truncated backlog leaves the member behind:
    /// live comments are not sent to it ahead of the older ones (its next `since` gets them).
    pub fn activate(&self, room: &RoomId, id: ConnId, backlog_last: u64, truncated: bool) {
        let mut state = self.lock();
        if let Some(entry) = state.rooms.get_mut(room) {
            entry
                .members
                .activate(id, backlog_last, truncated, &self.inner.metrics);
        }
    }

    /// A subscribe that failed: the member goes back to where it was.
    pub fn cancel_join(&self, room: &RoomId, id: ConnId) {
        let mut state = self.lock();
        if let Some(entry) = state.rooms.get_mut(room) {
            entry.members.cancel_join(id, &self.inner.metrics);
        }
    }

    /// A stored comment, from this instance or another, new or found again by a retry: the
    /// one way a comment reaches the room's connections (in seq order, once).
    pub fn comment(&self, comment: &Comment) {
        self.offer(&comment.room, to_event(comment));
    }

    /// Something happened to the comment `seq` of `room` (deleted, edited, new reaction
    /// counts): `frame` goes to the room's connections after the comment itself, never before,
    /// and `change` applies to the room's recent comments in the same order.
    pub fn update(&self, room: &RoomId, seq: u64, frame: Frame, change: Change) {
        self.offer(room, Event::Update { seq, frame, change });
    }

    /// A backlog answered from the room's recent comments, when they cover it (`since` inside
    /// them, or the latest page when they can tell); None when the store must answer. Taken
    /// under the lock that releases live events, so a joining member's held events start
    /// right after it.
    pub fn backlog(&self, room: &RoomId, slice: Slice) -> Option<Page> {
        let state = self.lock();
        let entry = state.rooms.get(room)?;
        if !entry.sequencer.started() {
            return None;
        }
        match slice {
            Slice::After {
                after,
                upto: None,
                max,
            } => entry.ring.after(after, max),
            Slice::Latest { limit } => entry.ring.latest(limit as usize),
            Slice::After { .. } | Slice::Before { .. } => None,
        }
    }

    /// A deleted comment: `comment_deleted` to the room, after the comment.
    pub fn deleted(&self, room: &RoomId, id: &str, seq: u64) {
        let frame = Frame::text(
            ServerFrame::push(ServerMessage::CommentDeleted(CommentDeleted {
                room: room.clone(),
                id: id.to_owned(),
            }))
            .encode(),
        );
        self.update(room, seq, frame, Change::Deleted);
    }

    fn offer(&self, room: &RoomId, event: Event) {
        let mut state = self.lock();
        let Some(entry) = state.rooms.get_mut(room) else {
            return;
        };
        let out = entry.sequencer.offer(event);
        let mark = crate::transport::staged_len();
        let released = !out.is_empty();
        deliver(entry, out, &self.inner.metrics);
        if released {
            self.coalesce(room, entry, mark);
        }
        if entry.sequencer.gap().is_some() {
            self.ensure_worker(room, entry);
        }
    }

    /// A busy room's live frames (staged since `mark`) wait for the end of its window and go
    /// out together; a room written longer ago than the window goes out at once.
    fn coalesce(&self, room: &RoomId, entry: &mut Room, mark: usize) {
        let window = self.inner.coalesce;
        if window.is_zero() {
            return;
        }
        if let Some(open) = &entry.window {
            let staged = crate::transport::take_staged(mark);
            open.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(staged);
            return;
        }
        let now = tokio::time::Instant::now();
        let due = match entry.written_at {
            Some(at) if now < at + window => at + window,
            _ => {
                entry.written_at = Some(now);
                return;
            }
        };
        let open: Window = Arc::new(Mutex::new(crate::transport::take_staged(mark)));
        entry.window = Some(open.clone());
        let hub = self.clone();
        let room = room.clone();
        self.spawn(async move {
            tokio::time::sleep_until(due).await;
            {
                let mut state = hub.lock();
                if let Some(entry) = state.rooms.get_mut(&room)
                    && entry.window.as_ref().is_some_and(|w| Arc::ptr_eq(w, &open))
                {
                    entry.window = None;
                    entry.written_at = Some(tokio::time::Instant::now());
                }
            }
            let conns = std::mem::take(&mut *open.lock().unwrap_or_else(|p| p.into_inner()));
            crate::transport::write_staged(&conns);
        });
    }

    /// An admin notice: to a room's local subscribers, or to every local connection.
    pub fn notice(&self, text: &str, room: Option<&RoomId>) {
        let frame = Frame::text(
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
                    for conn in entry.members.conns() {
                        conn.push(frame.clone(), &self.inner.metrics);
                    }
                }
            }
            None => {
                drop(state);
                if let Some(transport) = self.inner.everyone.get() {
                    transport.broadcast(&frame, &self.inner.metrics);
                }
            }
        }
    }

    /// Rooms currently followed.
    pub fn rooms(&self) -> Vec<RoomId> {
        self.lock().rooms.keys().cloned().collect()
    }

    /// After the bus reconnects: every followed room reads its comments from where its live
    /// stream stands, so nothing published while the bus was away is missed.
    pub fn resync_all(&self) {
        let mut state = self.lock();
        let State { rooms, .. } = &mut *state;
        for (room, entry) in rooms.iter_mut() {
            entry.catch_up = true;
            self.ensure_worker(room, entry);
        }
    }

    /// After some rooms' channels were resubscribed (their cluster shard came back): those
    /// rooms read their comments from where their live stream stands.
    pub fn resync(&self, rooms: &[RoomId]) {
        let mut state = self.lock();
        let State { rooms: entries, .. } = &mut *state;
        for room in rooms {
            if let Some(entry) = entries.get_mut(room) {
                entry.catch_up = true;
                self.ensure_worker(room, entry);
            }
        }
    }

    /// Starts the room's recovery worker unless it runs: one owner of the room's store reads.
    fn ensure_worker(&self, room: &RoomId, entry: &mut Room) {
        if entry.worker {
            return;
        }
        entry.worker = true;
        let hub = self.clone();
        let room = room.clone();
        let generation = entry.generation;
        self.spawn(async move { hub.recover(room, generation).await });
    }

    /// Decides the room's next recovery round; None when there is nothing left to do (the
    /// worker flag is cleared under the same lock, so no work is left without a worker).
    fn next_job(&self, room: &RoomId, generation: u64) -> Option<Job> {
        let mut state = self.lock();
        let entry = state.rooms.get_mut(room)?;
        if entry.generation != generation {
            return None;
        }
        if !entry.sequencer.started() {
            return Some(Job::Initialise(entry.followed.take()));
        }
        if entry.catch_up {
            entry.catch_up = false;
            let after = entry.sequencer.expected().unwrap_or(1).saturating_sub(1);
            return Some(Job::CatchUp(after));
        }
        if entry.sequencer.gap().is_some() {
            return Some(Job::Gap);
        }
        entry.worker = false;
        None
    }

    /// Runs `f` on the room if it is still this generation.
    fn with_room<T>(
        &self,
        room: &RoomId,
        generation: u64,
        f: impl FnOnce(&mut Room, &GatewayMetrics) -> T,
    ) -> Option<T> {
        let mut state = self.lock();
        let entry = state.rooms.get_mut(room)?;
        (entry.generation == generation).then(|| f(entry, &self.inner.metrics))
    }

    async fn recover(&self, room: RoomId, generation: u64) {
        let mut backoff = Duration::from_millis(100);
        while let Some(job) = self.next_job(&room, generation) {
            let ok = match job {
                Job::Initialise(followed) => self.initialise(&room, generation, followed).await,
                Job::CatchUp(after) => self.catch_up(&room, generation, after).await,
                Job::Gap => self.fill_gap(&room, generation).await,
            };
            if ok {
                backoff = Duration::from_millis(100);
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    async fn initialise(
        &self,
        room: &RoomId,
        generation: u64,
        followed: Option<oneshot::Receiver<()>>,
    ) -> bool {
        // Subscribe on the bus first, then read where the room stands: an event stored after
        // the read arrives through the subscription.
        if let Some(followed) = followed {
            let _ = tokio::time::timeout(FOLLOW_WAIT, followed).await;
        }
        let max = self.inner.store.max_seq(room).await;
        // The newest comments fill the ring (read after max: see Ring::prefill). Updates
        // that arrive meanwhile are held by the sequencer until its start and applied after.
        let recent = match max {
            Ok(_) => {
                let slice = Slice::Latest {
                    limit: RING_PREFILL,
                };
                self.inner.store.read(room, slice).await.ok()
            }
            Err(_) => None,
        };
        self.with_room(room, generation, |entry, metrics| match max {
            Ok(max) => {
                let out = entry.sequencer.start(max);
                entry.ring.reset(max + 1);
                if let Some(recent) = &recent {
                    entry.ring.prefill(recent, max);
                }
                deliver(entry, out, metrics);
                for waiter in entry.waiters.drain(..) {
                    let _ = waiter.send(true);
                }
                true
            }
            Err(e) => {
                tracing::warn!(%room, error = %e, "cannot initialise room");
                for waiter in entry.waiters.drain(..) {
                    let _ = waiter.send(false);
                }
                false
            }
        })
        .unwrap_or(true)
    }

    async fn catch_up(&self, room: &RoomId, generation: u64, after: u64) -> bool {
        let slice = Slice::After {
            after,
            upto: None,
            max: FILL_BATCH,
        };
        let read = self.inner.store.read(room, slice).await;
        self.with_room(room, generation, |entry, metrics| match read {
            Ok(page) => {
                metrics.gap_fills.inc_by(page.comments.len() as u64);
                let events = page.comments.iter().map(to_event).collect();
                let out = entry.sequencer.caught_up(events);
                deliver(entry, out, metrics);
                entry.catch_up |= page.more;
                true
            }
            Err(e) => {
                tracing::warn!(%room, error = %e, "catch-up read failed; retrying");
                entry.catch_up = true;
                false
            }
        })
        .unwrap_or(true)
    }

    async fn fill_gap(&self, room: &RoomId, generation: u64) -> bool {
        // The missing events are often just late: give the live stream a moment first.
        tokio::time::sleep(self.inner.gap_delay).await;
        let Some(Some((from, to))) = self.with_room(room, generation, |e, _| e.sequencer.gap())
        else {
            return true;
        };
        let slice = Slice::After {
            after: from.saturating_sub(1),
            upto: Some(to),
            max: FILL_BATCH,
        };
        let read = self.inner.store.read(room, slice).await;
        self.with_room(room, generation, |entry, metrics| match read {
            Ok(page) => {
                metrics.gap_fills.inc_by(page.comments.len() as u64);
                let events = page.comments.iter().map(to_event).collect();
                let mut out = entry.sequencer.caught_up(events);
                if !page.more {
                    // What the store does not have below `to` was deleted or never stored.
                    out.extend(entry.sequencer.fill(to, Vec::new()));
                }
                deliver(entry, out, metrics);
                true
            }
            Err(e) => {
                tracing::warn!(%room, error = %e, "gap fill failed; retrying");
                false
            }
        })
        .unwrap_or(true)
    }
}

impl BusListener for Hub {
    fn event(&self, event: BusEvent) {
        match event {
            BusEvent::Comment { comment, .. } => self.comment(&comment),
            BusEvent::Deleted { room, id, seq, .. } => self.deleted(&room, &id, seq),
            BusEvent::Notice { text, room, .. } => self.notice(&text, room.as_ref()),
            BusEvent::Edited { comment, rev, .. } => {
                let room = comment.room.clone();
                let seq = comment.seq;
                let comment = Arc::new(comment);
                let frame = Frame::text(
                    ServerFrame::push(ServerMessage::CommentEdited(CommentEdited {
                        room: room.clone(),
                        comment: (*comment).clone(),
                    }))
                    .encode(),
                );
                self.update(&room, seq, frame, Change::Edited { comment, rev });
            }
            // Reaction counts need the comment's seq to be ordered after it (not carried yet);
            // typing and presence are not relayed yet.
            BusEvent::Reactions { .. } | BusEvent::Typing { .. } | BusEvent::Presence { .. } => {}
        }
    }

    fn reconnected(&self) {
        self.resync_all();
    }

    fn rooms_reconnected(&self, rooms: &[RoomId]) {
        self.resync(rooms);
    }
}

fn to_event(comment: &Comment) -> Event {
    Event::Comment {
        seq: comment.seq,
        frame: comment_frame(comment),
        comment: Arc::new(comment.clone()),
    }
}

/// Hands the sequencer's output to the room's recent comments and its members.
fn deliver(room: &mut Room, events: Vec<Event>, metrics: &GatewayMetrics) {
    room.ring.take(&events);
    if room.sequencer.given_up() != room.given_up {
        // A gap was given up without the store's word: what the ring holds is not known
        // complete any more; it starts over where the stream stands.
        room.given_up = room.sequencer.given_up();
        room.ring
            .reset(room.sequencer.expected().unwrap_or(u64::MAX));
    }
    if events.is_empty() {
        return;
    }
    let joining_max = room.joining_max;
    let mut queued = 0;
    for event in &events {
        queued += room.members.offer(event, joining_max, metrics);
    }
    metrics.messages_out.inc_by(queued);
}

#[cfg(test)]
mod tests;
