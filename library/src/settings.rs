//! The library's settings: built-in defaults < optional file < environment.

use std::path::PathBuf;

use serde::Deserialize;
use service_kit::telemetry::LogFormat;

/// Default `AUTH_SESSION_SECRET` for local runs (a warning is logged when it is used).
pub const DEV_SESSION_SECRET: &str = "dev-only-session-secret-change-me";
/// Default `AUTH_TOKEN_SECRET` for local runs (a warning is logged when it is used).
pub const DEV_TOKEN_SECRET: &str = "dev-only-token-secret-change-me";

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
    pub auth_session_secret: Secret,
    /// `AUTH_TOKEN_SECRET`: signs the HS256 tokens the gateway checks.
    pub auth_token_secret: Secret,
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
            auth_session_secret: Secret::new(DEV_SESSION_SECRET),
            auth_token_secret: Secret::new(DEV_TOKEN_SECRET),
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
        let settings = Settings::default();
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
    fn empty_mongo_url_means_embedded() {
        let mut settings = Settings {
            mongo_url: Some(" ".into()),
            ..Settings::default()
        };
        settings.normalise();
        assert!(settings.mongo_url.is_none());
    }
}
