//! Counts on a Redis Cluster (`REDIS_CLUSTER_NODES`): the same keys as on one Redis
//! (`{prefix}{bookId}`, spread over the shards by slot), `INCR` on the key's shard, `MGET` split
//! by the client per slot and merged back in order.

use std::time::Duration;

use redis::AsyncCommands;
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use shared_proto::BookId;
use tokio::sync::OnceCell;

use super::StoreError;
use super::redis_store::{bounded, counts};

/// A Redis Cluster store; connects on first use (the service starts while the cluster is down)
/// and then follows slot moves and node restarts by itself.
pub struct ClusterStore {
    client: ClusterClient,
    conn: OnceCell<ClusterConnection>,
    prefix: String,
    timeout: Duration,
    seeds: String,
}

impl ClusterStore {
    /// Prepares a client for the seed node URLs; nothing is contacted yet.
    pub fn open(
        nodes: &[String],
        seeds: String,
        prefix: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = ClusterClient::builder(nodes.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .max_retry_wait(200)
            .build()?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            prefix: prefix.to_owned(),
            timeout,
            seeds,
        })
    }

    /// The seed nodes, without credentials.
    pub fn describe(&self) -> &str {
        &self.seeds
    }

    fn key(&self, id: &BookId) -> String {
        format!("{}{}", self.prefix, id)
    }

    async fn connection(&self) -> Result<ClusterConnection, StoreError> {
        let config = ClusterConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout);
        let conn = bounded(
            self.timeout,
            self.conn
                .get_or_try_init(|| self.client.get_async_connection_with_config(config)),
        )
        .await?;
        Ok(conn.clone())
    }

    /// `INCR {prefix}{id}` on the key's shard.
    pub async fn incr(&self, id: &BookId) -> Result<u64, StoreError> {
        let mut conn = self.connection().await?;
        let value: i64 = bounded(self.timeout, conn.incr(self.key(id), 1)).await?;
        u64::try_from(value).map_err(|_| StoreError::Invalid(format!("negative count {value}")))
    }

    /// `MGET` of every id across slots; missing keys count 0.
    pub async fn get_many(&self, ids: &[BookId]) -> Result<Vec<u64>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.connection().await?;
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        let values: Vec<Option<String>> = bounded(
            self.timeout,
            redis::cmd("MGET").arg(&keys).query_async(&mut conn),
        )
        .await?;
        counts(values)
    }

    /// `PING` to the master of every slot range (from `CLUSTER SLOTS`): ready only while
    /// every shard answers. (A plain `PING` goes to the masters the client is connected to,
    /// which leaves out one that went away.)
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let slots = bounded(
            self.timeout,
            conn.route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            ),
        )
        .await?;
        let masters = slot_masters(&slots)?;
        for (host, port) in masters {
            bounded(
                self.timeout,
                conn.route_command(
                    redis::cmd("PING").clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port }),
                ),
            )
            .await?;
        }
        Ok(())
    }
}

/// The distinct `(host, port)` masters of a `CLUSTER SLOTS` reply.
fn slot_masters(reply: &redis::Value) -> Result<Vec<(String, u16)>, StoreError> {
    let invalid = || StoreError::Invalid("unexpected CLUSTER SLOTS reply".into());
    let redis::Value::Array(ranges) = reply else {
        return Err(invalid());
    };
    let mut masters: Vec<(String, u16)> = Vec::new();
    for range in ranges {
        let redis::Value::Array(fields) = range else {
            return Err(invalid());
        };
        let Some(redis::Value::Array(master)) = fields.get(2) else {
            return Err(invalid());
        };
        let host = match master.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => return Err(invalid()),
        };
        let port = match master.get(1) {
            Some(redis::Value::Int(p)) => u16::try_from(*p).map_err(|_| invalid())?,
            _ => return Err(invalid()),
        };
        if !masters.contains(&(host.clone(), port)) {
            masters.push((host, port));
        }
    }
    if masters.is_empty() {
        return Err(StoreError::Unavailable(
            "the cluster has no slots assigned".into(),
        ));
    }
    Ok(masters)
}
