//! Tracing setup: `RUST_LOG` filter, pretty or JSON output.

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; a second call (tests, the all-in-one launcher) is a no-op.
/// `rust_log` is the `RUST_LOG` value; `None` means `info`.
pub fn init(rust_log: Option<&str>, format: LogFormat) {
    let filter = rust_log
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// For tests: logs only when `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        let filter = std::env::var("RUST_LOG").ok();
        init(
            Some(filter.as_deref().unwrap_or("debug")),
            LogFormat::Pretty,
        );
    }
}
