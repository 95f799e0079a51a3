//! Redis pub/sub: one channel per room with local subscribers, plus the notice channel.
//!
//! The hub's follows and unfollows only edit the *wanted* set (under a std mutex, in the
//! order the hub decided them) and wake the driver; the driver reconciles its subscriptions
//! with that set, so a follow and an unfollow sent around a page reload can never leave a room
//! with local members unsubscribed, and no command queue grows. The driver pings Redis every
//! second, reconnects by itself with backoff, resubscribes the wanted set and tells the
//! listener to catch up from the store. Every Redis command has a deadline.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use shared_proto::RoomId;
use shared_proto::channels::{BusEvent, Channels};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::state::{BusState, PUBLISH_DEADLINE, foreign_event};
use super::{Bus, BusListener, REDIS_DEADLINE};
use crate::metrics::GatewayMetrics;

type Shared = BusState<MultiplexedConnection>;

/// Handle to the Redis bus.
#[derive(Clone)]
pub struct RedisBus {
    shared: Arc<Shared>,
}

/// The Redis driver task, started once the listener exists.
pub struct RedisDriver {
    client: redis::Client,
    shared: Arc<Shared>,
    origin: String,
}

impl RedisBus {
    /// A Redis bus for `url` and its driver (not yet running).
    pub fn new(
        url: &str,
        channels: Channels,
        origin: String,
        metrics: GatewayMetrics,
    ) -> anyhow::Result<(Self, RedisDriver)> {
        let client = redis::Client::open(url).context("parsing REDIS_URL")?;
        let shared = Arc::new(BusState::new(channels, metrics));
        Ok((
            Self {
                shared: shared.clone(),
            },
            RedisDriver {
                client,
                shared,
                origin,
            },
        ))
    }

    /// Rooms currently wanted (for tests).
    pub fn wanted_rooms(&self) -> HashSet<RoomId> {
        self.shared.wanted().rooms.clone()
    }
}

impl Bus for RedisBus {
    fn follow(&self, room: &RoomId) -> oneshot::Receiver<()> {
        self.shared.follow(room)
    }

    fn unfollow(&self, room: &RoomId) {
        self.shared.unfollow(room);
    }

    fn publish(&self, event: BusEvent) -> BoxFuture<'static, bool> {
        self.shared
            .publish(event, |mut conn, channel, payload| async move {
                publish_on(&mut conn, &channel, &payload).await
            })
    }

    fn is_up(&self) -> bool {
        self.shared.is_up()
    }

    fn is_external(&self) -> bool {
        true
    }
}

async fn publish_on(
    conn: &mut MultiplexedConnection,
    channel: &str,
    payload: &str,
) -> anyhow::Result<()> {
    tokio::time::timeout(
        PUBLISH_DEADLINE,
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

/// Why the connected loop ended.
enum Ended {
    Cancelled,
    Lost(&'static str),
}

impl RedisDriver {
    async fn connect(&self) -> anyhow::Result<Split> {
        let pubsub = tokio::time::timeout(REDIS_DEADLINE, self.client.get_async_pubsub())
            .await
            .context("connect timed out")??;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_DEADLINE))
            .set_response_timeout(Some(REDIS_DEADLINE));
        let conn = tokio::time::timeout(
            REDIS_DEADLINE,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .context("connect timed out")??;
        let (sink, stream) = pubsub.split();
        Ok((sink, stream, conn))
    }

    async fn flush_outbox(&self, conn: &mut MultiplexedConnection) -> bool {
        let unsent = self.shared.take_unsent();
        if unsent.is_empty() {
            return true;
        }
        tracing::info!(
            count = unsent.len(),
            "republishing events that could not be sent"
        );
        let mut rest = unsent.into_iter();
        while let Some((channel, payload)) = rest.next() {
            if let Err(e) = publish_on(conn, &channel, &payload).await {
                tracing::warn!(error = %e, %channel, "republish failed");
                self.shared.keep_unsent(channel, payload);
                for (channel, payload) in rest {
                    self.shared.keep_unsent(channel, payload);
                }
                return false;
            }
        }
        true
    }

    fn handle_message(&self, listener: &dyn BusListener, msg: &redis::Msg) {
        if let Some(event) = foreign_event(msg.get_payload_bytes(), &self.origin) {
            listener.event(event);
        }
    }

    /// Subscribes what is wanted and not subscribed, unsubscribes the rest, then confirms the
    /// follows that are now in place.
    async fn reconcile(
        &self,
        sink: &mut redis::aio::PubSubSink,
        subscribed: &mut HashSet<RoomId>,
    ) -> anyhow::Result<()> {
        let (add, remove): (Vec<RoomId>, Vec<RoomId>) = {
            let wanted = self.shared.wanted();
            (
                wanted.rooms.difference(subscribed).cloned().collect(),
                subscribed.difference(&wanted.rooms).cloned().collect(),
            )
        };
        if !add.is_empty() {
            let channels: Vec<String> = add.iter().map(|r| self.shared.channels.room(r)).collect();
            tokio::time::timeout(REDIS_DEADLINE, sink.subscribe(&channels))
                .await
                .context("subscribe timed out")??;
            subscribed.extend(add);
        }
        if !remove.is_empty() {
            let channels: Vec<String> = remove
                .iter()
                .map(|r| self.shared.channels.room(r))
                .collect();
            tokio::time::timeout(REDIS_DEADLINE, sink.unsubscribe(&channels))
                .await
                .context("unsubscribe timed out")??;
            for room in &remove {
                subscribed.remove(room);
            }
        }
        self.shared.wanted().confirm(subscribed);
        Ok(())
    }

    fn went_down(&self) {
        self.shared.went_down();
    }

    async fn connected(
        &self,
        listener: &dyn BusListener,
        cancel: &CancellationToken,
        split: Split,
    ) -> Ended {
        let (mut sink, mut stream, mut conn) = split;
        if tokio::time::timeout(
            REDIS_DEADLINE,
            sink.subscribe(self.shared.channels.notice()),
        )
        .await
        .map_or(true, |r| r.is_err())
        {
            return Ended::Lost("notice subscribe failed");
        }
        // From here on follows wait for their subscription.
        self.shared.wanted().up = true;
        let mut subscribed = HashSet::new();
        if let Err(e) = self.reconcile(&mut sink, &mut subscribed).await {
            tracing::warn!(error = %e, "resubscribing failed");
            return Ended::Lost("resubscribe failed");
        }
        // What could not be published while Redis was away goes out first.
        self.flush_outbox(&mut conn).await;
        self.shared.set_up(true, Some(conn.clone()));
        tracing::info!(rooms = subscribed.len(), "connected to redis");
        listener.reconnected();
        let mut ping = tokio::time::interval(Duration::from_secs(1));
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ended::Cancelled,
                _ = self.shared.changed.notified() => {
                    if let Err(e) = self.reconcile(&mut sink, &mut subscribed).await {
                        tracing::warn!(error = %e, "changing subscriptions failed");
                        return Ended::Lost("subscription change failed");
                    }
                }
                msg = stream.next() => match msg {
                    Some(msg) => self.handle_message(listener, &msg),
                    None => return Ended::Lost("subscriber connection closed"),
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(REDIS_DEADLINE, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return Ended::Lost("ping unanswered");
                    }
                    self.flush_outbox(&mut conn).await;
                }
            }
        }
    }

    /// Runs until `cancel` fires, delivering other instances' events to `listener`.
    pub async fn run(self, listener: Arc<dyn BusListener>, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut was_up = true;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            match self.connect().await {
                Ok(split) => {
                    was_up = true;
                    backoff = Duration::from_millis(100);
                    match self.connected(listener.as_ref(), &cancel, split).await {
                        Ended::Cancelled => {
                            self.went_down();
                            return;
                        }
                        Ended::Lost(why) => {
                            self.went_down();
                            tracing::warn!(why, "lost the redis connection; reconnecting");
                        }
                    }
                }
                Err(e) => {
                    self.went_down();
                    if was_up {
                        tracing::warn!(error = %e, "redis unreachable; retrying");
                        was_up = false;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}
