//! Presence shared through Redis. Each instance keeps one key per room it has readers in,
//! `{prefix}presence:{<room>}:<instance>` holding its [`Snapshot`] with a TTL it refreshes
//! (so an instance that dies without a word drops out when the key expires), and adds its name
//! to the room's index set `{prefix}presence:{<room>}`. Both keys of a room share the hash tag
//! `{<room>}`, so they live on one Redis Cluster shard. Every call has a deadline; a failure
//! leaves the instance with what it knows locally.

use std::collections::HashMap;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use shared_proto::RoomId;

use super::presence::Snapshot;

/// An instance key lives this long without a refresh.
pub const KEY_TTL: Duration = Duration::from_secs(20);
/// The room's index set lives this long after its last write.
const INDEX_TTL: Duration = Duration::from_secs(60);
/// Deadline of one Redis round trip.
const CALL_DEADLINE: Duration = Duration::from_secs(1);

/// Presence keys in one Redis.
#[derive(Clone)]
pub struct SharedPresence {
    conn: ConnectionManager,
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
            conn,
            prefix: prefix.to_owned(),
            instance: instance.to_owned(),
        })
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
        let mut conn = self.conn.clone();
        tokio::time::timeout(CALL_DEADLINE, pipe.query_async::<()>(&mut conn))
            .await
            .map_err(failed)?
            .map_err(failed)
    }

    /// The other instances' readers of `room`. Instances whose key expired are dropped from
    /// the index as they are found.
    pub async fn read_others(&self, room: &RoomId) -> anyhow::Result<HashMap<String, Snapshot>> {
        let index = self.index_key(room);
        let mut conn = self.conn.clone();
        let instances: Vec<String> = tokio::time::timeout(CALL_DEADLINE, conn.smembers(&index))
            .await
            .map_err(failed)?
            .map_err(failed)?;
        let others: Vec<String> = instances
            .into_iter()
            .filter(|i| *i != self.instance)
            .collect();
        let mut found = HashMap::new();
        if others.is_empty() {
            return Ok(found);
        }
        let keys: Vec<String> = others.iter().map(|i| self.instance_key(room, i)).collect();
        let values: Vec<Option<String>> = tokio::time::timeout(
            CALL_DEADLINE,
            redis::cmd("MGET").arg(&keys).query_async(&mut conn),
        )
        .await
        .map_err(failed)?
        .map_err(failed)?;
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
            let _ = tokio::time::timeout(CALL_DEADLINE, conn.srem::<_, _, ()>(&index, gone)).await;
        }
        Ok(found)
    }
}
