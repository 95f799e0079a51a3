//! The gateway's typed configuration (defaults < optional file < environment).

use serde::Deserialize;
use service_kit::client_addr::TrustedProxies;
use service_kit::redis_target::RedisTarget;
use service_kit::secrets::{AppEnv, check_secret};
use service_kit::telemetry::LogFormat;

pub use service_kit::settings::Secret;

/// Token secret used when `AUTH_TOKEN_SECRET` is unset in development mode.
pub const DEV_TOKEN_SECRET: &str = "dev-only-token-secret-change-me";

/// Settings of the comments gateway; field names are the lowercased environment names.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Interface to bind.
    pub host: String,
    /// HTTP port (0 picks a free one).
    pub port: u16,
    /// Redis URL; unset (and no `REDIS_CLUSTER_NODES`) means in-process fan-out.
    pub redis_url: Option<String>,
    /// Comma-separated seed nodes of a Redis Cluster (`host:port` or `redis://` URLs), instead
    /// of `REDIS_URL`.
    pub redis_cluster_nodes: Option<String>,
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
    /// A room that was written to its connections less than this many milliseconds ago
    /// gathers its next comments until then and writes them together, one write per
    /// connection (0: every comment is written at once).
    pub fanout_coalesce_ms: u64,
    /// Fan-outs write their connections through `io_uring` where the kernel offers it (false:
    /// one `writev` per connection).
    pub fanout_io_uring: bool,
    /// Prefix of the Redis channels.
    pub channel_prefix: String,
    /// This instance's name on the bus (default: a random id).
    pub instance_id: Option<String>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// `APP_ENV`: `development` relaxes the secret rule.
    pub app_env: AppEnv,
    /// Most WebSocket connections per client address (0: no cap).
    pub max_conns_per_ip: usize,
    /// Comma-separated origins allowed to open `/ws` (unset: any).
    pub allowed_origins: Option<String>,
    /// Comma-separated IPs or CIDRs of proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: String,
    /// How long after `createdAt` an author may edit a comment, in seconds.
    pub edit_window_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 3003,
            redis_url: None,
            redis_cluster_nodes: None,
            mongo_url: None,
            data_dir: ".data".into(),
            demo_dir: "data/demo".into(),
            rust_log: None,
            log_format: LogFormat::Pretty,
            auth_token_secret: Secret::default(),
            admin_token: None,
            post_burst: 5,
            post_rate_per_sec: 1.0,
            heartbeat_ms: 15_000,
            client_queue_max: 1024,
            fanout_coalesce_ms: 20,
            fanout_io_uring: true,
            channel_prefix: shared_proto::channels::DEFAULT_CHANNEL_PREFIX.into(),
            instance_id: None,
            workers: 0,
            app_env: AppEnv::Production,
            max_conns_per_ip: 1000,
            allowed_origins: None,
            trusted_proxies: String::new(),
            edit_window_secs: 900,
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
        self.redis_cluster_nodes = clean(self.redis_cluster_nodes);
        self.mongo_url = clean(self.mongo_url);
        self.instance_id = clean(self.instance_id);
        self.allowed_origins = clean(self.allowed_origins);
        self.admin_token = self.admin_token.filter(|s| !s.expose().is_empty());
        if self.heartbeat_ms == 0 {
            self.heartbeat_ms = 15_000;
        }
        if self.client_queue_max == 0 {
            self.client_queue_max = 1024;
        }
        self
    }

    /// Refuses secrets the contract does not allow (unset, short or shipped) outside
    /// development mode; in development an unset token secret becomes [`DEV_TOKEN_SECRET`].
    pub fn checked_secrets(mut self) -> anyhow::Result<Self> {
        let env = self.app_env;
        check_secret(
            "AUTH_TOKEN_SECRET",
            Some(&self.auth_token_secret),
            true,
            env,
        )?;
        check_secret("ADMIN_TOKEN", self.admin_token.as_ref(), false, env)?;
        if self.auth_token_secret.expose().is_empty() {
            self.auth_token_secret = Secret::new(DEV_TOKEN_SECRET);
        }
        Ok(self)
    }

    /// The parsed `TRUSTED_PROXIES`.
    pub fn proxies(&self) -> anyhow::Result<TrustedProxies> {
        Ok(TrustedProxies::parse(&self.trusted_proxies)?)
    }

    /// The parsed `ALLOWED_ORIGINS` (None: every origin may connect).
    pub fn origins(&self) -> Option<Vec<String>> {
        let list: Vec<String> = self
            .allowed_origins
            .as_deref()?
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        (!list.is_empty()).then_some(list)
    }

    /// The Redis the bus runs on (`REDIS_URL` or `REDIS_CLUSTER_NODES`, never both).
    pub fn redis_target(&self) -> anyhow::Result<Option<RedisTarget>> {
        Ok(RedisTarget::from_settings(
            self.redis_url.as_deref(),
            self.redis_cluster_nodes.as_deref(),
        )?)
    }

    /// What the first log line says about storage and fan-out.
    pub fn describe_backends(&self) -> String {
        let store = match &self.mongo_url {
            Some(url) => format!("mongo {}", redact(url)),
            None => format!("embedded store under {}/comments-gateway", self.data_dir),
        };
        let bus = match self.redis_target() {
            Ok(Some(target)) => target.describe(),
            Ok(None) => "embedded in-process fan-out".to_owned(),
            Err(e) => e.to_string(),
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
    fn secrets_are_checked_outside_development() {
        let production = Settings::default();
        let err = production
            .checked_secrets()
            .expect_err("unset secret refused");
        assert!(err.to_string().contains("AUTH_TOKEN_SECRET"));
        let shipped = Settings {
            auth_token_secret: Secret::new(DEV_TOKEN_SECRET),
            ..Settings::default()
        };
        assert!(shipped.checked_secrets().is_err());
        let short_admin = Settings {
            auth_token_secret: Secret::new("k".repeat(32)),
            admin_token: Some(Secret::new("short")),
            ..Settings::default()
        };
        let err = short_admin
            .checked_secrets()
            .expect_err("short admin token");
        assert!(err.to_string().contains("ADMIN_TOKEN"));
        let good = Settings {
            auth_token_secret: Secret::new("k".repeat(32)),
            ..Settings::default()
        };
        assert!(good.checked_secrets().is_ok());
        let dev = Settings {
            app_env: AppEnv::Development,
            ..Settings::default()
        };
        let dev = dev.checked_secrets().expect("development accepts defaults");
        assert_eq!(dev.auth_token_secret.expose(), DEV_TOKEN_SECRET);
    }

    #[test]
    fn origins_parse() {
        let s = Settings {
            allowed_origins: Some("https://a.example, http://B.example:8080/ ,".into()),
            ..Settings::default()
        };
        assert_eq!(
            s.origins(),
            Some(vec![
                "https://a.example".to_owned(),
                "http://b.example:8080".to_owned()
            ])
        );
        assert_eq!(Settings::default().origins(), None);
    }

    #[test]
    fn one_redis_or_a_cluster_not_both() {
        let both = Settings {
            redis_url: Some("redis://h:1".into()),
            redis_cluster_nodes: Some("h:2,h:3".into()),
            ..Settings::default()
        };
        let err = both.redis_target().expect_err("both set");
        assert!(err.to_string().contains("REDIS_CLUSTER_NODES"), "{err}");
        let cluster = Settings {
            redis_cluster_nodes: Some("h:2, redis://:pw@h:3".into()),
            ..Settings::default()
        };
        assert_eq!(
            cluster.redis_target().expect("cluster"),
            Some(RedisTarget::Cluster(vec![
                "redis://h:2".into(),
                "redis://:pw@h:3".into()
            ]))
        );
        assert!(!cluster.describe_backends().contains("pw"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact("mongodb://u:pw@h/db"), "mongodb://u:***@h/db");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
