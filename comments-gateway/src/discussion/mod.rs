//! Discussions on top of the comment rooms: replies, edits, reactions, presence and typing.
//!
//! The connection's requests call in here after its own checks (signed in, subscribed); this
//! module talks to the store, hands edits and reaction counts to the hub (which orders them
//! after their comment), typing and presence to the room's local connections (through
//! [`rooms::Rooms`]), publishes all of them to the other instances, and takes theirs from the
//! bus ([`Listener`]). Presence is kept per instance and shared through Redis by a background
//! driver ([`Discussions::run_presence`]).

pub mod limits;
pub mod presence;
pub mod rooms;
pub mod shared;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::transport::Frame;
use shared_proto::channels::BusEvent;
use shared_proto::ws::{
    CommentEdited, Edit, PresenceCounts, React, ReactionsChanged, ServerFrame, ServerMessage,
    Typing, UserRef,
};
use shared_proto::{Claims, Comment, CommentId, Mine, Reactions, RoomId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::limits::{SlidingWindow, Throttle};
use self::presence::merge;
use self::rooms::{ChangeKind, Rooms};
use self::shared::SharedPresence;
use crate::bus::{BusListener, SharedBus};
use crate::error::GatewayError;
use crate::hub::{ConnId, Hub};
use crate::metrics::GatewayMetrics;
use crate::sequencer::Change;
use crate::store::{EditOutcome, ReactOutcome, Store, now_millis};
use crate::transport::ConnTx;

/// Reactions one user may send per [`REACT_WINDOW`] on one instance.
pub const REACT_MAX: usize = 20;
/// The window of [`REACT_MAX`].
pub const REACT_WINDOW: Duration = Duration::from_secs(10);
/// One `typing` per user and room is relayed per this interval.
pub const TYPING_EVERY: Duration = Duration::from_secs(2);
/// How often the presence driver looks at its rooms.
const PRESENCE_TICK: Duration = Duration::from_millis(200);
/// Shortest time between two writes of a room's changed local readers.
const PRESENCE_WRITE_EVERY: Duration = Duration::from_millis(400);
/// Every room's readers are written (TTL refresh) and read (dead instances) this often.
const PRESENCE_REFRESH: Duration = Duration::from_secs(5);

/// The discussions service; cheap to clone.
#[derive(Clone)]
pub struct Discussions {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    hub: Hub,
    bus: SharedBus,
    instance: String,
    rooms: Rooms,
    shared: Option<SharedPresence>,
    wake: Notify,
    /// A room has `typing` gathered: the batch driver starts its wait.
    typing_wake: Notify,
    reacts: SlidingWindow<String>,
    typing: Throttle<(String, RoomId)>,
    edit_window_ms: i64,
}

/// The user a token names, as presence and typing show them.
pub fn user_ref(claims: &Claims) -> UserRef {
    UserRef {
        id: claims.sub.to_string(),
        name: claims.name.clone(),
    }
}

fn encode(message: ServerMessage) -> Frame {
    Frame::text(ServerFrame::push(message).encode())
}

impl Discussions {
    /// The service over `store`, delivering through `hub` and `bus`; presence is shared
    /// through `redis` when given.
    pub fn new(
        store: Store,
        hub: Hub,
        bus: SharedBus,
        instance: String,
        metrics: GatewayMetrics,
        redis: Option<SharedPresence>,
        edit_window: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hub,
                bus,
                instance,
                rooms: Rooms::new(metrics, redis.is_some()),
                shared: redis,
                wake: Notify::new(),
                typing_wake: Notify::new(),
                reacts: SlidingWindow::new(REACT_MAX, REACT_WINDOW),
                typing: Throttle::new(TYPING_EVERY),
                edit_window_ms: i64::try_from(edit_window.as_millis()).unwrap_or(i64::MAX),
            }),
        }
    }

    // ------------------------------------------------------------ connection lifecycle

    /// A connection subscribes to `room` (before its backlog is read).
    pub fn join(&self, room: &RoomId, id: ConnId, user: Option<&Claims>, conn: ConnTx) {
        self.inner.rooms.join(room, id, user.map(user_ref), conn);
    }

    /// The connection's `subscribed` went out: it reads the room now and gets `presence`.
    pub fn activate(&self, room: &RoomId, id: ConnId) {
        if self.inner.rooms.activate(room, id, now_millis()) {
            self.inner.wake.notify_one();
        }
    }

    /// The connection left `room` (unsubscribed, its subscribe failed, or it closed).
    pub fn leave(&self, room: &RoomId, id: ConnId) {
        self.inner.rooms.leave(room, id);
        if self.inner.shared.is_some() {
            self.inner.wake.notify_one();
        }
    }

    // ------------------------------------------------------------ requests

    /// Edits the user's own comment within the edit window; sends `comment_edited` to the room.
    pub async fn edit(&self, user: &Claims, edit: Edit) -> Result<Comment, GatewayError> {
        let outcome = self
            .inner
            .store
            .edit(
                &edit.room,
                edit.id.as_str(),
                user.sub.as_str(),
                edit.text.as_str(),
                now_millis(),
                self.inner.edit_window_ms,
            )
            .await?;
        let (comment, rev) = match outcome {
            EditOutcome::Edited { comment, rev } => (*comment, rev),
            EditOutcome::NotFound => {
                return Err(GatewayError::NotFound(
                    "no such comment in this room".into(),
                ));
            }
            EditOutcome::NotAuthor => {
                return Err(GatewayError::Forbidden(
                    "only the author may edit this comment".into(),
                ));
            }
            EditOutcome::TooLate => {
                return Err(GatewayError::Forbidden(
                    "the edit window of this comment has passed".into(),
                ));
            }
        };
        self.deliver_edit(&comment, rev);
        let event = BusEvent::Edited {
            origin: self.inner.instance.clone(),
            comment: comment.clone(),
            rev,
        };
        self.inner.bus.publish(event).await;
        Ok(comment)
    }

    /// Counts one `react` of the user against [`REACT_MAX`] per [`REACT_WINDOW`].
    pub fn allow_react(&self, user: &Claims) -> bool {
        self.inner
            .reacts
            .allow(&user.sub.to_string(), Instant::now())
    }

    /// Gives or takes back a reaction; sends `reactions` to the room when the counts changed.
    pub async fn react(&self, user: &Claims, react: React) -> Result<Reactions, GatewayError> {
        let outcome = self
            .inner
            .store
            .react(
                &react.room,
                react.id.as_str(),
                user.sub.as_str(),
                react.emoji,
                react.on,
            )
            .await?;
        match outcome {
            ReactOutcome::NotFound => Err(GatewayError::NotFound(
                "no such comment in this room".into(),
            )),
            ReactOutcome::Unchanged { reactions } => Ok(reactions),
            ReactOutcome::Changed {
                seq,
                reactions,
                rev,
            } => {
                self.deliver_reactions(&react.room, react.id.as_str(), seq, &reactions, rev);
                let event = BusEvent::Reactions {
                    origin: self.inner.instance.clone(),
                    room: react.room.clone(),
                    id: react.id.to_string(),
                    seq,
                    reactions: reactions.clone(),
                    rev,
                };
                self.inner.bus.publish(event).await;
                Ok(reactions)
            }
        }
    }

    /// Relays `typing` to the room's other users, here and on every instance, at most once per
    /// user and room every [`TYPING_EVERY`]; the rest are dropped silently.
    pub async fn typing(&self, user: &Claims, room: &RoomId) {
        let key = (user.sub.to_string(), room.clone());
        if !self.inner.typing.allow(&key, Instant::now()) {
            return;
        }
        let user = user_ref(user);
        self.deliver_typing(room, &user);
        let event = BusEvent::Typing {
            origin: self.inner.instance.clone(),
            room: room.clone(),
            user,
        };
        self.inner.bus.publish(event).await;
    }

    /// `mine` for a reply carrying `comments`: `None` for anonymous connections.
    pub async fn mine(
        &self,
        user: Option<&Claims>,
        comments: &[Comment],
    ) -> Result<Option<Mine>, GatewayError> {
        let Some(user) = user else {
            return Ok(None);
        };
        let ids: Vec<String> = comments
            .iter()
            .filter(|c| !c.reactions.is_empty())
            .map(|c| c.id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(Some(Mine::new()));
        }
        Ok(Some(self.inner.store.mine(user.sub.as_str(), ids).await?))
    }

    /// The room's readers on all instances (for `GET /rooms/{room}/presence`).
    pub async fn presence(&self, room: &RoomId) -> PresenceCounts {
        let local = self.inner.rooms.counts(room);
        let Some(shared) = &self.inner.shared else {
            return local.map(|(counts, _)| counts).unwrap_or_else(|| merge([]));
        };
        let mine = local.map(|(_, snapshot)| snapshot).unwrap_or_default();
        match shared.read_others(room).await {
            Ok(others) => merge(std::iter::once(&mine).chain(others.values())),
            Err(e) => {
                tracing::debug!(error = %e, %room, "presence read failed; local readers only");
                merge([&mine])
            }
        }
    }

    // ------------------------------------------------------------ fan-out

    fn deliver_edit(&self, comment: &Comment, rev: u64) {
        let frame = encode(ServerMessage::CommentEdited(CommentEdited {
            room: comment.room.clone(),
            comment: comment.clone(),
        }));
        let hub = &self.inner.hub;
        self.inner
            .rooms
            .admit_with(&comment.room, ChangeKind::Edit, &comment.id, rev, || {
                hub.update(
                    &comment.room,
                    comment.seq,
                    frame,
                    Change::Edited {
                        comment: Arc::new(comment.clone()),
                        rev,
                    },
                )
            });
    }

    fn deliver_reactions(
        &self,
        room: &RoomId,
        id: &str,
        seq: u64,
        reactions: &Reactions,
        rev: u64,
    ) {
        let frame = encode(ServerMessage::Reactions(ReactionsChanged {
            room: room.clone(),
            id: id.to_owned(),
            reactions: reactions.clone(),
        }));
        let hub = &self.inner.hub;
        self.inner
            .rooms
            .admit_with(room, ChangeKind::Reactions, id, rev, || {
                hub.update(
                    room,
                    seq,
                    frame,
                    Change::Reactions {
                        reactions: Arc::new(reactions.clone()),
                        rev,
                    },
                )
            });
    }

    fn deliver_typing(&self, room: &RoomId, user: &UserRef) {
        let frame = encode(ServerMessage::Typing(Typing {
            room: room.clone(),
            user: user.clone(),
        }));
        if self.inner.rooms.typing(room, &user.id, frame) {
            self.inner.typing_wake.notify_one();
        }
    }

    /// `author`'s comment reached `room` (from here or another instance): typing of theirs
    /// still gathered for the next batch is dropped.
    pub fn posted(&self, room: &RoomId, author: &str) {
        self.inner.rooms.posted(room, author);
    }

    /// An event from another instance; true if it was a discussions event.
    pub fn remote(&self, event: &BusEvent) -> bool {
        if event.origin() == self.inner.instance {
            return matches!(
                event,
                BusEvent::Edited { .. }
                    | BusEvent::Reactions { .. }
                    | BusEvent::Typing { .. }
                    | BusEvent::Presence { .. }
            );
        }
        match event {
            BusEvent::Edited { comment, rev, .. } => self.deliver_edit(comment, *rev),
            BusEvent::Reactions {
                room,
                id,
                seq,
                reactions,
                rev,
                ..
            } => self.deliver_reactions(room, id, *seq, reactions, *rev),
            BusEvent::Typing { room, user, .. } => self.deliver_typing(room, user),
            BusEvent::Presence { room, .. } => {
                if self.inner.rooms.want_fetch(room) {
                    self.inner.wake.notify_one();
                }
            }
            BusEvent::Comment { comment, .. } => {
                self.posted(&comment.room, &comment.author.id);
                return false;
            }
            BusEvent::Deleted { .. } | BusEvent::Notice { .. } => {
                return false;
            }
        }
        true
    }

    // ------------------------------------------------------------ typing batches

    /// Sends the rooms' gathered `typing` [`rooms::TYPING_BATCH`] after the first of a batch
    /// arrived; idle (no timer) while nobody types.
    pub async fn run_typing(self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.inner.typing_wake.notified() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(rooms::TYPING_BATCH) => {}
            }
            self.inner.rooms.flush_typing();
        }
    }

    // ------------------------------------------------------------ presence driver

    /// Keeps presence: writes this instance's readers to Redis when they change (and refreshes
    /// them), reads the other instances' when told or due, and sends the `presence` broadcasts
    /// the once-a-second rule held back. Without Redis it only does the latter. On
    /// cancellation it removes this instance's readers from Redis.
    pub async fn run_presence(self, cancel: CancellationToken) {
        loop {
            self.presence_round().await;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.inner.wake.notified() => {
                    // Let a burst of joins settle into one round.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = tokio::time::sleep(PRESENCE_TICK) => {}
            }
        }
        // Connections are closed by now: their rooms are emptied; say so to the others.
        self.presence_round().await;
    }

    async fn presence_round(&self) {
        let rooms = &self.inner.rooms;
        let Some(shared) = &self.inner.shared else {
            rooms.flush_presence();
            return;
        };
        let chores = rooms.chores(Instant::now(), PRESENCE_WRITE_EVERY, PRESENCE_REFRESH);
        // After one failure the round stops talking to Redis (each call could wait for its
        // deadline); rooms waiting for their first read get the local readers meanwhile.
        let mut healthy = true;
        for chore in chores {
            if let Some(snapshot) = chore.write.as_ref().filter(|_| healthy) {
                match shared.write(&chore.room, snapshot).await {
                    Ok(()) if chore.announce => {
                        let event = BusEvent::Presence {
                            origin: self.inner.instance.clone(),
                            room: chore.room.clone(),
                        };
                        self.inner.bus.publish(event).await;
                    }
                    Ok(()) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, room = %chore.room, "presence write failed");
                        healthy = false;
                    }
                }
            }
            if chore.fetch {
                let remote = if healthy {
                    match shared.read_others(&chore.room).await {
                        Ok(remote) => Some(remote),
                        Err(e) => {
                            tracing::debug!(error = %e, room = %chore.room, "presence read failed");
                            healthy = false;
                            None
                        }
                    }
                } else {
                    None
                };
                rooms.remote_read(&chore.room, remote);
            }
        }
        rooms.flush_presence();
    }
}

/// The id a reply to `parent` is stored under: `parent` itself, or its top-level comment when
/// `parent` is a reply (threads are one level deep). `not_found` when either is unknown,
/// deleted or in another room.
pub async fn reply_target(
    store: &Store,
    room: &RoomId,
    parent: &CommentId,
) -> Result<String, GatewayError> {
    let not_found = || GatewayError::NotFound("no such comment to reply to in this room".into());
    let found = store
        .get(room, parent.as_str())
        .await?
        .ok_or_else(not_found)?;
    match found.reply_to {
        None => Ok(found.id),
        Some(top) => Ok(store.get(room, &top).await?.ok_or_else(not_found)?.id),
    }
}

/// Where the bus delivers other instances' events: discussions take theirs, the hub the rest.
pub struct Listener {
    /// Comments, deletions, notices.
    pub hub: Hub,
    /// Edits, reactions, typing, presence.
    pub discussions: Discussions,
}

impl BusListener for Listener {
    fn event(&self, event: BusEvent) {
        if !self.discussions.remote(&event) {
            self.hub.event(event);
        }
    }

    fn reconnected(&self) {
        self.hub.reconnected();
    }

    fn rooms_reconnected(&self, rooms: &[RoomId]) {
        self.hub.rooms_reconnected(rooms);
    }
}
