//! Fan-out between instances, behind a small interface: the hub tells the bus which rooms it
//! follows and publishes events; the bus hands other instances' events to a [`BusListener`].
//! Implementations: [`LocalBus`] (one instance, no Redis), [`RedisBus`] (pub/sub on one
//! Redis) and [`ClusterBus`] (sharded pub/sub on a Redis Cluster).

mod cluster;
mod redis;
mod state;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use shared_proto::RoomId;
use shared_proto::channels::BusEvent;
use tokio::sync::oneshot;

pub use self::cluster::{ClusterBus, ClusterDriver};
pub use self::redis::{RedisBus, RedisDriver};

/// Deadline of every Redis command.
pub const REDIS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the rest of the gateway needs from the bus.
pub trait Bus: Send + Sync + 'static {
    /// Starts following `room`. Called under the hub's lock, so follows and unfollows reach the
    /// bus in the order the hub decided them; must not block. The receiver resolves once the
    /// room's channel is subscribed (or at once while the bus is down: the catch-up after it
    /// comes back covers that case).
    fn follow(&self, room: &RoomId) -> oneshot::Receiver<()>;
    /// Stops following `room` (same calling rules as [`Bus::follow`]).
    fn unfollow(&self, room: &RoomId);
    /// Publishes an event to the other instances; false if it could not be sent now (it is
    /// kept, boundedly, and sent once the bus is back; receivers drop duplicates).
    fn publish(&self, event: BusEvent) -> BoxFuture<'static, bool>;
    /// False while the bus cannot reach the other instances.
    fn is_up(&self) -> bool;
    /// True when other instances can exist (an external bus).
    fn is_external(&self) -> bool;
}

/// Where the bus delivers what other instances published.
pub trait BusListener: Send + Sync + 'static {
    /// An event from another instance.
    fn event(&self, event: BusEvent);
    /// The bus (re)connected: events may have been missed, so every followed room must catch
    /// up from the store.
    fn reconnected(&self);
    /// Only these rooms' channels were resubscribed (their shard of a Redis Cluster came
    /// back): they catch up from the store; the other rooms never stopped.
    fn rooms_reconnected(&self, rooms: &[RoomId]) {
        let _ = rooms;
        self.reconnected();
    }
}

/// One instance, no Redis: local delivery is all there is.
pub struct LocalBus;

impl Bus for LocalBus {
    fn follow(&self, _room: &RoomId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(());
        rx
    }

    fn unfollow(&self, _room: &RoomId) {}

    fn publish(&self, _event: BusEvent) -> BoxFuture<'static, bool> {
        Box::pin(async { true })
    }

    fn is_up(&self) -> bool {
        true
    }

    fn is_external(&self) -> bool {
        false
    }
}

/// A shared bus.
pub type SharedBus = Arc<dyn Bus>;
