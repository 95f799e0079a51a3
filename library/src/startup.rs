//! Building and running the library application.

use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use actix_files::Files;
use actix_session::SessionMiddleware;
use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::storage::CookieSessionStore;
use actix_web::cookie::SameSite;
use actix_web::dev::Server;
use actix_web::middleware::{self, DefaultHeaders};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use service_kit::metrics::Metrics;
use service_kit::telemetry::RedactedRootSpan;
use tracing_actix_web::TracingLogger;

use crate::books::AppState;
use crate::clients::{CounterClient, GatewayClient};
use crate::files::{self, DiskFiles, FileStore, GridFsFiles, ImportSource};
use crate::routes;
use crate::settings::{DEV_SESSION_SECRET, DEV_TOKEN_SECRET, Settings};
use crate::store::{self, DemoData, EmbeddedStore, MongoStore, Store};
use crate::throttle::Throttle;
use crate::{auth, cross_site, session_guard};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "library.sid";

/// The Content-Security-Policy of every answer. `connect-src` names the gateway's HTTP origin
/// (the `http(s)` twin of `GATEWAY_PUBLIC_URL`): `comments.js` reads the parent of a reply that
/// is not on the page from it (`GET /rooms/{room}/comments/{id}`).
pub fn content_security_policy(gateway_public_url: &str) -> String {
    let gateway = gateway_http_origin(gateway_public_url)
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self' ws: wss:{gateway}; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// `ws://host:port/ws` -> `http://host:port` (`wss` -> `https`); `None` for anything else or a
/// host with characters a CSP source cannot carry.
fn gateway_http_origin(url: &str) -> Option<String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("wss://") {
        ("https", rest)
    } else if let Some(rest) = url.strip_prefix("ws://") {
        ("http", rest)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let valid = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    valid.then(|| format!("{scheme}://{authority}"))
}

/// The library service, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Opens the store and the file store (GridFS or the uploads folder) and binds the listener (port 0: any free one).
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        settings.normalise();
        if let Some(refused) = settings.check_secrets().into_iter().next() {
            return Err(refused.into());
        }
        if settings.app_env.is_development() {
            for (name, value, default) in [
                (
                    "AUTH_SESSION_SECRET",
                    settings.session_secret(),
                    DEV_SESSION_SECRET,
                ),
                (
                    "AUTH_TOKEN_SECRET",
                    settings.token_secret(),
                    DEV_TOKEN_SECRET,
                ),
            ] {
                if value == default {
                    tracing::warn!(
                        "{name} is not set: using the development default (APP_ENV=development)"
                    );
                }
            }
        }
        let trusted = settings
            .trusted_proxies()
            .context("invalid TRUSTED_PROXIES")?;
        let throttle = Throttle::new(settings.auth_throttle.is_on(), trusted);
        if !settings.auth_throttle.is_on() {
            tracing::warn!("AUTH_THROTTLE=off: sign-in and sign-up are not throttled");
        }
        let (store, files) = match &settings.mongo_url {
            Some(url) => {
                let store = MongoStore::connect(url).await?;
                let files = GridFsFiles::new(store.database());
                // Uploads of an earlier version and the demo files, moved in the background:
                // MongoDB may be down now, and a big folder must not hold up start-up.
                let sources = vec![
                    ImportSource {
                        dir: settings.uploads_dir(),
                        remove_after: true,
                    },
                    ImportSource {
                        dir: settings.demo_dir.join("files"),
                        remove_after: false,
                    },
                ];
                tokio::spawn(files::import_loop(store.clone(), files.clone(), sources));
                (Store::Mongo(store), FileStore::GridFs(files))
            }
            None => {
                let demo = DemoData::load(&settings.demo_dir).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "demo data unreadable; starting without it");
                    DemoData::default()
                });
                let store = EmbeddedStore::open(&settings.service_dir(), Some(demo)).await?;
                let uploads = settings.uploads_dir();
                let files = DiskFiles::open_dir(uploads.clone())?;
                match store::copy_demo_files(&settings.demo_dir, &uploads) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(files = n, "copied demo files into the uploads folder"),
                    Err(e) => tracing::warn!(error = %e, "cannot copy the demo files"),
                }
                (Store::Embedded(store), FileStore::Disk(files))
            }
        };
        let counter = CounterClient::new(
            &settings.counter_url,
            Duration::from_millis(settings.counter_timeout_ms),
        )?;
        let gateway = GatewayClient::new(
            &settings.gateway_url,
            Duration::from_millis(settings.gateway_timeout_ms),
        )?;
        let key = auth::session_key(settings.session_secret())?;

        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("cannot bind {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let static_dir = settings.static_dir.clone();
        if !static_dir.is_dir() {
            tracing::warn!(dir = %static_dir.display(), "static folder missing; /static/ will answer 404");
        }
        let cookie_secure = settings.cookie_secure;
        let csp = content_security_policy(&settings.gateway_public_url);
        let workers = settings.workers;
        let state = web::Data::new(AppState {
            store,
            counter,
            gateway,
            files,
            settings,
            throttle,
            hashing: auth::Hashing::default(),
        });
        let metrics = web::Data::new(Metrics::new("library"));

        let mut server = HttpServer::new(move || {
            let session = SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
                .cookie_name(SESSION_COOKIE.to_owned())
                .cookie_secure(cookie_secure)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Lax)
                .cookie_content_security(CookieContentSecurity::Private)
                .session_lifecycle(BrowserSession::default())
                .build();
            let headers = DefaultHeaders::new()
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("Referrer-Policy", "same-origin"))
                .add(("X-Frame-Options", "DENY"))
                .add(("Content-Security-Policy", csp.clone()));
            App::new()
                .app_data(state.clone())
                .app_data(metrics.clone())
                .configure(|cfg| service_kit::http_errors::extractor_config(cfg, 64 * 1024))
                .configure(routes::health::config)
                .service(
                    web::scope("/api/v1")
                        .configure(routes::api::config)
                        .default_service(web::to(service_kit::http_errors::not_found)),
                )
                .service(
                    Files::new("/static", &static_dir)
                        .prefer_utf8(true)
                        .default_handler(web::to(routes::pages::not_found)),
                )
                .configure(routes::pages::config)
                .default_service(web::to(routes::pages::not_found))
                .wrap(middleware::from_fn(session_guard::guard))
                .wrap(session)
                .wrap(middleware::from_fn(cross_site::guard))
                .wrap(headers)
                .wrap(middleware::from_fn(service_kit::metrics::record))
                .wrap(TracingLogger::<RedactedRootSpan>::new())
        })
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = self.server;
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => {
                result.context("library server failed")?;
            }
            () = shutdown => {
                tracing::info!("stopping: finishing in-flight requests");
                // The server future must keep being polled while it drains.
                let ((), result) = tokio::join!(handle.stop(true), &mut server);
                result.context("library server failed while stopping")?;
            }
        }
        tracing::info!("library stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_lets_pages_read_the_gateway_over_http() {
        assert_eq!(
            gateway_http_origin("ws://localhost:3003/ws").as_deref(),
            Some("http://localhost:3003")
        );
        assert_eq!(
            gateway_http_origin("wss://comments.example.org/ws?x=1").as_deref(),
            Some("https://comments.example.org")
        );
        assert_eq!(gateway_http_origin("http://x/ws"), None);
        assert_eq!(gateway_http_origin("ws://a b;script-src *"), None);
        let csp = content_security_policy("ws://127.0.0.1:3003/ws");
        assert!(
            csp.contains("connect-src 'self' ws: wss: http://127.0.0.1:3003;"),
            "{csp}"
        );
    }
}
