//! WebSocket connections: token check before the upgrade, then one task per connection that
//! `select!`s over client frames, its bounded outbound queue, the heartbeat, the overflow kick
//! and shutdown, and always deregisters and closes with a reason.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use bytestring::ByteString;
use futures_util::FutureExt;
use serde::Deserialize;
use shared_proto::channels::BusEvent;
use shared_proto::ws::{
    Ack, ClientFrame, ClientMessage, Delete, Empty, History, HistoryPage, MAX_FRAME_BYTES,
    MAX_ROOMS_PER_CONNECTION, MAX_SINCE_BATCH, Post, Ref, RoomOnly, ServerFrame, ServerMessage,
    Subscribe, Subscribed, UserInfo, Welcome,
};
use shared_proto::{Author, Claims, ErrorCode, Role, RoomId};
use tracing::Instrument;

use crate::error::GatewayError;
use crate::hub::{Closing, ConnId, ConnTx};
use crate::startup::AppState;
use crate::store::{DeleteOutcome, NewComment, Slice, now_millis};

/// `GET /ws` query.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

/// `GET /ws?token=...`: checks the token, upgrades, and starts the connection's task.
pub async fn ws_entry(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<WsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let user = match query.token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => Some(
            state
                .verifier
                .verify(token)
                .map_err(|_| GatewayError::Unauthorized("invalid or expired token".into()))?,
        ),
    };
    if state.shutdown.is_cancelled() {
        return Err(GatewayError::Unavailable("the gateway (shutting down)"));
    }
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| GatewayError::BadRequest(format!("expected a WebSocket upgrade: {e}")))?;
    let state = state.into_inner();
    let task = state
        .tracker
        .track_future(run_connection(state.clone(), session, stream, user));
    actix_web::rt::spawn(task);
    Ok(response)
}

struct Connection {
    id: ConnId,
    label: String,
    state: Arc<AppState>,
    user: Option<Claims>,
    rooms: HashSet<RoomId>,
    out: ConnTx,
}

async fn run_connection(
    state: Arc<AppState>,
    mut session: Session,
    stream: actix_ws::MessageStream,
    user: Option<Claims>,
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
        user,
        rooms: HashSet::new(),
        out,
    };
    let reason = conn
        .run(&mut session, stream)
        .instrument(span.clone())
        .await;
    state.hub.unregister(conn.id, conn.rooms.iter());
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
                            Box::pin(self.handle_text(&text)).await;
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

    async fn handle_text(&mut self, text: &str) {
        let frame = match ClientFrame::decode(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.error(e.reference, e.code, e.message);
                return;
            }
        };
        let reference = frame.reference;
        let result = match frame.message {
            ClientMessage::Subscribe(sub) => self.subscribe(reference.clone(), sub).await,
            ClientMessage::Unsubscribe(RoomOnly { room }) => {
                if self.rooms.remove(&room) {
                    self.state.hub.leave(&room, self.id);
                }
                self.reply(
                    reference.clone(),
                    ServerMessage::Unsubscribed(RoomOnly { room }),
                );
                Ok(())
            }
            ClientMessage::Post(post) => self.post(reference.clone(), post).await,
            ClientMessage::Delete(delete) => self.delete(reference.clone(), delete).await,
            ClientMessage::History(history) => self.history(reference.clone(), history).await,
            ClientMessage::Ping(Empty {}) => {
                self.reply(reference.clone(), ServerMessage::Pong(Empty {}));
                Ok(())
            }
            ClientMessage::Edit(_) | ClientMessage::React(_) | ClientMessage::Typing(_) => Err(
                GatewayError::BadRequest("this message type is not available yet".into()),
            ),
        };
        if let Err(e) = result {
            if let GatewayError::Internal(cause) = &e {
                tracing::error!(error = ?cause, "request failed");
            }
            self.error(reference, e.code(), e.to_string());
        }
    }

    async fn subscribe(
        &mut self,
        reference: Option<Ref>,
        sub: Subscribe,
    ) -> Result<(), GatewayError> {
        let room = sub.room;
        let already = self.rooms.contains(&room);
        if !already && self.rooms.len() >= MAX_ROOMS_PER_CONNECTION {
            return Err(GatewayError::BadRequest(format!(
                "at most {MAX_ROOMS_PER_CONNECTION} rooms per connection; unsubscribe from one first"
            )));
        }
        let hub = &self.state.hub;
        let ready = hub.join(&room, self.id, self.out.clone());
        self.rooms.insert(room.clone());
        let undo = |this: &mut Self| {
            if !already {
                this.rooms.remove(&room);
                this.state.hub.leave(&room, this.id);
            } else {
                this.state.hub.activate(&room, this.id, 0);
            }
        };
        if !ready.await.unwrap_or(false) {
            undo(self);
            return Err(GatewayError::Unavailable("storage"));
        }
        let slice = match (sub.since, sub.limit) {
            (Some(since), _) => Slice::After {
                after: since,
                upto: None,
                max: MAX_SINCE_BATCH,
            },
            (None, limit) => Slice::Latest {
                limit: limit.unwrap_or(shared_proto::ws::DEFAULT_PAGE_LIMIT),
            },
        };
        let page = match self.state.store.read(&room, slice).await {
            Ok(page) => page,
            Err(e) => {
                undo(self);
                return Err(e.into());
            }
        };
        let last = page.comments.last().map(|c| c.seq).unwrap_or(0);
        self.reply(
            reference,
            ServerMessage::Subscribed(Subscribed {
                room: room.clone(),
                comments: page.comments,
                truncated: page.more,
                mine: None,
            }),
        );
        self.state.hub.activate(&room, self.id, last);
        Ok(())
    }

    async fn post(&mut self, reference: Option<Ref>, post: Post) -> Result<(), GatewayError> {
        let Some(user) = &self.user else {
            return Err(GatewayError::Unauthorized("sign in to post".into()));
        };
        if !self.rooms.contains(&post.room) {
            return Err(GatewayError::NotSubscribed);
        }
        if let Some(limiter) = &self.state.limiter
            && limiter.check_key(&user.sub.to_string()).is_err()
        {
            return Err(GatewayError::RateLimited);
        }
        let inserted = self
            .state
            .store
            .insert(NewComment {
                room: post.room,
                author: Author {
                    id: user.sub.to_string(),
                    name: user.name.clone(),
                },
                text: post.text,
                client_id: post.client_id,
                created_ms: now_millis(),
                reply_to: None,
            })
            .await?;
        let comment = inserted.comment;
        self.reply(
            reference,
            ServerMessage::Ack(Ack::Posted {
                comment: comment.clone(),
            }),
        );
        if inserted.fresh {
            self.state.metrics.comments_posted.inc();
            self.state.hub.comment(&comment);
            let event = BusEvent::Comment {
                origin: self.state.instance.clone(),
                comment,
            };
            self.state.bus.publish(&event).await;
        }
        Ok(())
    }

    async fn delete(&mut self, reference: Option<Ref>, delete: Delete) -> Result<(), GatewayError> {
        let Some(user) = &self.user else {
            return Err(GatewayError::Unauthorized("sign in to delete".into()));
        };
        let admin = user.role == Role::Admin;
        let outcome = self
            .state
            .store
            .delete(&delete.room, &delete.id, user.sub.as_str(), admin)
            .await?;
        match outcome {
            DeleteOutcome::Deleted => {
                self.reply(
                    reference,
                    ServerMessage::Ack(Ack::Deleted {
                        id: delete.id.clone(),
                    }),
                );
                self.state.hub.deleted(&delete.room, &delete.id);
                let event = BusEvent::Deleted {
                    origin: self.state.instance.clone(),
                    room: delete.room,
                    id: delete.id,
                };
                self.state.bus.publish(&event).await;
                Ok(())
            }
            DeleteOutcome::NotFound => Err(GatewayError::NotFound(
                "no such comment in this room".into(),
            )),
            DeleteOutcome::Forbidden => Err(GatewayError::Forbidden(
                "only the author or an admin may delete this comment".into(),
            )),
        }
    }

    async fn history(
        &mut self,
        reference: Option<Ref>,
        history: History,
    ) -> Result<(), GatewayError> {
        let page = self
            .state
            .store
            .read(
                &history.room,
                Slice::Before {
                    before: history.before,
                    limit: history.limit,
                },
            )
            .await?;
        self.reply(
            reference,
            ServerMessage::History(HistoryPage {
                room: history.room,
                comments: page.comments,
                more: page.more,
                mine: None,
            }),
        );
        Ok(())
    }
}

/// How long a closing connection may take (for the shutdown drain).
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
