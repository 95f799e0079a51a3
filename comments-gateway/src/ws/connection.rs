//! A WebSocket connection's session: the transport hands it each client text message; what
//! needs no store is answered at once, everything else becomes a request task that answers
//! through the connection's [`ConnTx`], so the socket's task never waits for the store.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use shared_proto::ws::{
    ClientFrame, ClientMessage, Empty, MAX_ROOMS_PER_CONNECTION, Ref, RoomOnly, ServerFrame,
    ServerMessage, UserInfo, Welcome,
};
use shared_proto::{Claims, ErrorCode};
use tokio::sync::Semaphore;
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
    /// Rooms subscribed (shared with this connection's request tasks).
    rooms: Arc<Mutex<HashSet<shared_proto::RoomId>>>,
    out: ConnTx,
    in_flight: Arc<Semaphore>,
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
        state.hub.register(id, out.clone());
        state.metrics.connections.inc();
        let conn = Connection {
            id,
            state,
            user: user.map(Arc::new),
            rooms: Arc::new(Mutex::new(HashSet::new())),
            out,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
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
            let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
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
                let removed = self
                    .rooms
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&room);
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
                    let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
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
                    rooms.insert(room.clone());
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
                let subscribed = self
                    .rooms
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&post.room);
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
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
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
            rooms: self.rooms.clone(),
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
            self.rooms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(room);
            self.state.hub.leave(room, self.id);
            self.state.discussions.leave(room, self.id);
        }
    }

    /// Edit, react and typing need a signed-in user subscribed to the room here.
    fn member(&self, room: &shared_proto::RoomId, what: &str) -> Result<(), GatewayError> {
        if self.user.is_none() {
            return Err(GatewayError::Unauthorized(format!("sign in to {what}")));
        }
        let subscribed = self
            .rooms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(room);
        if !subscribed {
            return Err(GatewayError::NotSubscribed);
        }
        Ok(())
    }
}
