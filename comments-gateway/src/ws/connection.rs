//! A WebSocket connection's session: the transport hands it each client text message; what
//! needs no store is answered at once, everything else becomes a request task that answers
//! through the connection's [`ConnTx`], so the socket's task never waits for the store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use shared_proto::ws::{
    ClientFrame, ClientMessage, Empty, MAX_ROOMS_PER_CONNECTION, Ref, RoomOnly, ServerFrame,
    ServerMessage, UserInfo, Welcome,
};
use shared_proto::{Claims, ErrorCode};
use tracing::Instrument;

use super::guard::IpSlot;
use super::requests::Request;
use crate::error::GatewayError;
use crate::hub::ConnId;
use crate::state::AppState;
use crate::transport::{ConnTx, Frame, Session};

/// Requests of one connection waiting for the store at once; past it they are refused.
pub const MAX_IN_FLIGHT: usize = 64;

/// One connection's session.
pub struct Connection {
    id: ConnId,
    state: Arc<AppState>,
    user: Option<Arc<Claims>>,
    /// Rooms subscribed and requests under way (shared with the request tasks).
    shared: Arc<Shared>,
    out: ConnTx,
    /// The connection's place in its address's count, given back when it closes.
    slot: Option<IpSlot>,
}

impl Connection {
    /// Registers an upgraded connection and sends its welcome.
    pub(super) fn open(
        state: Arc<AppState>,
        id: ConnId,
        out: ConnTx,
        user: Option<Claims>,
        slot: IpSlot,
    ) -> Self {
        state.metrics.connections.inc();
        let conn = Connection {
            id,
            state,
            user: user.map(Arc::new),
            shared: Arc::default(),
            out,
            slot: Some(slot),
        };
        let welcome = ServerMessage::Welcome(Welcome {
            connection_id: format!("{}-{}", conn.state.instance, id),
            user: conn.user.as_ref().map(|c| UserInfo {
                id: c.sub.to_string(),
                name: c.name.clone(),
                role: c.role,
            }),
            heartbeat_ms: conn.state.heartbeat.as_millis() as u64,
        });
        conn.push(&ServerFrame::push(welcome));
        conn
    }

    fn push(&self, frame: &ServerFrame) {
        self.out
            .push(Frame::text(frame.encode()), &self.state.metrics);
    }

    fn reply(&self, reference: Option<Ref>, message: ServerMessage) {
        self.push(&ServerFrame::reply(reference, message));
    }

    fn error(&self, reference: Option<Ref>, code: ErrorCode, message: impl Into<String>) {
        self.push(&ServerFrame::error(reference, code, message));
    }
}

impl Session for Connection {
    fn text(&mut self, text: &str) {
        self.state.metrics.messages_in.inc();
        self.handle_text(text);
    }

    fn binary(&mut self) {
        self.state.metrics.messages_in.inc();
        self.error(
            None,
            ErrorCode::BadRequest,
            "binary frames are not supported; send JSON text",
        );
    }

    fn poll_work(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        // Requests run as their own tasks.
        Poll::Ready(())
    }

    fn accepts_input(&self) -> bool {
        true
    }

    fn closed(&mut self) {
        {
            let rooms = self.shared.rooms();
            self.state.hub.unregister(self.id, rooms.iter());
            for room in rooms.iter() {
                self.state.discussions.leave(room, self.id);
            }
        }
        self.slot = None;
        self.state.metrics.connections.dec();
        tracing::debug!("connection closed");
    }
}

impl Connection {
    /// Answers what needs no store in the loop; everything else becomes a request task.
    fn handle_text(&mut self, text: &str) {
        let frame = match ClientFrame::decode(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.error(e.reference, e.code, e.message);
                return;
            }
        };
        let reference = frame.reference;
        let request = match frame.message {
            ClientMessage::Ping(Empty {}) => {
                self.reply(reference, ServerMessage::Pong(Empty {}));
                return;
            }
            ClientMessage::Unsubscribe(RoomOnly { room }) => {
                let removed = self.shared.remove_room(&room);
                if removed {
                    self.state.hub.leave(&room, self.id);
                    self.state.discussions.leave(&room, self.id);
                }
                self.reply(reference, ServerMessage::Unsubscribed(RoomOnly { room }));
                return;
            }
            ClientMessage::Subscribe(sub) => {
                let room = sub.room.clone();
                let already = {
                    let mut rooms = self.shared.rooms();
                    let already = rooms.contains(&room);
                    if !already && rooms.len() >= MAX_ROOMS_PER_CONNECTION {
                        drop(rooms);
                        self.error(
                            reference,
                            ErrorCode::BadRequest,
                            format!(
                                "at most {MAX_ROOMS_PER_CONNECTION} rooms per connection; unsubscribe from one first"
                            ),
                        );
                        return;
                    }
                    if !already {
                        rooms.reserve_exact(1);
                        rooms.push(room.clone());
                    }
                    already
                };
                // Joined here, in frame order, so a post right behind it counts as subscribed.
                let ready = self.state.hub.join(&room, self.id, self.out.clone());
                self.state
                    .discussions
                    .join(&room, self.id, self.user.as_deref(), self.out.clone());
                Request::Subscribe {
                    sub,
                    already,
                    ready,
                }
            }
            ClientMessage::Post(post) => {
                let subscribed = self.shared.rooms().contains(&post.room);
                if self.user.is_some() && !subscribed {
                    self.error(
                        reference,
                        ErrorCode::NotSubscribed,
                        GatewayError::NotSubscribed.to_string(),
                    );
                    return;
                }
                Request::Post(post)
            }
            ClientMessage::Delete(delete) => Request::Delete(delete),
            ClientMessage::Edit(edit) => match self.member(&edit.room, "edit") {
                Ok(()) => Request::Edit(edit),
                Err(e) => return self.error(reference, e.code(), e.to_string()),
            },
            ClientMessage::React(react) => match self.member(&react.room, "react") {
                Ok(()) => Request::React(react),
                Err(e) => return self.error(reference, e.code(), e.to_string()),
            },
            ClientMessage::Typing(RoomOnly { room }) => match self.member(&room, "type") {
                Ok(()) => Request::Typing(room),
                Err(e) => return self.error(reference, e.code(), e.to_string()),
            },
            ClientMessage::History(history) => Request::History(history),
        };
        let Some(permit) = Permit::take(&self.shared) else {
            if let Request::Subscribe { sub, already, .. } = &request {
                self.undo_subscribe(&sub.room, *already);
            }
            self.error(
                reference,
                ErrorCode::RateLimited,
                format!("at most {MAX_IN_FLIGHT} requests in flight per connection"),
            );
            return;
        };
        let ctx = super::requests::Ctx {
            state: self.state.clone(),
            id: self.id,
            out: self.out.clone(),
            user: self.user.clone(),
            shared: self.shared.clone(),
        };
        let task = request
            .run(ctx, reference)
            .map(move |()| drop(permit))
            .in_current_span();
        self.state.tracker.spawn(task);
    }

    fn undo_subscribe(&self, room: &shared_proto::RoomId, already: bool) {
        if already {
            self.state.hub.cancel_join(room, self.id);
        } else {
            self.shared.remove_room(room);
            self.state.hub.leave(room, self.id);
            self.state.discussions.leave(room, self.id);
        }
    }

    /// Edit, react and typing need a signed-in user subscribed to the room here.
    fn member(&self, room: &shared_proto::RoomId, what: &str) -> Result<(), GatewayError> {
        if self.user.is_none() {
            return Err(GatewayError::Unauthorized(format!("sign in to {what}")));
        }
        let subscribed = self.shared.rooms().contains(room);
        if !subscribed {
            return Err(GatewayError::NotSubscribed);
        }
        Ok(())
    }
}

/// What a connection shares with its request tasks: its rooms (a short list: at most
/// [`MAX_ROOMS_PER_CONNECTION`], most often one) and how many requests run.
#[derive(Default)]
pub(super) struct Shared {
    rooms: Mutex<Vec<shared_proto::RoomId>>,
    in_flight: AtomicU32,
}

impl Shared {
    /// The rooms subscribed.
    pub(super) fn rooms(&self) -> MutexGuard<'_, Vec<shared_proto::RoomId>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets `room`; true if it was subscribed.
    pub(super) fn remove_room(&self, room: &shared_proto::RoomId) -> bool {
        let mut rooms = self.rooms();
        let Some(at) = rooms.iter().position(|r| r == room) else {
            return false;
        };
        rooms.swap_remove(at);
        if rooms.is_empty() {
            *rooms = Vec::new();
        }
        true
    }
}

/// One of the [`MAX_IN_FLIGHT`] requests a connection may run at once; given back on drop.
struct Permit(Arc<Shared>);

impl Permit {
    fn take(shared: &Arc<Shared>) -> Option<Self> {
        let before = shared.in_flight.fetch_add(1, Ordering::AcqRel);
        if before as usize >= MAX_IN_FLIGHT {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(shared.clone()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
