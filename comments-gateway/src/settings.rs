//! The gateway's typed configuration (defaults < optional file < environment).

use serde::Deserialize;
use service_kit::telemetry::LogFormat;

pub use service_kit::settings::Secret;

/// Default token secret for local runs (a warning is logged when it is used).
pub const DEV_TOKEN_SECRET: &str = "dev-only-token-secret-change-me";

/// Settings of the comments gateway; field names are the lowercased environment names.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Interface to bind.
    pub host: String,
    /// HTTP port (0 picks a free one).
    pub port: u16,
    /// Redis URL; unset means in-process fan-out.
    pub redis_url: Option<String>,
    /// MongoDB URL (database in the path, default `library`); unset means the embedded store.
    pub mongo_url: Option<String>,
    /// Root of embedded storage; the gateway keeps its data in `DATA_DIR/comments-gateway`.
    pub data_dir: String,
    /// Demo data loaded into an empty embedded store.
    pub demo_dir: String,
    /// `RUST_LOG`.
    pub rust_log: Option<String>,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// HS256 key of the library's tokens.
    pub auth_token_secret: Secret,
    /// Bearer token of the admin API; unset means every admin call is refused.
    pub admin_token: Option<Secret>,
    /// Posts a user may make at once before the rate applies; 0 turns the limit off.
    pub post_burst: u32,
    /// Sustained posts per second per user; 0 turns the limit off.
    pub post_rate_per_sec: f64,
    /// Server ping interval.
    pub heartbeat_ms: u64,
    /// Outbound messages queued per connection before it is closed with 1013.
    pub client_queue_max: usize,
    /// Prefix of the Redis channels.
    pub channel_prefix: String,
    /// This instance's name on the bus (default: a random id).
    pub instance_id: Option<String>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 3003,
            redis_url: None,
            mongo_url: None,
            data_dir: ".data".into(),
            demo_dir: "data/demo".into(),
            rust_log: None,
            log_format: LogFormat::Pretty,
            auth_token_secret: Secret::new(DEV_TOKEN_SECRET),
            admin_token: None,
            post_burst: 5,
            post_rate_per_sec: 1.0,
            heartbeat_ms: 15_000,
            client_queue_max: 1024,
            channel_prefix: shared_proto::channels::DEFAULT_CHANNEL_PREFIX.into(),
            instance_id: None,
            workers: 0,
        }
    }
}

impl Settings {
    /// Loads the settings from defaults, `config/comments-gateway.toml` and the environment.
    pub fn load() -> anyhow::Result<Self> {
        Ok(service_kit::settings::load::<Settings>("comments-gateway")?)
    }

    /// Treats empty strings as unset (the loader already ignores empty environment values).
    pub(crate) fn normalised(mut self) -> Self {
        fn clean(v: Option<String>) -> Option<String> {
            v.filter(|s| !s.trim().is_empty())
        }
        self.redis_url = clean(self.redis_url);
        self.mongo_url = clean(self.mongo_url);
        self.instance_id = clean(self.instance_id);
        self.admin_token = self.admin_token.filter(|s| !s.expose().is_empty());
        if self.heartbeat_ms == 0 {
            self.heartbeat_ms = 15_000;
        }
        if self.client_queue_max == 0 {
            self.client_queue_max = 1024;
        }
        self
    }

    /// What the first log line says about storage and fan-out.
    pub fn describe_backends(&self) -> String {
        let store = match &self.mongo_url {
            Some(url) => format!("mongo {}", redact(url)),
            None => format!("embedded store under {}/comments-gateway", self.data_dir),
        };
        let bus = match &self.redis_url {
            Some(url) => format!("redis {}", redact(url)),
            None => "embedded in-process fan-out".to_owned(),
        };
        format!("{store}; {bus}")
    }
}

/// A URL with any password replaced.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let settings = Settings {
            admin_token: Some(Secret::new("hunter2")),
            ..Settings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains(DEV_TOKEN_SECRET));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact("mongodb://u:pw@h/db"), "mongodb://u:***@h/db");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
