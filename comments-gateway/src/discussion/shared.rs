//! Presence shared through Redis. Each instance keeps one key per room it has readers in,
//! `{prefix}presence:{<room>}:<instance>` holding its [`Snapshot`] with a TTL it refreshes
//! (so an instance that dies without a word drops out when the key expires), and adds its name
//! to the room's index set `{prefix}presence:{<room>}`. Both keys of a room share the hash tag
//! `{<room>}`, so they live on one Redis Cluster shard and every call below touches one slot,
//! on one Redis and on a cluster alike. Every call has a deadline; a failure leaves the
//! instance with what it knows locally.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, Pipeline};
use shared_proto::RoomId;
use tokio::sync::Mutex;

use super::presence::Snapshot;

/// An instance key lives this long without a refresh.
pub const KEY_TTL: Duration = Duration::from_secs(20);
/// The room's index set lives this long after its last write.
const INDEX_TTL: Duration = Duration::from_secs(60);
/// Deadline of one Redis round trip.
const CALL_DEADLINE: Duration = Duration::from_secs(1);

/// Where the presence keys live.
#[derive(Clone)]
enum Conn {
    /// One Redis (`REDIS_URL`): a connection manager that reconnects by itself.
    Single(ConnectionManager),
    /// A Redis Cluster (`REDIS_CLUSTER_NODES`): connected on first use (and again after a
    /// failed connect); the cluster connection follows slot moves by itself.
    Cluster(std::sync::Arc<ClusterConn>),
}

struct ClusterConn {
    client: ClusterClient,
    conn: Mutex<Option<ClusterConnection>>,
}

impl ClusterConn {
    async fn get(&self) -> anyhow::Result<ClusterConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = tokio::time::timeout(CALL_DEADLINE * 2, self.client.get_async_connection())
            .await
            .map_err(failed)?
            .map_err(failed)?;
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// Presence keys in one Redis or a Redis Cluster.
#[derive(Clone)]
pub struct SharedPresence {
    conn: Conn,
    prefix: String,
    instance: String,
}

fn failed(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("presence in redis: {e}")
}

impl SharedPresence {
    /// Presence in the Redis at `client` (connects lazily, reconnects by itself).
    pub fn new(client: &redis::Client, prefix: &str, instance: &str) -> anyhow::Result<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_DEADLINE))
            .set_response_timeout(Some(CALL_DEADLINE))
            .set_number_of_retries(1);
        let conn = client.get_connection_manager_lazy(config).map_err(failed)?;
        Ok(Self {
            conn: Conn::Single(conn),
            prefix: prefix.to_owned(),
            instance: instance.to_owned(),
        })
    }

    /// Presence in the Redis Cluster of the seed node URLs `seeds` (connects on first use).
    pub fn on_cluster(seeds: &[String], prefix: &str, instance: &str) -> anyhow::Result<Self> {
        let client = redis::cluster::ClusterClientBuilder::new(seeds.iter().map(String::as_str))
            .connection_timeout(CALL_DEADLINE)
            .response_timeout(CALL_DEADLINE)
            .retries(1)
            .build()
            .map_err(failed)?;
        Ok(Self {
            conn: Conn::Cluster(std::sync::Arc::new(ClusterConn {
                client,
                conn: Mutex::new(None),
            })),
            prefix: prefix.to_owned(),
            instance: instance.to_owned(),
        })
    }

    /// Runs one command with the call deadline.
    async fn command<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> anyhow::Result<T> {
        let reply = match &self.conn {
            Conn::Single(conn) => {
                let mut conn = conn.clone();
                tokio::time::timeout(CALL_DEADLINE, cmd.query_async(&mut conn)).await
            }
            Conn::Cluster(cluster) => {
                let mut conn = cluster.get().await?;
                tokio::time::timeout(CALL_DEADLINE, cmd.query_async(&mut conn)).await
            }
        };
        reply.map_err(failed)?.map_err(failed)
    }

    /// Runs one pipeline (all its keys in one slot) with the call deadline.
    async fn pipeline(&self, pipe: &Pipeline) -> anyhow::Result<()> {
        let reply = match &self.conn {
            Conn::Single(conn) => {
                let mut conn = conn.clone();
                tokio::time::timeout(CALL_DEADLINE, pipe.query_async::<()>(&mut conn)).await
            }
            Conn::Cluster(cluster) => {
                let mut conn = cluster.get().await?;
                tokio::time::timeout(CALL_DEADLINE, pipe.query_async::<()>(&mut conn)).await
            }
        };
        reply.map_err(failed)?.map_err(failed)
    }

    fn index_key(&self, room: &RoomId) -> String {
        format!("{}presence:{{{}}}", self.prefix, room)
    }

    fn instance_key(&self, room: &RoomId, instance: &str) -> String {
        format!("{}presence:{{{}}}:{}", self.prefix, room, instance)
    }

    /// Stores this instance's readers of `room` (an empty snapshot removes them).
    pub async fn write(&self, room: &RoomId, snapshot: &Snapshot) -> anyhow::Result<()> {
        let index = self.index_key(room);
        let key = self.instance_key(room, &self.instance);
        let mut pipe = redis::pipe();
        if snapshot.anon == 0 && snapshot.users.is_empty() {
            pipe.del(&key)
                .ignore()
                .srem(&index, &self.instance)
                .ignore();
        } else {
            let value = serde_json::to_string(snapshot).map_err(failed)?;
            pipe.pset_ex(&key, value, KEY_TTL.as_millis() as u64)
                .ignore()
                .sadd(&index, &self.instance)
                .ignore()
                .pexpire(&index, INDEX_TTL.as_millis() as i64)
                .ignore();
        }
        self.pipeline(&pipe).await
    }

    /// The other instances' readers of `room`. Instances whose key expired are dropped from
    /// the index as they are found.
    pub async fn read_others(&self, room: &RoomId) -> anyhow::Result<HashMap<String, Snapshot>> {
        let index = self.index_key(room);
        let instances: Vec<String> = self.command(redis::cmd("SMEMBERS").arg(&index)).await?;
        let others: Vec<String> = instances
            .into_iter()
            .filter(|i| *i != self.instance)
            .collect();
        let mut found = HashMap::new();
        if others.is_empty() {
            return Ok(found);
        }
        let keys: Vec<String> = others.iter().map(|i| self.instance_key(room, i)).collect();
        let values: Vec<Option<String>> = self.command(redis::cmd("MGET").arg(&keys)).await?;
        let mut gone = Vec::new();
        for (instance, value) in others.into_iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<Snapshot>(&v).ok()) {
                Some(snapshot) => {
                    found.insert(instance, snapshot);
                }
                None => gone.push(instance),
            }
        }
        if !gone.is_empty() {
            // Best effort: the next reader tries again.
            let _ = self
                .command::<()>(redis::cmd("SREM").arg(&index).arg(gone))
                .await;
        }
        Ok(found)
    }
}
