//! The library's settings: built-in defaults < optional file < environment.

use std::path::PathBuf;

use serde::Deserialize;
use service_kit::client_addr::{IpNetError, TrustedProxies};
use service_kit::secrets::{AppEnv, SecretError, check_secret};
use service_kit::telemetry::LogFormat;

/// Default `AUTH_SESSION_SECRET`, accepted only with `APP_ENV=development`.
pub const DEV_SESSION_SECRET: &str = "dev-only-session-secret-change-me";
/// Default `AUTH_TOKEN_SECRET`, accepted only with `APP_ENV=development`.
pub const DEV_TOKEN_SECRET: &str = "dev-only-token-secret-change-me";
/// Default `SESSION_MAX_AGE_SECS`: seven days.
pub const DEFAULT_SESSION_MAX_AGE_SECS: u64 = 7 * 24 * 3600;

pub use service_kit::settings::Secret;

/// Everything the library service is configured with. Field names are the lowercased
/// environment names (`PORT` -> `port`, `MONGO_URL` -> `mongo_url`, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address to bind (`HOST`), default `0.0.0.0`.
    pub host: String,
    /// `PORT`, default 3002; 0 picks a free port (tests).
    pub port: u16,
    /// `MONGO_URL` (database in the path, default `library`); unset: embedded store.
    pub mongo_url: Option<String>,
    /// `COUNTER_URL`, the counter service's HTTP URL.
    pub counter_url: String,
    /// `GATEWAY_URL`, the comments gateway's HTTP URL for server-side reads.
    pub gateway_url: String,
    /// `GATEWAY_PUBLIC_URL`, the WebSocket URL the browser opens (put verbatim in pages).
    pub gateway_public_url: String,
    /// `AUTH_SESSION_SECRET`: the session cookie key is derived from it.
    pub auth_session_secret: Option<Secret>,
    /// `AUTH_TOKEN_SECRET`: signs the HS256 tokens the gateway checks.
    pub auth_token_secret: Option<Secret>,
    /// `DATA_DIR`: embedded storage and uploads live under `DATA_DIR/library`.
    pub data_dir: PathBuf,
    /// `DEMO_DIR`: demo data (books.json, users.json, files/), default `data/demo`.
    pub demo_dir: PathBuf,
    /// `STATIC_DIR`: the folder served under `/static/`.
    pub static_dir: PathBuf,
    /// `RUST_LOG` filter.
    pub rust_log: Option<String>,
    /// `LOG_FORMAT`: `pretty` or `json`.
    pub log_format: LogFormat,
    /// `COOKIE_SECURE`: mark the session cookie `Secure` (behind HTTPS).
    pub cookie_secure: bool,
    /// `MAX_UPLOAD_BYTES`: largest accepted upload body, default 50 MiB.
    pub max_upload_bytes: u64,
    /// `COUNTER_TIMEOUT_MS`: how long a page waits for `counter`, default 300.
    pub counter_timeout_ms: u64,
    /// `GATEWAY_TIMEOUT_MS`: how long a page waits for the gateway's comments, default 500.
    pub gateway_timeout_ms: u64,
    /// `TOKEN_TTL_SECS`: lifetime of a gateway token, default one hour.
    pub token_ttl_secs: u64,
    /// `WORKERS`: actix worker threads; 0 means one per core.
    pub workers: usize,
    /// `APP_ENV`: `development` accepts missing or development secrets (with a warning).
    pub app_env: AppEnv,
    /// `TRUSTED_PROXIES`: comma-separated IPs or CIDRs whose `X-Forwarded-For` /
    /// `X-Forwarded-Host` are believed; empty: none.
    pub trusted_proxies: String,
    /// `AUTH_THROTTLE`: `off` turns the sign-in and sign-up throttling off (load tests).
    pub auth_throttle: Switch,
    /// `SESSION_MAX_AGE_SECS`: a session ends this long after sign-in, default seven days.
    pub session_max_age_secs: u64,
}

/// An on/off setting: `off`, `false`, `no` or `0` is off, anything else on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct Switch(pub bool);

impl From<String> for Switch {
    fn from(raw: String) -> Self {
        let raw = raw.trim().to_ascii_lowercase();
        Switch(!matches!(raw.as_str(), "off" | "false" | "no" | "0"))
    }
}

impl Switch {
    /// Whether it is on.
    pub fn is_on(self) -> bool {
        self.0
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 3002,
            mongo_url: None,
            counter_url: "http://127.0.0.1:3001".to_owned(),
            gateway_url: "http://127.0.0.1:3003".to_owned(),
            gateway_public_url: "ws://localhost:3003/ws".to_owned(),
            auth_session_secret: None,
            auth_token_secret: None,
            data_dir: PathBuf::from(".data"),
            demo_dir: PathBuf::from("data/demo"),
            static_dir: default_static_dir(),
            rust_log: None,
            log_format: LogFormat::Pretty,
            cookie_secure: false,
            max_upload_bytes: 50 * 1024 * 1024,
            counter_timeout_ms: 300,
            gateway_timeout_ms: 500,
            token_ttl_secs: 3600,
            workers: 0,
            app_env: AppEnv::Production,
            trusted_proxies: String::new(),
            auth_throttle: Switch(true),
            session_max_age_secs: DEFAULT_SESSION_MAX_AGE_SECS,
        }
    }
}

/// `library/static` of this source tree when it exists (cargo run, tests), else `library/static`
/// relative to the working directory (the workspace root).
fn default_static_dir() -> PathBuf {
    let built_in = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static"));
    if built_in.is_dir() {
        built_in
    } else {
        PathBuf::from("library/static")
    }
}

impl Settings {
    /// Loads the settings: defaults < `config/library.toml` (or `CONFIG_FILE`) < environment.
    pub fn load() -> Result<Self, service_kit::settings::SettingsError> {
        let mut settings: Settings = service_kit::settings::load("library")?;
        settings.normalise();
        Ok(settings)
    }

    /// Empty values count as unset.
    pub fn normalise(&mut self) {
        if self
            .mongo_url
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            self.mongo_url = None;
        }
        if self
            .rust_log
            .as_deref()
            .is_some_and(|u| u.trim().is_empty())
        {
            self.rust_log = None;
        }
    }

    /// The contract's secret rule for `AUTH_SESSION_SECRET` and `AUTH_TOKEN_SECRET`: every
    /// refused variable, each error naming it (empty: both are fine, or development mode).
    pub fn check_secrets(&self) -> Vec<SecretError> {
        [
            ("AUTH_SESSION_SECRET", &self.auth_session_secret),
            ("AUTH_TOKEN_SECRET", &self.auth_token_secret),
        ]
        .into_iter()
        .filter_map(|(name, value)| check_secret(name, value.as_ref(), true, self.app_env).err())
        .collect()
    }

    /// `AUTH_SESSION_SECRET`, or the development default when it is unset (start-up refuses
    /// that outside development mode, see [`Settings::check_secrets`]).
    pub fn session_secret(&self) -> &str {
        secret_or(self.auth_session_secret.as_ref(), DEV_SESSION_SECRET)
    }

    /// `AUTH_TOKEN_SECRET`, or the development default when it is unset.
    pub fn token_secret(&self) -> &str {
        secret_or(self.auth_token_secret.as_ref(), DEV_TOKEN_SECRET)
    }

    /// The parsed `TRUSTED_PROXIES`.
    pub fn trusted_proxies(&self) -> Result<TrustedProxies, IpNetError> {
        TrustedProxies::parse(&self.trusted_proxies)
    }

    /// `DATA_DIR/library`: the embedded store and the uploads.
    pub fn service_dir(&self) -> PathBuf {
        self.data_dir.join("library")
    }

    /// `DATA_DIR/library/uploads`.
    pub fn uploads_dir(&self) -> PathBuf {
        self.service_dir().join("uploads")
    }

    /// What the first log line says about storage: `embedded (...)` or the URLs in use.
    pub fn describe_backends(&self) -> String {
        let store = match &self.mongo_url {
            Some(url) => format!("mongo {}", redact_url(url)),
            None => format!("embedded store at {}", self.service_dir().display()),
        };
        format!(
            "{store}; counter {}; gateway {} (public {})",
            self.counter_url, self.gateway_url, self.gateway_public_url
        )
    }
}

fn secret_or<'a>(value: Option<&'a Secret>, default: &'a str) -> &'a str {
    value
        .map(Secret::expose)
        .filter(|v| !v.is_empty())
        .unwrap_or(default)
}

/// Hides a password in `scheme://user:password@host/...`.
fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
    {
        let user = userinfo.split(':').next().unwrap_or_default();
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let settings = Settings {
            auth_session_secret: Some(Secret::new(DEV_SESSION_SECRET)),
            auth_token_secret: Some(Secret::new(DEV_TOKEN_SECRET)),
            ..Settings::default()
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains(DEV_TOKEN_SECRET));
        assert!(!debug.contains(DEV_SESSION_SECRET));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("mongodb://u:p@h:1/db"), "mongodb://u:***@h:1/db");
        assert_eq!(redact_url("mongodb://h:1/db"), "mongodb://h:1/db");
    }

    #[test]
    fn production_refuses_the_development_secrets() {
        let settings = Settings::default();
        let refused: Vec<String> = settings
            .check_secrets()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[0].contains("AUTH_SESSION_SECRET is not set"));
        assert!(refused[1].contains("AUTH_TOKEN_SECRET is not set"));
        let shipped = Settings {
            auth_session_secret: Some(Secret::new(DEV_SESSION_SECRET)),
            auth_token_secret: Some(Secret::new("t".repeat(40))),
            ..Settings::default()
        };
        let refused = shipped.check_secrets();
        assert_eq!(refused.len(), 1);
        assert!(refused[0].to_string().contains("AUTH_SESSION_SECRET"));
        let dev = Settings {
            app_env: AppEnv::Development,
            ..Settings::default()
        };
        assert!(dev.check_secrets().is_empty());
        assert_eq!(dev.token_secret(), DEV_TOKEN_SECRET);
        let real = Settings {
            auth_session_secret: Some(Secret::new("s".repeat(32))),
            auth_token_secret: Some(Secret::new("t".repeat(40))),
            ..Settings::default()
        };
        assert!(real.check_secrets().is_empty());
    }

    #[test]
    fn switches() {
        for off in ["off", "OFF", "false", "0", "no"] {
            assert!(!Switch::from(off.to_owned()).is_on(), "{off}");
        }
        for on in ["on", "true", "1", ""] {
            assert!(Switch::from(on.to_owned()).is_on(), "{on}");
        }
    }

    #[test]
    fn empty_mongo_url_means_embedded() {
        let mut settings = Settings {
            mongo_url: Some(" ".into()),
            ..Settings::default()
        };
        settings.normalise();
        assert!(settings.mongo_url.is_none());
    }
}
