//! Fan-out between instances: Redis pub/sub (one channel per room with local subscribers, plus
//! the notice channel), or nothing at all in-process when `REDIS_URL` is unset.
//!
//! The driver task owns the subscriber connection: it subscribes a room's channel only while
//! the hub follows that room, pings Redis every second, reconnects by itself with backoff, and
//! after every (re)connect resubscribes and asks the hub to catch up from the store.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use shared_proto::RoomId;
use shared_proto::channels::{BusEvent, Channels};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::metrics::GatewayMetrics;

enum Command {
    Follow(RoomId, oneshot::Sender<()>),
    Unfollow(RoomId),
}

/// The bus as the hub and the handlers see it.
#[derive(Clone)]
pub enum Bus {
    /// One instance, no Redis: local delivery is all there is.
    Local,
    /// Redis pub/sub.
    Redis(RedisBus),
}

/// Events that could not be published, sent again once Redis is back (receivers drop
/// duplicates by seq, so sending twice is harmless).
type Outbox = Arc<Mutex<VecDeque<(String, String)>>>;
/// Most events kept for republishing; older ones are left to the receivers' store catch-up.
const OUTBOX_MAX: usize = 10_000;

/// Handle to the Redis driver.
#[derive(Clone)]
pub struct RedisBus {
    commands: mpsc::UnboundedSender<Command>,
    publisher: Arc<Mutex<Option<MultiplexedConnection>>>,
    channels: Channels,
    up: Arc<AtomicBool>,
    outbox: Outbox,
}

/// The Redis driver, started once the hub exists.
pub struct RedisDriver {
    client: redis::Client,
    commands: mpsc::UnboundedReceiver<Command>,
    publisher: Arc<Mutex<Option<MultiplexedConnection>>>,
    channels: Channels,
    up: Arc<AtomicBool>,
    origin: String,
    metrics: GatewayMetrics,
    outbox: Outbox,
}

impl Bus {
    /// A Redis bus for `url` and its driver (not yet running).
    pub fn redis(
        url: &str,
        channels: Channels,
        origin: String,
        metrics: GatewayMetrics,
    ) -> anyhow::Result<(Self, RedisDriver)> {
        let client = redis::Client::open(url).context("parsing REDIS_URL")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let publisher = Arc::new(Mutex::new(None));
        let up = Arc::new(AtomicBool::new(false));
        metrics.redis_up.set(0);
        let outbox: Outbox = Arc::new(Mutex::new(VecDeque::new()));
        let bus = RedisBus {
            commands: tx,
            publisher: publisher.clone(),
            channels: channels.clone(),
            up: up.clone(),
            outbox: outbox.clone(),
        };
        let driver = RedisDriver {
            client,
            commands: rx,
            publisher,
            channels,
            up,
            origin,
            metrics,
            outbox,
        };
        Ok((Bus::Redis(bus), driver))
    }

    /// Starts following a room; resolves once the subscription is confirmed (at once without
    /// Redis or while Redis is down: the catch-up after reconnecting covers that case).
    pub fn follow(&self, room: &RoomId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        match self {
            Bus::Local => {
                let _ = tx.send(());
            }
            Bus::Redis(bus) => {
                if let Err(mpsc::error::SendError(Command::Follow(_, tx))) =
                    bus.commands.send(Command::Follow(room.clone(), tx))
                {
                    let _ = tx.send(());
                }
            }
        }
        rx
    }

    /// Stops following a room.
    pub fn unfollow(&self, room: &RoomId) {
        if let Bus::Redis(bus) = self {
            let _ = bus.commands.send(Command::Unfollow(room.clone()));
        }
    }

    /// Publishes an event to the other instances; false if it could not be sent (they recover
    /// it from the store on their next event or when Redis is back).
    pub async fn publish(&self, event: &BusEvent) -> bool {
        let Bus::Redis(bus) = self else { return true };
        let channel = match event {
            BusEvent::Notice { .. } => bus.channels.notice(),
            other => match other.room() {
                Some(room) => bus.channels.room(room),
                None => bus.channels.notice(),
            },
        };
        let payload = match serde_json::to_string(event) {
            Ok(p) => p,
            Err(_) => return false,
        };
        let conn = bus.publisher.lock().ok().and_then(|slot| slot.clone());
        let sent = match conn {
            Some(mut conn) => match publish_on(&mut conn, &channel, &payload).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, %channel, "publish failed; will retry after reconnecting");
                    false
                }
            },
            None => false,
        };
        if !sent && let Ok(mut outbox) = bus.outbox.lock() {
            if outbox.len() >= OUTBOX_MAX {
                outbox.pop_front();
            }
            outbox.push_back((channel, payload));
        }
        sent
    }

    /// False while Redis is unreachable.
    pub fn is_up(&self) -> bool {
        match self {
            Bus::Local => true,
            Bus::Redis(bus) => bus.up.load(Ordering::Acquire),
        }
    }

    /// True when running with Redis.
    pub fn is_redis(&self) -> bool {
        matches!(self, Bus::Redis(_))
    }
}

async fn publish_on(
    conn: &mut MultiplexedConnection,
    channel: &str,
    payload: &str,
) -> anyhow::Result<()> {
    tokio::time::timeout(
        Duration::from_secs(1),
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(conn),
    )
    .await
    .context("publish timed out")??;
    Ok(())
}

type Split = (
    redis::aio::PubSubSink,
    redis::aio::PubSubStream,
    MultiplexedConnection,
);

impl RedisDriver {
    async fn connect(&self, desired: &HashSet<RoomId>) -> anyhow::Result<Split> {
        let limit = Duration::from_secs(2);
        let pubsub = tokio::time::timeout(limit, self.client.get_async_pubsub())
            .await
            .context("connect timed out")??;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(limit))
            .set_response_timeout(Some(limit));
        let conn = tokio::time::timeout(
            limit,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .context("connect timed out")??;
        let (mut sink, stream) = pubsub.split();
        let mut channels: Vec<String> = vec![self.channels.notice()];
        channels.extend(desired.iter().map(|r| self.channels.room(r)));
        tokio::time::timeout(limit, sink.subscribe(&channels))
            .await
            .context("subscribe timed out")??;
        Ok((sink, stream, conn))
    }

    async fn flush_outbox(&self, conn: &mut MultiplexedConnection) {
        let unsent: Vec<(String, String)> = self
            .outbox
            .lock()
            .map(|mut o| o.drain(..).collect())
            .unwrap_or_default();
        if unsent.is_empty() {
            return;
        }
        tracing::info!(
            count = unsent.len(),
            "republishing events that could not be sent"
        );
        for (channel, payload) in unsent {
            if let Err(e) = publish_on(conn, &channel, &payload).await {
                tracing::warn!(error = %e, %channel, "republish failed");
            }
        }
    }

    fn set_up(&self, up: bool, conn: Option<MultiplexedConnection>) {
        if let Ok(mut slot) = self.publisher.lock() {
            *slot = conn;
        }
        self.up.store(up, Ordering::Release);
        self.metrics.redis_up.set(i64::from(up));
    }

    fn handle_message(&self, hub: &Hub, msg: &redis::Msg) {
        let event: BusEvent = match serde_json::from_slice(msg.get_payload_bytes()) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a malformed bus event");
                return;
            }
        };
        match event {
            BusEvent::Comment { origin, comment } => {
                if origin != self.origin {
                    hub.comment(&comment);
                }
            }
            BusEvent::Deleted { origin, room, id } => {
                if origin != self.origin {
                    hub.deleted(&room, &id);
                }
            }
            BusEvent::Notice { origin, text, room } => {
                if origin != self.origin {
                    hub.notice(&text, room.as_ref());
                }
            }
            // Discussion events (edits, reactions, typing, presence) are not relayed yet.
            BusEvent::Edited { .. }
            | BusEvent::Reactions { .. }
            | BusEvent::Typing { .. }
            | BusEvent::Presence { .. } => {}
        }
    }

    /// Runs until `cancel` fires.
    pub async fn run(mut self, hub: Hub, cancel: CancellationToken) {
        let mut desired: HashSet<RoomId> = HashSet::new();
        let mut backoff = Duration::from_millis(100);
        let mut was_up = true;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            match self.connect(&desired).await {
                Ok((mut sink, mut stream, mut conn)) => {
                    // What could not be published while Redis was away goes out first.
                    self.flush_outbox(&mut conn).await;
                    self.set_up(true, Some(conn.clone()));
                    tracing::info!("connected to redis");
                    was_up = true;
                    backoff = Duration::from_millis(100);
                    hub.resync_all();
                    let mut ping = tokio::time::interval(Duration::from_secs(1));
                    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let limit = Duration::from_secs(2);
                    loop {
                        tokio::select! {
                            _ = cancel.cancelled() => {
                                self.set_up(false, None);
                                return;
                            }
                            command = self.commands.recv() => {
                                let ok = match command {
                                    None => return,
                                    Some(Command::Follow(room, ack)) => {
                                        let channel = self.channels.room(&room);
                                        desired.insert(room);
                                        let ok = matches!(tokio::time::timeout(limit, sink.subscribe(&channel)).await, Ok(Ok(())));
                                        let _ = ack.send(());
                                        ok
                                    }
                                    Some(Command::Unfollow(room)) => {
                                        let channel = self.channels.room(&room);
                                        desired.remove(&room);
                                        matches!(tokio::time::timeout(limit, sink.unsubscribe(&channel)).await, Ok(Ok(())))
                                    }
                                };
                                if !ok {
                                    break;
                                }
                            }
                            msg = stream.next() => {
                                match msg {
                                    Some(msg) => self.handle_message(&hub, &msg),
                                    None => break,
                                }
                            }
                            _ = ping.tick() => {
                                let pong = tokio::time::timeout(limit, sink.ping::<redis::Value>()).await;
                                if !matches!(pong, Ok(Ok(_))) {
                                    break;
                                }
                                self.flush_outbox(&mut conn).await;
                            }
                        }
                    }
                    self.set_up(false, None);
                    tracing::warn!("lost the redis connection; reconnecting");
                }
                Err(e) => {
                    self.set_up(false, None);
                    if was_up {
                        tracing::warn!(error = %e, "redis unreachable; retrying");
                        was_up = false;
                    }
                }
            }
            // Wait before the next attempt, keeping track of rooms meanwhile.
            let wait = tokio::time::sleep(backoff);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    _ = cancel.cancelled() => return,
                    command = self.commands.recv() => match command {
                        None => return,
                        Some(Command::Follow(room, ack)) => {
                            desired.insert(room);
                            let _ = ack.send(());
                        }
                        Some(Command::Unfollow(room)) => {
                            desired.remove(&room);
                        }
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}
