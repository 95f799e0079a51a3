//! Redis Cluster fan-out: sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`), one channel per room with
//! local subscribers, each on the shard that owns the channel's slot.
//!
//! The bus runs on redis-rs's cluster connection (RESP3, pushes to a channel; publishes on a
//! second cluster connection that holds no subscriptions): it keeps one
//! connection per master, routes each `SSUBSCRIBE`/`SPUBLISH` to the master that owns the
//! channel's slot (one channel per command, so never CROSSSLOT), follows `MOVED`, reconnects a
//! master that went away and resubscribes its channels there. Every resubscription is answered
//! with an `ssubscribe` push: for a channel that was already live, that push means its shard
//! came back, so that room (and only it) catches up from the store while the other shards'
//! rooms keep delivering live. A room whose subscription failed (its shard is down) is retried
//! every second and catches up once it is subscribed.
//!
//! As in [`super::RedisBus`], the hub's follows and unfollows only edit the wanted set and wake
//! the driver, which reconciles. Admin notices use a sharded channel too, which every instance
//! subscribes: a plain `PUBLISH` on a cluster is copied to every node over the cluster bus,
//! while a sharded channel costs one shard; while that shard is down, notices wait in the
//! publisher's bounded outbox like any other event. `/readyz` names `redis` while no node
//! answers `cluster_state:ok` (the whole cluster cannot serve); one shard down with
//! `cluster-require-full-coverage no` keeps the state ok and the instance ready.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use futures_util::future::{BoxFuture, join_all};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use shared_proto::RoomId;
use shared_proto::channels::{BusEvent, Channels};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::state::{BusState, PUBLISH_DEADLINE, foreign_event};
use super::{Bus, BusListener, REDIS_DEADLINE};
use crate::metrics::GatewayMetrics;

type Shared = BusState<ClusterConnection>;

/// Rooms whose channel is subscribed (an `ssubscribe` push for one of them is a
/// resubscription after its shard came back); shared by the driver and its push task.
#[derive(Default)]
struct Live(Mutex<HashSet<RoomId>>);

impl Live {
    fn get(&self) -> MutexGuard<'_, HashSet<RoomId>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to the Redis Cluster bus.
#[derive(Clone)]
pub struct ClusterBus {
    shared: Arc<Shared>,
}

/// The cluster driver task, started once the listener exists.
pub struct ClusterDriver {
    client: redis::cluster::ClusterClient,
    /// Publishes go through connections of their own, which never hold subscriptions.
    publisher: redis::cluster::ClusterClient,
    pushes: Option<mpsc::UnboundedReceiver<PushInfo>>,
    shared: Arc<Shared>,
    live: Arc<Live>,
    origin: String,
}

impl ClusterBus {
    /// A cluster bus on the seed node URLs and its driver (not yet running).
    pub fn new(
        seeds: &[String],
        channels: Channels,
        origin: String,
        metrics: GatewayMetrics,
    ) -> anyhow::Result<(Self, ClusterDriver)> {
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(push_tx)
            .connection_timeout(REDIS_DEADLINE)
            .response_timeout(REDIS_DEADLINE)
            .retries(2)
            .build()
            .context("parsing REDIS_CLUSTER_NODES")?;
        let publisher = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
            .connection_timeout(REDIS_DEADLINE)
            .response_timeout(REDIS_DEADLINE)
            .retries(2)
            .build()
            .context("parsing REDIS_CLUSTER_NODES")?;
        let shared = Arc::new(BusState::new(channels, metrics));
        Ok((
            Self {
                shared: shared.clone(),
            },
            ClusterDriver {
                client,
                publisher,
                pushes: Some(pushes),
                shared,
                live: Arc::default(),
                origin,
            },
        ))
    }
}

impl Bus for ClusterBus {
    fn follow(&self, room: &RoomId) -> oneshot::Receiver<()> {
        self.shared.follow(room)
    }

    fn unfollow(&self, room: &RoomId) {
        self.shared.unfollow(room);
    }

    fn publish(&self, event: BusEvent) -> BoxFuture<'static, bool> {
        self.shared
            .publish(event, |mut conn, channel, payload| async move {
                spublish(&mut conn, &channel, &payload).await
            })
    }

    fn is_up(&self) -> bool {
        self.shared.is_up()
    }

    fn is_external(&self) -> bool {
        true
    }
}

/// `SPUBLISH` to the master owning the channel's slot (the cluster connection follows MOVED).
async fn spublish(
    conn: &mut ClusterConnection,
    channel: &str,
    payload: &str,
) -> anyhow::Result<()> {
    tokio::time::timeout(
        PUBLISH_DEADLINE,
        redis::cmd("SPUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(conn),
    )
    .await
    .context("spublish timed out")??;
    Ok(())
}

/// Whether some master answers `cluster_state:ok` (asked all at once, the first answer wins:
/// one master being down does not make the cluster unable to serve).
async fn cluster_ok(conn: &mut ClusterConnection) -> bool {
    let routing = RoutingInfo::MultiNode((
        MultipleNodeRoutingInfo::AllMasters,
        Some(ResponsePolicy::OneSucceeded),
    ));
    let mut info = redis::cmd("CLUSTER");
    info.arg("INFO");
    match tokio::time::timeout(REDIS_DEADLINE, conn.route_command(info, routing)).await {
        Ok(Ok(value)) => redis::from_redis_value::<String>(value)
            .is_ok_and(|info| info.contains("cluster_state:ok")),
        _ => false,
    }
}

/// Who this client's connection on every master is: the master's `run_id` (new at each start of
/// the server) and the connection's `CLIENT ID` (which a restarted master hands out from 1 again,
/// so an id alone can repeat the one before the restart). `CLIENT ID` runs on the very
/// connection that holds the subscriptions. None while some master does not answer.
async fn master_connection_ids(
    conn: &mut ClusterConnection,
) -> Option<HashMap<String, MasterConnection>> {
    let routing = || RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
    let mut id = redis::cmd("CLIENT");
    id.arg("ID");
    let mut info = redis::cmd("INFO");
    info.arg("server");
    let ids = tokio::time::timeout(REDIS_DEADLINE, conn.route_command(id, routing()))
        .await
        .ok()?
        .ok()?;
    let runs = tokio::time::timeout(REDIS_DEADLINE, conn.route_command(info, routing()))
        .await
        .ok()?
        .ok()?;
    let (Value::Map(ids), Value::Map(runs)) = (ids, runs) else {
        return None;
    };
    let mut run_ids = HashMap::new();
    for (address, info) in runs {
        let address = redis::from_redis_value::<String>(address).ok()?;
        let info = redis::from_redis_value::<String>(info).ok()?;
        let run_id = info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))?
            .trim()
            .to_owned();
        run_ids.insert(address, run_id);
    }
    let mut masters = HashMap::new();
    for (address, id) in ids {
        let address = redis::from_redis_value::<String>(address).ok()?;
        let Value::Int(id) = id else {
            return None;
        };
        let run_id = run_ids.remove(&address)?;
        masters.insert(address, MasterConnection { run_id, id });
    }
    Some(masters)
}

/// This client's connection on one master, as [`master_connection_ids`] tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MasterConnection {
    run_id: String,
    id: i64,
}

/// The id of this client's connection on the master that owns `channel`'s slot.
async fn owner_connection_id(mut conn: ClusterConnection, channel: String) -> Option<i64> {
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        channel.as_bytes(),
        SlotAddr::Master,
    )));
    let mut id = redis::cmd("CLIENT");
    id.arg("ID");
    match tokio::time::timeout(REDIS_DEADLINE, conn.route_command(id, routing)).await {
        Ok(Ok(Value::Int(id))) => Some(id),
        _ => None,
    }
}

/// Why the connected loop ended.
enum Ended {
    Cancelled,
    Lost(&'static str),
}

/// The driver's view of its subscriptions.
#[derive(Default)]
struct Subscriptions {
    /// Rooms whose channel is subscribed.
    rooms: HashSet<RoomId>,
    /// Rooms whose follow was confirmed while their shard could not subscribe: they catch up
    /// once subscribed.
    missed: HashSet<RoomId>,
    /// Last seen connection of this client on each master: a new one (another id, or the
    /// same id from a restarted master) means its subscriptions there are gone.
    masters: HashMap<String, MasterConnection>,
    /// The notice channel is subscribed.
    notice: bool,
}

impl ClusterDriver {
    /// The subscriber connection (RESP3, pushes) and the publisher connection.
    async fn connect(&self) -> anyhow::Result<(ClusterConnection, ClusterConnection)> {
        let mut conn = tokio::time::timeout(REDIS_DEADLINE * 2, self.client.get_async_connection())
            .await
            .context("connect timed out")??;
        anyhow::ensure!(cluster_ok(&mut conn).await, "the cluster cannot serve");
        let publisher =
            tokio::time::timeout(REDIS_DEADLINE * 2, self.publisher.get_async_connection())
                .await
                .context("connect timed out")??;
        Ok((conn, publisher))
    }

    /// Republishes what could not be sent: each channel's events in order, the channels side
    /// by side, so the events of a shard that is still down (kept for the next round) hold up
    /// no other shard's.
    async fn flush_outbox(&self, conn: &ClusterConnection) {
        let unsent = self.shared.take_unsent();
        if unsent.is_empty() {
            return;
        }
        tracing::info!(
            count = unsent.len(),
            "republishing events that could not be sent"
        );
        let mut by_channel: Vec<(String, Vec<String>)> = Vec::new();
        for (channel, payload) in unsent {
            match by_channel.iter_mut().find(|(c, _)| *c == channel) {
                Some((_, payloads)) => payloads.push(payload),
                None => by_channel.push((channel, vec![payload])),
            }
        }
        let kept = join_all(by_channel.into_iter().map(|(channel, payloads)| {
            let mut conn = conn.clone();
            async move {
                let mut rest = payloads.into_iter();
                while let Some(payload) = rest.next() {
                    if let Err(e) = spublish(&mut conn, &channel, &payload).await {
                        tracing::debug!(error = %e, %channel, "republish failed");
                        let kept: Vec<String> = std::iter::once(payload).chain(rest).collect();
                        return Some((channel, kept));
                    }
                }
                None
            }
        }))
        .await;
        for (channel, payloads) in kept.into_iter().flatten() {
            for payload in payloads {
                self.shared.keep_unsent(channel.clone(), payload);
            }
        }
    }

    /// Subscribes what is wanted and not subscribed (each channel in its own `SSUBSCRIBE`, all
    /// at once so a shard that is down delays no other), unsubscribes the rest, confirms the
    /// follows now in place and those whose shard is down (they catch up once subscribed).
    async fn reconcile(
        &self,
        conn: &ClusterConnection,
        listener: &dyn BusListener,
        subs: &mut Subscriptions,
    ) {
        if !subs.notice {
            let mut conn = conn.clone();
            let notice = self.shared.channels.notice();
            subs.notice = matches!(
                tokio::time::timeout(REDIS_DEADLINE, conn.ssubscribe(&notice)).await,
                Ok(Ok(()))
            );
            if !subs.notice {
                tracing::warn!(
                    "subscribing the notice channel failed (its shard is down?); retrying"
                );
            }
        }
        let (add, remove): (Vec<RoomId>, Vec<RoomId>) = {
            let wanted = self.shared.wanted();
            (
                wanted.rooms.difference(&subs.rooms).cloned().collect(),
                subs.rooms.difference(&wanted.rooms).cloned().collect(),
            )
        };
        let channels = &self.shared.channels;
        let added = join_all(add.into_iter().map(|room| {
            let mut conn = conn.clone();
            let channel = channels.room(&room);
            async move {
                let done = tokio::time::timeout(REDIS_DEADLINE, conn.ssubscribe(&channel)).await;
                (room, matches!(done, Ok(Ok(()))))
            }
        }))
        .await;
        let removed = join_all(remove.into_iter().map(|room| {
            let mut conn = conn.clone();
            let channel = channels.room(&room);
            async move {
                let done = tokio::time::timeout(REDIS_DEADLINE, conn.sunsubscribe(&channel)).await;
                (room, matches!(done, Ok(Ok(()))))
            }
        }))
        .await;
        let mut recovered = Vec::new();
        let mut failed = Vec::new();
        for (room, ok) in added {
            if ok {
                self.live.get().insert(room.clone());
                if subs.missed.remove(&room) {
                    recovered.push(room.clone());
                }
                subs.rooms.insert(room);
            } else {
                failed.push(room);
            }
        }
        for (room, ok) in removed {
            // A failed unsubscribe is retried on the next round.
            if ok {
                self.live.get().remove(&room);
                subs.rooms.remove(&room);
                subs.missed.remove(&room);
            }
        }
        let mut wanted = self.shared.wanted();
        subs.missed.retain(|r| wanted.rooms.contains(r));
        wanted.confirm(&subs.rooms);
        for room in failed {
            if !wanted.rooms.contains(&room) {
                continue;
            }
            tracing::warn!(%room, "subscribing the room's channel failed (its shard is down?); retrying");
            wanted.release(&room);
            subs.missed.insert(room);
        }
        drop(wanted);
        if !recovered.is_empty() {
            listener.rooms_reconnected(&recovered);
        }
    }

    /// Finds masters whose connection is new since the last look (the master restarted, or the
    /// connection to it was re-established): its subscriptions are gone, so the rooms it owns
    /// are subscribed again, one channel per `SSUBSCRIBE` (redis-rs's own resubscription puts a
    /// node's channels in one command, which fails with CROSSSLOT when they span slots), and
    /// catch up from the store. Rooms on the other masters are left alone.
    async fn check_masters(
        &self,
        conn: &mut ClusterConnection,
        listener: &dyn BusListener,
        subs: &mut Subscriptions,
    ) {
        let Some(ids) = master_connection_ids(conn).await else {
            return;
        };
        let renewed: HashSet<i64> = ids
            .iter()
            .filter(|(address, now)| subs.masters.get(*address) != Some(*now))
            .map(|(_, now)| now.id)
            .collect();
        let first_look = subs.masters.is_empty();
        subs.masters = ids;
        if renewed.is_empty() || first_look {
            return;
        }
        let notice_owner = owner_connection_id(conn.clone(), self.shared.channels.notice()).await;
        if notice_owner.is_none_or(|id| renewed.contains(&id)) {
            subs.notice = false;
        }
        let rooms: Vec<RoomId> = subs.rooms.iter().cloned().collect();
        let channels = &self.shared.channels;
        let owners = join_all(rooms.into_iter().map(|room| {
            let channel = channels.room(&room);
            let conn = conn.clone();
            async move { (room, owner_connection_id(conn, channel).await) }
        }))
        .await;
        let moved: Vec<RoomId> = owners
            .into_iter()
            .filter(|(_, owner)| owner.is_none_or(|id| renewed.contains(&id)))
            .map(|(room, _)| room)
            .collect();
        if moved.is_empty() {
            return;
        }
        tracing::info!(
            rooms = moved.len(),
            "a redis cluster master came back; resubscribing its rooms"
        );
        // Dropped from the subscribed set, they are subscribed again by the reconcile below
        // and catch up (as missed) once subscribed.
        for room in moved {
            subs.rooms.remove(&room);
            self.live.get().remove(&room);
            subs.missed.insert(room);
        }
        self.reconcile(conn, listener, subs).await;
    }

    fn went_down(&self, subs: &mut Subscriptions) {
        self.live.get().clear();
        *subs = Subscriptions::default();
        self.shared.went_down();
    }

    async fn connected(
        &self,
        listener: &dyn BusListener,
        cancel: &CancellationToken,
        (mut conn, publisher): (ClusterConnection, ClusterConnection),
        subs: &mut Subscriptions,
    ) -> Ended {
        // From here on follows wait for their subscription.
        self.shared.wanted().up = true;
        self.reconcile(&conn, listener, subs).await;
        self.check_masters(&mut conn, listener, subs).await;
        self.flush_outbox(&publisher).await;
        self.shared.set_up(true, Some(publisher.clone()));
        tracing::info!(rooms = subs.rooms.len(), "connected to the redis cluster");
        listener.reconnected();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ended::Cancelled,
                _ = self.shared.changed.notified() => {
                    self.reconcile(&conn, listener, subs).await;
                }
                _ = tick.tick() => {
                    // PING goes to every master: a master that stopped answering is found and
                    // reconnected by the cluster connection; check_masters then resubscribes
                    // its channels.
                    let _ = tokio::time::timeout(
                        REDIS_DEADLINE,
                        redis::cmd("PING").query_async::<Value>(&mut conn),
                    ).await;
                    if !cluster_ok(&mut conn).await {
                        return Ended::Lost("the cluster cannot serve");
                    }
                    self.check_masters(&mut conn, listener, subs).await;
                    self.reconcile(&conn, listener, subs).await;
                    self.flush_outbox(&publisher).await;
                }
            }
        }
    }

    /// Runs until `cancel` fires, delivering other instances' events to `listener`.
    pub async fn run(mut self, listener: Arc<dyn BusListener>, cancel: CancellationToken) {
        // The pushes run in their own task, so a shard that is slow to answer a subscription
        // never holds up live delivery from the others.
        let pushes = self.pushes.take().map(|pushes| {
            tokio::spawn(handle_pushes(
                pushes,
                self.shared.clone(),
                self.live.clone(),
                listener.clone(),
                self.origin.clone(),
            ))
        });
        let mut subs = Subscriptions::default();
        let mut backoff = Duration::from_millis(100);
        let mut was_up = true;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            match self.connect().await {
                Ok(conn) => {
                    was_up = true;
                    backoff = Duration::from_millis(100);
                    match self
                        .connected(listener.as_ref(), &cancel, conn, &mut subs)
                        .await
                    {
                        Ended::Cancelled => {
                            self.went_down(&mut subs);
                            break;
                        }
                        Ended::Lost(why) => {
                            self.went_down(&mut subs);
                            tracing::warn!(why, "lost the redis cluster; reconnecting");
                        }
                    }
                }
                Err(e) => {
                    self.went_down(&mut subs);
                    if was_up {
                        tracing::warn!(error = %e, "redis cluster unreachable; retrying");
                        was_up = false;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        if let Some(task) = pushes {
            task.abort();
        }
    }
}

/// Hands other instances' events to the listener; an `ssubscribe` push for a channel that was
/// already live means its shard came back and resubscribed it: that room catches up.
async fn handle_pushes(
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    shared: Arc<Shared>,
    live: Arc<Live>,
    listener: Arc<dyn BusListener>,
    origin: String,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::SMessage | PushKind::Message => {
                let Some(payload) = push.data.get(1) else {
                    continue;
                };
                let bytes: &[u8] = match payload {
                    Value::BulkString(b) => b,
                    Value::SimpleString(s) => s.as_bytes(),
                    _ => continue,
                };
                if let Some(event) = foreign_event(bytes, &origin) {
                    listener.event(event);
                }
            }
            PushKind::SSubscribe => {
                let Some(Value::BulkString(channel)) = push.data.first() else {
                    continue;
                };
                let Some(room) = std::str::from_utf8(channel)
                    .ok()
                    .and_then(|c| shared.channels.room_of(c))
                else {
                    continue;
                };
                if live.get().contains(&room) {
                    tracing::info!(%room, "room channel resubscribed after its shard came back; catching up");
                    listener.rooms_reconnected(std::slice::from_ref(&room));
                }
            }
            PushKind::Disconnection => {
                tracing::warn!("a redis cluster node connection dropped; reconnecting it");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus() -> ClusterBus {
        let metrics = GatewayMetrics::new(&prometheus::Registry::new());
        ClusterBus::new(
            &["redis://127.0.0.1:1".to_owned()],
            Channels::default(),
            "me".into(),
            metrics,
        )
        .expect("valid seeds")
        .0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_master_is_a_new_run_whatever_connection_id_it_hands_out() {
        let mut cluster = test_harness::RedisCluster::start(3);
        let seeds = cluster.node_urls();
        let metrics = GatewayMetrics::new(&prometheus::Registry::new());
        let (_bus, driver) =
            ClusterBus::new(&seeds, Channels::default(), "me".into(), metrics).expect("seeds");
        let (mut conn, _publisher) = driver.connect().await.expect("connects");
        let before = master_connection_ids(&mut conn)
            .await
            .expect("every master");
        assert_eq!(before.len(), 3);
        assert!(before.values().all(|m| m.run_id.len() == 40), "{before:?}");
        assert_eq!(
            master_connection_ids(&mut conn).await.expect("again"),
            before,
            "nothing restarted: the same connections"
        );
        cluster.restart_node(1);
        let started = std::time::Instant::now();
        let after = loop {
            let _ = redis::cmd("PING").query_async::<Value>(&mut conn).await;
            if let Some(after) = master_connection_ids(&mut conn).await {
                break after;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "masters answer"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let renewed: Vec<_> = after
            .iter()
            .filter(|(address, now)| before.get(*address) != Some(*now))
            .collect();
        assert_eq!(renewed.len(), 1, "only the restarted master: {renewed:?}");
        let (address, now) = renewed[0];
        assert_ne!(
            before[address].run_id, now.run_id,
            "a new run of the server"
        );
    }

    #[tokio::test]
    async fn follows_resolve_at_once_while_down_and_leave_no_waiter() {
        let bus = bus();
        let room = RoomId::parse("r").expect("room");
        let confirmed = bus.follow(&room);
        tokio::time::timeout(Duration::from_secs(1), confirmed)
            .await
            .expect("resolves while down")
            .expect("sent");
        assert!(bus.shared.wanted().rooms.contains(&room));
        bus.unfollow(&room);
        assert!(bus.shared.wanted().rooms.is_empty());
        assert!(bus.shared.wanted().waiters.is_empty());
        assert!(!bus.is_up());
    }
}
