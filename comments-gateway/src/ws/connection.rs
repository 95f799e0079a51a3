//! WebSocket connections: token check before the upgrade, then one task per connection that
//! `select!`s over client frames, its bounded outbound queue, the heartbeat, the overflow kick
//! and shutdown, and always deregisters and closes with a reason.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use bytestring::ByteString;
use futures_util::FutureExt;
use shared_proto::ws::{
    ClientFrame, ClientMessage, Empty, MAX_FRAME_BYTES, MAX_ROOMS_PER_CONNECTION, Ref, RoomOnly,
    ServerFrame, ServerMessage, UserInfo, Welcome,
};
use shared_proto::{Claims, ErrorCode};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::guard::IpSlot;
use super::requests::Request;
use crate::error::GatewayError;
use crate::hub::ConnId;
use crate::outbox::{Closing, ConnTx};
use crate::state::AppState;

/// Requests of one connection waiting for the store at once; past it they are refused.
pub const MAX_IN_FLIGHT: usize = 64;

struct Connection {
    id: ConnId,
    label: String,
    state: Arc<AppState>,
    user: Option<Arc<Claims>>,
    /// Rooms subscribed (shared with this connection's request tasks).
    rooms: Arc<Mutex<HashSet<shared_proto::RoomId>>>,
    out: ConnTx,
    in_flight: Arc<Semaphore>,
}

pub(super) async fn run_connection(
    state: Arc<AppState>,
    mut session: Session,
    stream: actix_ws::MessageStream,
    user: Option<Claims>,
    slot: IpSlot,
) {
    let id = state
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let label = format!("{}-{}", state.instance, id);
    let out = ConnTx::new(state.queue_max);
    let span = tracing::info_span!(
        "ws",
        conn = %label,
        user = user.as_ref().map(|c| c.sub.as_str()).unwrap_or("-")
    );
    state.hub.register(id, out.clone());
    state.metrics.connections.inc();
    let mut conn = Connection {
        id,
        label,
        state: state.clone(),
        user: user.map(Arc::new),
        rooms: Arc::new(Mutex::new(HashSet::new())),
        out,
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    };
    let reason = conn
        .run(&mut session, stream)
        .instrument(span.clone())
        .await;
    {
        let rooms = conn.rooms.lock().unwrap_or_else(|p| p.into_inner());
        state.hub.unregister(conn.id, rooms.iter());
        for room in rooms.iter() {
            state.discussions.leave(room, conn.id);
        }
    }
    drop(slot);
    state.metrics.connections.dec();
    span.in_scope(|| tracing::debug!(?reason, "connection closed"));
    if let Some(reason) = reason {
        // A peer that does not read cannot take the close frame either: give up after a while.
        let _ = tokio::time::timeout(CLOSE_GRACE, session.close(Some(reason))).await;
    }
}

fn closing_reason(closing: Closing) -> Option<CloseReason> {
    match closing {
        Closing::TooSlow => close(CloseCode::Again, "too slow: resubscribe with since"),
        Closing::Shutdown => close(CloseCode::Away, "server shutting down"),
    }
}

fn close(code: CloseCode, description: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

impl Connection {
    fn push(&self, frame: &ServerFrame) {
        self.out
            .push(ByteString::from(frame.encode()), &self.state.metrics);
    }

    fn reply(&self, reference: Option<Ref>, message: ServerMessage) {
        self.push(&ServerFrame::reply(reference, message));
    }

    fn error(&self, reference: Option<Ref>, code: ErrorCode, message: impl Into<String>) {
        self.push(&ServerFrame::error(reference, code, message));
    }

    async fn run(
        &mut self,
        session: &mut Session,
        stream: actix_ws::MessageStream,
    ) -> Option<CloseReason> {
        let heartbeat = self.state.heartbeat;
        let mut stream = stream
            .max_frame_size(MAX_FRAME_BYTES)
            .aggregate_continuations()
            .max_continuation_size(MAX_FRAME_BYTES);
        let welcome = ServerMessage::Welcome(Welcome {
            connection_id: self.label.clone(),
            user: self.user.as_ref().map(|c| UserInfo {
                id: c.sub.to_string(),
                name: c.name.clone(),
                role: c.role,
            }),
            heartbeat_ms: heartbeat.as_millis() as u64,
        });
        self.push(&ServerFrame::push(welcome));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        let out = self.out.clone();
        let outbox = out.outbox();
        // One long-lived wake-up, registered once rather than on every loop turn: it covers
        // queued frames, the overflow kick and the shutdown.
        let ready = outbox.notified();
        tokio::pin!(ready);
        loop {
            if let Some(closing) = outbox.closing() {
                return closing_reason(closing);
            }
            // Hand over what is queued (a bounded batch, so client frames get their turn).
            let mut sent = 0;
            while sent < 64 {
                let Some(frame) = outbox.try_recv() else {
                    break;
                };
                sent += 1;
                // Fast path: the session's channel almost always has room, so the frame is handed
                // over without registering a timer; only a full channel takes the slow path.
                match session.text(frame.clone()).now_or_never() {
                    Some(Ok(())) => continue,
                    Some(Err(_)) => return None,
                    None => {}
                }
                let send = session.text(frame);
                tokio::pin!(send);
                // A peer that does not read blocks this send: the overflow kick, the shutdown
                // and the heartbeat deadline still get through.
                let deadline = tokio::time::sleep(heartbeat * 2);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        biased;
                        result = &mut send => {
                            if result.is_err() {
                                return None;
                            }
                            break;
                        }
                        _ = &mut ready => {
                            ready.set(outbox.notified());
                            if let Some(closing) = outbox.closing() {
                                return closing_reason(closing);
                            }
                        }
                        _ = &mut deadline => return close(CloseCode::Policy, "peer does not read"),
                    }
                }
            }
            let more = sent == 64;
            tokio::select! {
                biased;
                msg = stream.recv() => {
                    let msg = match msg {
                        None => return None,
                        Some(Err(ProtocolError::Overflow)) => return close(CloseCode::Size, "frame too large"),
                        Some(Err(ProtocolError::Io(e))) if e.to_string().contains("continuation size") => {
                            return close(CloseCode::Size, "frame too large");
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "protocol error");
                            return close(CloseCode::Protocol, "protocol error");
                        }
                        Some(Ok(msg)) => msg,
                    };
                    last_seen = Instant::now();
                    match msg {
                        AggregatedMessage::Text(text) => {
                            self.state.metrics.messages_in.inc();
                            self.handle_text(&text);
                        }
                        AggregatedMessage::Binary(_) => {
                            self.state.metrics.messages_in.inc();
                            self.error(None, ErrorCode::BadRequest, "binary frames are not supported; send JSON text");
                        }
                        AggregatedMessage::Ping(bytes) => {
                            if session.pong(&bytes).await.is_err() {
                                return None;
                            }
                        }
                        AggregatedMessage::Pong(_) => {}
                        AggregatedMessage::Close(reason) => {
                            return reason.or(Some(CloseReason { code: CloseCode::Normal, description: None }));
                        }
                    }
                }
                _ = tick.tick() => {
                    if last_seen.elapsed() > heartbeat * 2 {
                        tracing::debug!("peer silent for two heartbeats");
                        return close(CloseCode::Policy, "heartbeat timeout");
                    }
                    if session.ping(b"").await.is_err() {
                        return None;
                    }
                }
                _ = &mut ready, if !more => {
                    ready.set(outbox.notified());
                }
                _ = std::future::ready(()), if more => {}
            }
        }
    }

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

/// How long a closing connection may take (for the shutdown drain).
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
