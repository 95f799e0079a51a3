//! Builds and runs the counter application.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use prometheus::IntCounter;
use service_kit::metrics::Metrics;
use tracing_actix_web::TracingLogger;

use crate::routes::{self, AppState};
use crate::settings::Settings;
use crate::store::CounterStore;

/// A bound, ready-to-run counter service.
pub struct Application {
    port: u16,
    server: Server,
    store: Arc<CounterStore>,
}

impl Application {
    /// Opens the store, binds the listener (port 0 picks a free one) and prepares the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = Arc::new(CounterStore::open(&settings)?);
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let port = listener.local_addr()?.port();

        let metrics = Metrics::new("counter");
        let backend_errors = IntCounter::new(
            "counter_backend_errors_total",
            "Store operations that failed (Redis down, timeouts, invalid values)",
        )?;
        metrics
            .registry
            .register(Box::new(backend_errors.clone()))?;
        let state = web::Data::new(AppState {
            store: Arc::clone(&store),
            backend_errors,
        });
        let metrics = web::Data::new(metrics);

        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(service_kit::metrics::record))
                .wrap(TracingLogger::default())
                .app_data(state.clone())
                .app_data(metrics.clone())
                .configure(|cfg| service_kit::http_errors::extractor_config(cfg, 4096))
                .configure(routes::config)
                .default_service(web::to(service_kit::http_errors::not_found))
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(10);
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        Ok(Self {
            port,
            server: server.run(),
            store,
        })
    }

    /// The port the service listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the service stores its counts in, for the first log line.
    pub fn storage_description(&self) -> String {
        self.store.describe()
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes in-flight requests
    /// and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = self.server;
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result?,
            () = shutdown => {
                tracing::info!("stopping: finishing in-flight requests");
                // The server future must keep being polled while it drains.
                let ((), result) = tokio::join!(handle.stop(true), &mut server);
                result?;
            }
        }
        Ok(())
    }
}
