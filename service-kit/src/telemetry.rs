//! Tracing setup: `RUST_LOG` filter, pretty or JSON output; the request span that never
//! records a `token` query parameter.

use std::borrow::Cow;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use serde::Deserialize;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder};
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

/// Query parameters whose values never reach a span or a log line.
const REDACTED_PARAMS: &[&str] = &["token"];

/// The root span of every HTTP request (`TracingLogger::<RedactedRootSpan>::new()`): the
/// default fields of `tracing-actix-web`, but the target's `token` query value (the gateway's
/// `GET /ws?token=...`) is replaced by `[redacted]`, and the client is the peer address.
pub struct RedactedRootSpan;

impl RootSpanBuilder for RedactedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "default".to_owned());
        let target = request
            .uri()
            .path_and_query()
            .map(|p| redact_target(p.as_str()).into_owned())
            .unwrap_or_default();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = %request.method(),
            http.route = %route,
            http.target = %target,
            http.client_ip = %request.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
            http.user_agent = %request
                .headers()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            http.status_code = tracing::field::Empty,
            otel.name = %format!("{} {}", request.method(), route),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}

/// `path?query` with the values of [`REDACTED_PARAMS`] replaced by `[redacted]`.
pub fn redact_target(target: &str) -> Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return Cow::Borrowed(target);
    };
    let secret = |pair: &str| {
        let name = pair.split('=').next().unwrap_or_default();
        REDACTED_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p))
    };
    if !query.split('&').any(secret) {
        return Cow::Borrowed(target);
    }
    let query: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| {
            if secret(pair) {
                let name = pair.split('=').next().unwrap_or_default();
                Cow::Owned(format!("{name}=[redacted]"))
            } else {
                Cow::Borrowed(pair)
            }
        })
        .collect();
    Cow::Owned(format!("{path}?{}", query.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_target("/ws?token=abc.def.ghi"),
            "/ws?token=[redacted]"
        );
        assert_eq!(
            redact_target("/ws?a=1&TOKEN=x&b=2&token"),
            "/ws?a=1&TOKEN=[redacted]&b=2&token=[redacted]"
        );
        assert_eq!(redact_target("/ws?tokens=1"), "/ws?tokens=1");
        assert_eq!(redact_target("/view/book/1"), "/view/book/1");
    }

    #[actix_web::test]
    async fn the_span_never_holds_the_token() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut b) = self.0.lock() {
                    b.extend_from_slice(bytes);
                }
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
                .with_writer(move || writer.clone())
                .with_ansi(false),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = actix_web::test::init_service(
            actix_web::App::new()
                .wrap(tracing_actix_web::TracingLogger::<RedactedRootSpan>::new())
                .route("/ws", actix_web::web::get().to(|| async { "ok" })),
        )
        .await;
        let request = actix_web::test::TestRequest::get()
            .uri("/ws?token=SECRET-JWT-VALUE&x=1")
            .to_request();
        let response = actix_web::test::call_service(&app, request).await;
        assert!(response.status().is_success());
        drop(response);
        let logged = buffer
            .0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        assert!(logged.contains("token=[redacted]&x=1"), "{logged}");
        assert!(!logged.contains("SECRET-JWT-VALUE"), "{logged}");
    }
}
