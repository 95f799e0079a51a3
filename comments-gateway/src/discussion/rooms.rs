//! The local connections of each room as discussions see them: who they are (for presence and
//! for leaving the typer out of `typing`), whether their backlog went out yet, and what this
//! instance knows of the room's readers elsewhere.
//!
//! A connection is registered before its backlog is read and counts as a reader once its
//! `subscribed` went out. `typing` messages of a room are gathered for [`TYPING_BATCH`] and go
//! out together, one write per connection instead of one per typing user; one that is still
//! gathered when its user's comment arrives is dropped (the comment says more). Edits and
//! reactions reach connections through the hub (ordered after their comment); this registry
//! only drops a change that arrives after a newer one of the same comment. State sits behind
//! a `std::sync::Mutex` that is never held across an `.await`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::transport::Frame;
use shared_proto::RoomId;
use shared_proto::ws::{Presence, PresenceCounts, ServerFrame, ServerMessage, UserRef};

use super::presence::{LocalReaders, Snapshot, merge};
use crate::hub::ConnId;
use crate::metrics::GatewayMetrics;
use crate::transport::ConnTx;

/// Comments per room whose last change revision is remembered.
const REVS_MAX: usize = 4096;
/// Shortest time between two `presence` broadcasts of one room.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// How long a room's `typing` messages are gathered before they go out together.
pub const TYPING_BATCH: Duration = Duration::from_millis(200);
/// `typing` messages gathered per room and batch at most (one per user); more are dropped, as
/// the per-user limit drops typing anyway: a page shows a few typers, not hundreds.
const TYPING_PENDING_MAX: usize = 64;

/// Which kind of change a revision belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// `comment_edited`.
    Edit,
    /// `reactions`.
    Reactions,
}

struct Member {
    conn: ConnTx,
    /// Boxed: a room may hold many thousands of members, most of them anonymous.
    user: Option<Box<UserRef>>,
}

/// The last revision delivered per comment and kind, so a change that arrives after a newer
/// one (from two instances at once) is dropped.
#[derive(Default)]
struct Revisions {
    last: HashMap<(ChangeKind, String), u64>,
    order: VecDeque<(ChangeKind, String)>,
}

impl Revisions {
    fn admit(&mut self, kind: ChangeKind, id: &str, rev: u64) -> bool {
        let key = (kind, id.to_owned());
        match self.last.get_mut(&key) {
            Some(last) if *last >= rev => false,
            Some(last) => {
                *last = rev;
                true
            }
            None => {
                if self.order.len() >= REVS_MAX
                    && let Some(old) = self.order.pop_front()
                {
                    self.last.remove(&old);
                }
                self.order.push_back(key.clone());
                self.last.insert(key, rev);
                true
            }
        }
    }
}

/// One room's local state.
#[derive(Default)]
struct Room {
    members: HashMap<ConnId, Member>,
    /// Members whose `subscribed` has not gone out yet (a set of its own: it is small, and
    /// every byte of [`Member`] is paid per reader).
    joining: HashSet<ConnId>,
    readers: LocalReaders,
    revisions: Revisions,
    /// Other instances' readers, by instance; `None` until first read.
    remote: Option<HashMap<String, Snapshot>>,
    /// Local readers changed since they were last written to Redis.
    local_dirty: bool,
    /// They changed: tell the other instances once written.
    announce: bool,
    last_write: Option<Instant>,
    /// The other instances said something changed.
    fetch_wanted: bool,
    last_fetch: Option<Instant>,
    /// Connections waiting for their first `presence` until the remote readers are known.
    awaiting_first: Vec<ConnId>,
    last_sent: Option<PresenceCounts>,
    last_sent_at: Option<Instant>,
    /// `typing` gathered for the next batch: the typer's user id and the finished frame.
    typing: Vec<(Box<str>, Frame)>,
}

/// What the presence driver must do with Redis for one room.
pub struct Chore {
    /// The room.
    pub room: RoomId,
    /// This instance's readers to write (an empty one removes them), if due.
    pub write: Option<Snapshot>,
    /// Whether to tell the other instances after writing.
    pub announce: bool,
    /// Whether to read the other instances' readers.
    pub fetch: bool,
}

/// All rooms with local connections.
pub struct Rooms {
    state: Mutex<HashMap<RoomId, Room>>,
    /// Rooms emptied here whose Redis entry must still be removed.
    emptied: Mutex<Vec<RoomId>>,
    /// Rooms with `typing` gathered for the next batch.
    typing_due: Mutex<Vec<RoomId>>,
    metrics: GatewayMetrics,
    shared: bool,
}

fn presence_frame(room: &RoomId, counts: &PresenceCounts) -> Frame {
    Frame::text(
        ServerFrame::push(ServerMessage::Presence(Presence {
            room: room.clone(),
            readers: counts.readers,
            users: counts.users.clone(),
        }))
        .encode(),
    )
}

impl Room {
    fn counts(&self) -> PresenceCounts {
        let local = self.readers.snapshot();
        match &self.remote {
            Some(remote) => merge(std::iter::once(&local).chain(remote.values())),
            None => merge([&local]),
        }
    }

    fn push_active(&self, frame: &Frame, metrics: &GatewayMetrics) {
        for (id, member) in &self.members {
            if !self.joining.contains(id) {
                member.conn.push(frame.clone(), metrics);
            }
        }
    }

    /// Sends `presence` to the room if it changed and the last one is old enough.
    fn broadcast_presence(&mut self, room: &RoomId, now: Instant, metrics: &GatewayMetrics) {
        let counts = self.counts();
        if self.last_sent.as_ref() == Some(&counts) {
            return;
        }
        if self
            .last_sent_at
            .is_some_and(|at| now.duration_since(at) < PRESENCE_EVERY)
        {
            return;
        }
        let frame = presence_frame(room, &counts);
        self.push_active(&frame, metrics);
        self.last_sent = Some(counts);
        self.last_sent_at = Some(now);
    }
}

impl Rooms {
    /// No rooms yet; `shared` says whether other instances exist (Redis).
    pub fn new(metrics: GatewayMetrics, shared: bool) -> Self {
        Self {
            state: Mutex::new(HashMap::new()),
            emptied: Mutex::new(Vec::new()),
            typing_due: Mutex::new(Vec::new()),
            metrics,
            shared,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RoomId, Room>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `conn` in `room` before its backlog is read (again: nothing changes).
    pub fn join(&self, room: &RoomId, id: ConnId, user: Option<UserRef>, conn: ConnTx) {
        let mut rooms = self.lock();
        let entry = rooms.entry(room.clone()).or_insert_with(|| Room {
            remote: (!self.shared).then(HashMap::new),
            ..Room::default()
        });
        if let std::collections::hash_map::Entry::Vacant(vacant) = entry.members.entry(id) {
            vacant.insert(Member {
                conn,
                user: user.map(Box::new),
            });
            entry.joining.insert(id);
        }
    }

    /// The backlog went out: counts the reader and sends the room's `presence` (at once when
    /// the other instances' readers are known, else once they are).
    /// Returns true when the driver should look at the room now.
    pub fn activate(&self, room: &RoomId, id: ConnId, now_ms: i64) -> bool {
        let now = Instant::now();
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else {
            return false;
        };
        let Some(member) = entry.members.get(&id) else {
            return false;
        };
        let mut changed = false;
        if entry.joining.remove(&id) {
            changed = entry.readers.add(member.user.as_deref(), now_ms);
        }
        if changed {
            entry.local_dirty = true;
            entry.announce = true;
        }
        let mut wake = changed && self.shared;
        if entry.remote.is_some() {
            let frame = presence_frame(room, &entry.counts());
            if let Some(member) = entry.members.get(&id) {
                member.conn.push(frame, &self.metrics);
            }
            if changed {
                entry.broadcast_presence(room, now, &self.metrics);
            }
        } else {
            entry.awaiting_first.push(id);
            wake = true;
        }
        wake
    }

    /// `conn` left `room` (unsubscribed, failed to subscribe, or closed).
    pub fn leave(&self, room: &RoomId, id: ConnId) {
        let now = Instant::now();
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else {
            return;
        };
        let Some(member) = entry.members.remove(&id) else {
            return;
        };
        entry.awaiting_first.retain(|c| *c != id);
        let was_joining = entry.joining.remove(&id);
        let changed = !was_joining && entry.readers.remove(member.user.as_deref());
        if entry.members.is_empty() {
            rooms.remove(room);
            if self.shared {
                self.emptied
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(room.clone());
            }
            return;
        }
        if changed {
            entry.local_dirty = true;
            entry.announce = true;
            entry.broadcast_presence(room, now, &self.metrics);
        }
    }

    /// Runs `send` (which hands a change of comment `id` to the room's connections) unless a
    /// newer change of the same kind went out already; under the lock, so two changes of one
    /// comment are handed over in revision order.
    pub fn admit_with(
        &self,
        room: &RoomId,
        kind: ChangeKind,
        id: &str,
        rev: u64,
        send: impl FnOnce(),
    ) {
        let mut rooms = self.lock();
        // Without local connections there is nobody to send to.
        let Some(entry) = rooms.get_mut(room) else {
            return;
        };
        if rev > 0 && !entry.revisions.admit(kind, id, rev) {
            return;
        }
        send();
    }

    /// Gathers `typing` of user `from` for the room's next batch (see [`Rooms::flush_typing`]).
    /// True when the room was not due yet: the batch driver must be woken.
    pub fn typing(&self, room: &RoomId, from: &str, frame: Frame) -> bool {
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else {
            return false;
        };
        if entry.typing.len() >= TYPING_PENDING_MAX
            || entry.typing.iter().any(|(id, _)| &**id == from)
        {
            return false;
        }
        let first = entry.typing.is_empty();
        entry.typing.push((from.into(), frame));
        if first {
            self.typing_due
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(room.clone());
        }
        first
    }

    /// `author` posted in `room`: their gathered `typing` is dropped.
    pub fn posted(&self, room: &RoomId, author: &str) {
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get_mut(room) {
            entry.typing.retain(|(id, _)| &**id != author);
        }
    }

    /// Sends every room's gathered `typing` to its connections of users other than the typers
    /// (a typer gets the others' only), as one write per connection.
    pub fn flush_typing(&self) {
        let due = std::mem::take(&mut *self.typing_due.lock().unwrap_or_else(|p| p.into_inner()));
        if due.is_empty() {
            return;
        }
        let mut rooms = self.lock();
        for room in due {
            let Some(entry) = rooms.get_mut(&room) else {
                continue;
            };
            let pending = std::mem::take(&mut entry.typing);
            if pending.is_empty() {
                continue;
            }
            let everyone = (Frame::batch(pending.iter().map(|(_, f)| f)), pending.len());
            // What a typer gets: the others' typing (built when first needed).
            let mut typers: HashMap<&str, (Frame, usize)> = HashMap::new();
            for (id, member) in &entry.members {
                if entry.joining.contains(id) {
                    continue;
                }
                let user = member.user.as_deref().map(|u| u.id.as_str());
                let (frame, count) = match user {
                    Some(user) if pending.iter().any(|(id, _)| &**id == user) => {
                        typers.entry(user).or_insert_with(|| {
                            let others: Vec<&Frame> = pending
                                .iter()
                                .filter(|(id, _)| &**id != user)
                                .map(|(_, f)| f)
                                .collect();
                            (Frame::batch(others.iter().copied()), others.len())
                        })
                    }
                    _ => &everyone,
                };
                if *count > 0 && member.conn.enqueue(frame.clone(), &self.metrics) {
                    self.metrics.messages_out.inc_by(*count as u64);
                }
            }
        }
    }

    /// Another instance's readers of `room` changed: read them again soon. True when the
    /// room has local connections (so the driver should wake).
    pub fn want_fetch(&self, room: &RoomId) -> bool {
        let mut rooms = self.lock();
        match rooms.get_mut(room) {
            Some(entry) => {
                entry.fetch_wanted = true;
                true
            }
            None => false,
        }
    }

    /// The room's readers as this instance knows them.
    pub fn counts(&self, room: &RoomId) -> Option<(PresenceCounts, Snapshot)> {
        let rooms = self.lock();
        rooms
            .get(room)
            .map(|entry| (entry.counts(), entry.readers.snapshot()))
    }

    /// What the driver must do now: writes that are due (changed readers at most every
    /// `write_every`, everything every `refresh`), reads that are wanted or due, and
    /// removals of emptied rooms.
    pub fn chores(&self, now: Instant, write_every: Duration, refresh: Duration) -> Vec<Chore> {
        let mut chores = Vec::new();
        let emptied: Vec<RoomId> =
            std::mem::take(&mut *self.emptied.lock().unwrap_or_else(|p| p.into_inner()));
        let mut rooms = self.lock();
        for room in emptied {
            if !rooms.contains_key(&room) {
                chores.push(Chore {
                    room,
                    write: Some(Snapshot::default()),
                    announce: true,
                    fetch: false,
                });
            }
        }
        for (room, entry) in rooms.iter_mut() {
            let since_write = entry.last_write.map(|at| now.duration_since(at));
            let write = (entry.local_dirty && since_write.is_none_or(|d| d >= write_every))
                || since_write.is_some_and(|d| d >= refresh)
                || (entry.last_write.is_none() && !entry.readers.is_empty());
            let since_fetch = entry.last_fetch.map(|at| now.duration_since(at));
            let fetch = entry.fetch_wanted
                || entry.remote.is_none()
                || since_fetch.is_none_or(|d| d >= refresh);
            if !write && !fetch {
                continue;
            }
            let mut chore = Chore {
                room: room.clone(),
                write: None,
                announce: false,
                fetch,
            };
            if write {
                chore.write = Some(entry.readers.snapshot());
                chore.announce = std::mem::take(&mut entry.announce);
                entry.local_dirty = false;
                entry.last_write = Some(now);
            }
            if fetch {
                entry.fetch_wanted = false;
                entry.last_fetch = Some(now);
            }
            chores.push(chore);
        }
        chores
    }

    /// The other instances' readers of `room` as just read (`None`: the read failed).
    pub fn remote_read(&self, room: &RoomId, remote: Option<HashMap<String, Snapshot>>) {
        let now = Instant::now();
        let mut rooms = self.lock();
        let Some(entry) = rooms.get_mut(room) else {
            return;
        };
        match remote {
            Some(remote) => entry.remote = Some(remote),
            // Unknown still: serve what is known locally rather than nothing.
            None if entry.remote.is_none() => entry.remote = Some(HashMap::new()),
            None => {}
        }
        let waiting = std::mem::take(&mut entry.awaiting_first);
        if !waiting.is_empty() {
            let frame = presence_frame(room, &entry.counts());
            for id in waiting {
                if let Some(member) = entry.members.get(&id) {
                    member.conn.push(frame.clone(), &self.metrics);
                }
            }
        }
        entry.broadcast_presence(room, now, &self.metrics);
    }

    /// Sends the `presence` broadcasts held back by the once-a-second rule.
    pub fn flush_presence(&self) {
        let now = Instant::now();
        let mut rooms = self.lock();
        for (room, entry) in rooms.iter_mut() {
            if entry.remote.is_some() {
                entry.broadcast_presence(room, now, &self.metrics);
            }
        }
    }

    /// Rooms with local connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no room has local connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> GatewayMetrics {
        GatewayMetrics::new(&prometheus::Registry::new())
    }

    fn drain(conn: &ConnTx) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Some(frame) = conn.try_recv() {
            out.push(serde_json::from_slice(frame.payload()).expect("json"));
        }
        out
    }

    fn user(id: &str) -> Option<UserRef> {
        Some(UserRef {
            id: id.into(),
            name: id.into(),
        })
    }

    #[test]
    fn presence_counts_users_once_and_is_sent_after_activation() {
        let rooms = Rooms::new(metrics(), false);
        let room = RoomId::index();
        let (a, b, c) = (
            ConnTx::detached(64),
            ConnTx::detached(64),
            ConnTx::detached(64),
        );
        rooms.join(&room, 1, user("JD"), a.clone());
        rooms.join(&room, 2, user("JD"), b.clone());
        rooms.join(&room, 3, None, c.clone());
        assert!(drain(&a).is_empty(), "nothing before the backlog");
        rooms.activate(&room, 1, 1);
        let first = drain(&a);
        assert_eq!(first[0]["type"], "presence");
        assert_eq!(first[0]["payload"]["readers"], 1);
        rooms.activate(&room, 2, 2);
        rooms.activate(&room, 3, 3);
        let (counts, _) = rooms.counts(&room).expect("room");
        assert_eq!(counts.readers, 2, "JD twice and one guest");
        assert_eq!(drain(&c)[0]["payload"]["readers"], 2);
        rooms.leave(&room, 3);
        rooms.leave(&room, 1);
        assert_eq!(rooms.counts(&room).expect("room").0.readers, 1);
        rooms.leave(&room, 2);
        assert!(rooms.is_empty());
    }

    #[test]
    fn stale_changes_are_dropped() {
        let rooms = Rooms::new(metrics(), false);
        let room = RoomId::index();
        rooms.join(&room, 1, user("JD"), ConnTx::detached(64));
        let mut sent = Vec::new();
        for (kind, rev) in [
            (ChangeKind::Reactions, 2),
            (ChangeKind::Reactions, 1),
            (ChangeKind::Edit, 1),
            (ChangeKind::Reactions, 3),
            (ChangeKind::Edit, 1),
        ] {
            rooms.admit_with(&room, kind, "c1", rev, || sent.push((kind, rev)));
        }
        assert_eq!(
            sent,
            vec![
                (ChangeKind::Reactions, 2),
                (ChangeKind::Edit, 1),
                (ChangeKind::Reactions, 3)
            ]
        );
    }

    #[test]
    fn a_member_takes_16_bytes() {
        assert_eq!(std::mem::size_of::<Member>(), 16);
    }

    #[test]
    fn typing_skips_the_typer_and_joining_connections() {
        let rooms = Rooms::new(metrics(), false);
        let room = RoomId::index();
        let (mine, other, guest, joining) = (
            ConnTx::detached(64),
            ConnTx::detached(64),
            ConnTx::detached(64),
            ConnTx::detached(64),
        );
        rooms.join(&room, 1, user("JD"), mine.clone());
        rooms.join(&room, 2, user("Admin"), other.clone());
        rooms.join(&room, 3, None, guest.clone());
        rooms.join(&room, 4, user("BadComedian"), joining.clone());
        for id in 1..=3 {
            rooms.activate(&room, id, 1);
        }
        for conn in [&mine, &other, &guest] {
            drain(conn);
        }
        assert!(rooms.typing(&room, "JD", Frame::text("{\"t\":1}")));
        assert!(
            drain(&other).is_empty(),
            "gathered until the batch goes out"
        );
        rooms.flush_typing();
        assert!(drain(&mine).is_empty());
        assert_eq!(drain(&other).len(), 1);
        assert_eq!(drain(&guest).len(), 1);
        assert!(drain(&joining).is_empty());
    }

    #[test]
    fn a_batch_is_one_write_per_connection_and_a_typer_gets_the_others_only() {
        let m = metrics();
        let rooms = Rooms::new(m.clone(), false);
        let room = RoomId::index();
        let (jd, admin, guest) = (
            ConnTx::detached(64),
            ConnTx::detached(64),
            ConnTx::detached(64),
        );
        rooms.join(&room, 1, user("JD"), jd.clone());
        rooms.join(&room, 2, user("Admin"), admin.clone());
        rooms.join(&room, 3, None, guest.clone());
        for id in 1..=3 {
            rooms.activate(&room, id, 1);
        }
        for conn in [&jd, &admin, &guest] {
            drain(conn);
        }
        let (t_jd, t_admin, t_other) = (
            Frame::text("{\"jd\":1}"),
            Frame::text("{\"admin\":1}"),
            Frame::text("{\"other\":1}"),
        );
        assert!(rooms.typing(&room, "JD", t_jd.clone()));
        assert!(
            !rooms.typing(&room, "Admin", t_admin.clone()),
            "already due"
        );
        assert!(
            !rooms.typing(&room, "JD", t_jd.clone()),
            "one per user and batch"
        );
        assert!(!rooms.typing(&room, "Remote", t_other.clone()));
        // Remote posted meanwhile: its typing is stale.
        rooms.posted(&room, "Remote");
        let before = m.messages_out.get();
        rooms.flush_typing();
        let writes =
            |conn: &ConnTx| -> Vec<Frame> { std::iter::from_fn(|| conn.try_recv()).collect() };
        assert_eq!(
            writes(&guest),
            vec![Frame::batch([&t_jd, &t_admin])],
            "one write holding both"
        );
        assert_eq!(writes(&jd), vec![t_admin.clone()]);
        assert_eq!(writes(&admin), vec![t_jd.clone()]);
        assert_eq!(m.messages_out.get() - before, 4, "counted per message");
        rooms.flush_typing();
        assert!(writes(&guest).is_empty(), "nothing twice");
    }

    #[test]
    fn presence_broadcasts_at_most_once_a_second() {
        let rooms = Rooms::new(metrics(), false);
        let room = RoomId::index();
        let watcher = ConnTx::detached(64);
        rooms.join(&room, 1, user("JD"), watcher.clone());
        rooms.activate(&room, 1, 1);
        drain(&watcher);
        for id in 2..10 {
            rooms.join(&room, id, None, ConnTx::detached(64));
            rooms.activate(&room, id, 1);
        }
        // The watcher's own arrival was broadcast just now: the others wait for the second.
        let got = drain(&watcher);
        assert!(
            got.is_empty(),
            "no second broadcast within the second: {got:?}"
        );
        std::thread::sleep(PRESENCE_EVERY);
        rooms.flush_presence();
        let got = drain(&watcher);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["payload"]["readers"], 9);
    }

    #[test]
    fn revisions_stay_bounded() {
        let mut revisions = Revisions::default();
        for i in 0..(REVS_MAX + 10) {
            assert!(revisions.admit(ChangeKind::Edit, &i.to_string(), 1));
        }
        assert_eq!(revisions.last.len(), REVS_MAX);
        assert!(!revisions.admit(ChangeKind::Edit, &(REVS_MAX + 1).to_string(), 1));
    }
}
