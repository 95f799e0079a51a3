//! Where counts live: Redis when `REDIS_URL` is set, a Redis Cluster when
//! `REDIS_CLUSTER_NODES` is, else an embedded redb file.

mod embedded;
mod redis_cluster;
mod redis_store;

pub use embedded::EmbeddedStore;
pub use redis_cluster::ClusterStore;
pub use redis_store::RedisStore;
use service_kit::redis_target::RedisTarget;
use shared_proto::BookId;

use crate::settings::Settings;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend does not answer, or answers too slowly.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with something that is not a count.
    #[error("storage holds an invalid value: {0}")]
    Invalid(String),
}

/// The view-count store.
pub enum CounterStore {
    /// Redis, shared with any other counter instance.
    Redis(RedisStore),
    /// A Redis Cluster, shared with any other counter instance.
    Cluster(Box<ClusterStore>),
    /// A redb file under `DATA_DIR/counter`.
    Embedded(EmbeddedStore),
}

impl CounterStore {
    /// Opens the store the settings ask for. Redis is connected lazily, so the service starts
    /// (and reports not ready) while Redis is down.
    pub fn open(settings: &Settings) -> anyhow::Result<Self> {
        let timeout = std::time::Duration::from_millis(settings.redis_timeout_ms);
        match settings.redis_target()? {
            Some(RedisTarget::Single(url)) => Ok(Self::Redis(RedisStore::open(
                &url,
                &settings.redis_key_prefix,
                timeout,
            )?)),
            Some(RedisTarget::Cluster(nodes)) => {
                let seeds = RedisTarget::Cluster(nodes.clone()).describe();
                Ok(Self::Cluster(Box::new(ClusterStore::open(
                    &nodes,
                    seeds,
                    &settings.redis_key_prefix,
                    timeout,
                )?)))
            }
            None => Ok(Self::Embedded(EmbeddedStore::open(
                &settings.embedded_dir(),
            )?)),
        }
    }

    /// Adds one view and returns the new count; atomic under any concurrency.
    pub async fn incr(&self, id: &BookId) -> Result<u64, StoreError> {
        match self {
            Self::Redis(store) => store.incr(id).await,
            Self::Cluster(store) => store.incr(id).await,
            Self::Embedded(store) => store.incr(id).await,
        }
    }

    /// The count of one book, 0 if never counted.
    pub async fn get(&self, id: &BookId) -> Result<u64, StoreError> {
        Ok(self
            .get_many(std::slice::from_ref(id))
            .await?
            .first()
            .copied()
            .unwrap_or(0))
    }

    /// Counts of several books, in the order asked.
    pub async fn get_many(&self, ids: &[BookId]) -> Result<Vec<u64>, StoreError> {
        match self {
            Self::Redis(store) => store.get_many(ids).await,
            Self::Cluster(store) => store.get_many(ids).await,
            Self::Embedded(store) => store.get_many(ids),
        }
    }

    /// Whether the backend answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Redis(store) => store.ping().await,
            Self::Cluster(store) => store.ping().await,
            Self::Embedded(_) => Ok(()),
        }
    }

    /// The name `/readyz` reports when this store fails.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Redis(_) | Self::Cluster(_) => "redis",
            Self::Embedded(_) => "embedded",
        }
    }

    /// A one-line description for the first log line (no credentials).
    pub fn describe(&self) -> String {
        match self {
            Self::Redis(store) => format!("redis at {}", store.describe()),
            Self::Cluster(store) => store.describe().to_owned(),
            Self::Embedded(store) => format!("embedded store at {}", store.path().display()),
        }
    }
}
