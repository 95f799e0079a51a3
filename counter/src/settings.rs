//! The counter's settings: defaults < optional file < environment.

use std::path::PathBuf;

use serde::Deserialize;
use service_kit::redis_target::RedisTarget;
use service_kit::telemetry::LogFormat;

/// Everything the counter reads from its environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Listen address.
    pub host: String,
    /// Listen port (`PORT`, default 3001).
    pub port: u16,
    /// Redis URL (`REDIS_URL`); unset (and no cluster) means the embedded store.
    pub redis_url: Option<String>,
    /// Redis Cluster seed nodes (`REDIS_CLUSTER_NODES`: comma-separated `host:port` or
    /// `redis://` / `rediss://` URLs), instead of `REDIS_URL`; both set is a start-up error.
    pub redis_cluster_nodes: Option<String>,
    /// Prefix of every Redis key; empty by default so an existing Redis of the original Node
    /// counter keeps its counts (its keys were the bare book ids).
    pub redis_key_prefix: String,
    /// How long one Redis command may take before the request answers 503.
    pub redis_timeout_ms: u64,
    /// Root of embedded storage (`DATA_DIR`); the counter keeps its data in `DATA_DIR/counter`.
    pub data_dir: PathBuf,
    /// `RUST_LOG` filter.
    pub rust_log: Option<String>,
    /// `LOG_FORMAT`: `pretty` or `json`.
    pub log_format: LogFormat,
    /// Actix worker threads; 0 means one per core.
    pub workers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 3001,
            redis_url: None,
            redis_cluster_nodes: None,
            redis_key_prefix: String::new(),
            redis_timeout_ms: 500,
            data_dir: PathBuf::from(".data"),
            rust_log: None,
            log_format: LogFormat::Pretty,
            workers: 0,
        }
    }
}

impl Settings {
    /// Loads the settings of the `counter` service.
    pub fn load() -> Result<Self, service_kit::settings::SettingsError> {
        service_kit::settings::load("counter")
    }

    /// The Redis to use (`None`: embedded); an error when both `REDIS_URL` and
    /// `REDIS_CLUSTER_NODES` are set or a seed node is malformed.
    pub fn redis_target(
        &self,
    ) -> Result<Option<RedisTarget>, service_kit::redis_target::RedisTargetError> {
        RedisTarget::from_settings(
            self.redis_url.as_deref(),
            self.redis_cluster_nodes.as_deref(),
        )
    }

    /// Where the embedded store keeps its file.
    pub fn embedded_dir(&self) -> PathBuf {
        self.data_dir.join("counter")
    }
}
