//! Building and running the gateway: stores, bus, hub, HTTP server and graceful drain.

use std::future::Future;
use std::net::TcpListener;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, middleware, web};
use anyhow::Context;
use governor::{Quota, RateLimiter};
use service_kit::metrics::Metrics;
use service_kit::redis_target::RedisTarget;
use shared_proto::channels::Channels;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing_actix_web::TracingLogger;

use crate::access_log::RedactingRootSpan;
use crate::auth::TokenVerifier;
use crate::bus::{ClusterBus, ClusterDriver, LocalBus, RedisBus, RedisDriver, SharedBus};
use crate::comments::{Comments, PostLimiter};
use crate::discussion::shared::SharedPresence;
use crate::discussion::{Discussions, Listener};
use crate::hub::Hub;
use crate::metrics::GatewayMetrics;
use crate::settings::Settings;
use crate::state::AppState;
use crate::store::{EmbeddedStore, MongoStore, Store};
use crate::transport::{Transport, Upgrader};
use crate::ws::guard::UpgradeGuard;

/// The running gateway.
pub struct Application {
    port: u16,
    server: Server,
    handle: ServerHandle,
    state: web::Data<AppState>,
    background_cancel: CancellationToken,
    background: TaskTracker,
}

fn limiter(settings: &Settings) -> Option<Arc<PostLimiter>> {
    let burst = NonZeroU32::new(settings.post_burst)?;
    let rate = settings.post_rate_per_sec;
    if rate.is_nan() || rate <= 0.0 || !rate.is_finite() {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let quota = Quota::with_period(period)?.allow_burst(burst);
    Some(Arc::new(RateLimiter::keyed(quota)))
}

async fn health_loop(
    store: Store,
    metrics: GatewayMetrics,
    mongo_up: Arc<AtomicBool>,
    cancel: CancellationToken,
) {
    loop {
        let up = store.ping().await;
        if up
            && let Store::Mongo(mongo) = &store
            && !mongo.is_indexed()
            && let Err(e) = mongo.ensure_indexes().await
        {
            tracing::warn!(error = %e, "cannot create indexes yet");
        }
        if up != mongo_up.swap(up, Ordering::AcqRel) {
            if up {
                tracing::info!("storage answers again");
            } else {
                tracing::warn!("storage does not answer");
            }
        }
        metrics.mongo_up.set(i64::from(up));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The driver of the configured bus, started once the hub (its listener) exists.
enum BusDriver {
    Single(Box<RedisDriver>),
    Cluster(Box<ClusterDriver>),
}

impl Application {
    /// Opens the stores, starts the bus and binds the listener (port 0 picks a free one).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = settings.normalised().checked_secrets()?;
        let redis_target = settings.redis_target()?;
        if settings.app_env.is_development() {
            tracing::warn!("APP_ENV=development: development secrets are accepted");
        }
        let guard = UpgradeGuard::new(
            settings.max_conns_per_ip,
            settings.origins(),
            settings.proxies()?,
        );
        let metrics = Metrics::new("comments-gateway");
        let gateway_metrics = GatewayMetrics::new(&metrics.registry);

        let store = match &settings.mongo_url {
            Some(url) => {
                let mongo = MongoStore::connect(url).await?;
                if let Err(e) = mongo.ensure_indexes().await {
                    tracing::warn!(error = %e, "MongoDB does not answer yet; posts wait for the indexes");
                }
                Store::Mongo(mongo)
            }
            None => {
                let dir = PathBuf::from(&settings.data_dir).join("comments-gateway");
                let demo = PathBuf::from(&settings.demo_dir);
                let embedded =
                    tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, &demo))
                        .await
                        .context("opening the embedded store")??;
                Store::Embedded(embedded)
            }
        };
        let mongo_up = Arc::new(AtomicBool::new(true));
        gateway_metrics.mongo_up.set(1);
        gateway_metrics.redis_up.set(1);

        let instance = settings
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("gw-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
        let background = TaskTracker::new();
        let background_cancel = CancellationToken::new();
        let channels = Channels::new(settings.channel_prefix.clone());
        let (bus, driver): (SharedBus, Option<BusDriver>) = match redis_target.clone() {
            Some(RedisTarget::Single(url)) => {
                let (bus, driver) =
                    RedisBus::new(&url, channels, instance.clone(), gateway_metrics.clone())?;
                (Arc::new(bus), Some(BusDriver::Single(Box::new(driver))))
            }
            Some(RedisTarget::Cluster(seeds)) => {
                let (bus, driver) =
                    ClusterBus::new(&seeds, channels, instance.clone(), gateway_metrics.clone())?;
                (Arc::new(bus), Some(BusDriver::Cluster(Box::new(driver))))
            }
            None => (Arc::new(LocalBus), None),
        };
        let hub = Hub::new(
            store.clone(),
            bus.clone(),
            gateway_metrics.clone(),
            settings.client_queue_max,
            background.clone(),
        )
        .coalescing(Duration::from_millis(settings.fanout_coalesce_ms));
        crate::transport::batch_writes(settings.fanout_io_uring);
        let shared_presence = match &redis_target {
            Some(RedisTarget::Single(url)) => Some(SharedPresence::new(
                &redis::Client::open(url.as_str()).context("parsing REDIS_URL")?,
                &settings.channel_prefix,
                &instance,
            )?),
            Some(RedisTarget::Cluster(seeds)) => Some(SharedPresence::on_cluster(
                seeds,
                &settings.channel_prefix,
                &instance,
            )?),
            None => None,
        };
        let discussions = Discussions::new(
            store.clone(),
            hub.clone(),
            bus.clone(),
            instance.clone(),
            gateway_metrics.clone(),
            shared_presence,
            Duration::from_secs(settings.edit_window_secs),
        );
        if let Some(driver) = driver {
            let listener = Arc::new(Listener {
                hub: hub.clone(),
                discussions: discussions.clone(),
            });
            let cancel = background_cancel.clone();
            match driver {
                BusDriver::Single(driver) => background.spawn((*driver).run(listener, cancel)),
                BusDriver::Cluster(driver) => background.spawn((*driver).run(listener, cancel)),
            };
        }
        background.spawn(discussions.clone().run_presence(background_cancel.clone()));
        background.spawn(discussions.clone().run_typing(background_cancel.clone()));
        let comments = Comments::new(
            store.clone(),
            hub.clone(),
            bus.clone(),
            instance.clone(),
            gateway_metrics.clone(),
            limiter(&settings),
        );
        if store.is_mongo() {
            mongo_up.store(store.ping().await, Ordering::Release);
            background.spawn(health_loop(
                store.clone(),
                gateway_metrics.clone(),
                mongo_up.clone(),
                background_cancel.clone(),
            ));
        }

        let state = web::Data::new(AppState {
            hub,
            comments,
            discussions,
            store,
            bus,
            metrics: gateway_metrics.clone(),
            verifier: TokenVerifier::new(settings.auth_token_secret.expose()),
            admin_token: settings.admin_token.clone(),
            guard,
            heartbeat: Duration::from_millis(settings.heartbeat_ms),
            queue_max: settings.client_queue_max,
            instance,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            transport: Arc::new(Transport::new(
                Duration::from_millis(settings.heartbeat_ms),
                settings.client_queue_max,
                shared_proto::ws::MAX_FRAME_BYTES,
                gateway_metrics.clone(),
            )),
            mongo_up,
        });
        state.hub.attach(state.transport.clone());
        {
            let transport = state.transport.clone();
            let cancel = background_cancel.clone();
            background.spawn(async move { transport.run_heartbeat(cancel).await });
        }
        if let Some(limiter) = state.comments.limiter() {
            let cancel = background_cancel.clone();
            background.spawn(async move {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(60)) => limiter.retain_recent(),
                    }
                }
            });
        }

        let listener = TcpListener::bind((settings.host.as_str(), settings.port))
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let metrics = web::Data::new(metrics);
        let app_state = state.clone();
        let upgrader = Upgrader::new(
            crate::ws::Gate::new(state.clone().into_inner()),
            state.transport.clone(),
            state.tracker.clone(),
        );
        // The App serves HTTP; WebSocket upgrades leave actix-http's dispatcher for the transport.
        let server = crate::transport::serve(
            listener,
            settings.workers,
            move || {
                App::new()
                    .wrap(middleware::from_fn(service_kit::metrics::record))
                    .wrap(TracingLogger::<RedactingRootSpan>::new())
                    .app_data(app_state.clone())
                    .app_data(metrics.clone())
                    .configure(|cfg| service_kit::http_errors::extractor_config(cfg, 64 * 1024))
                    .configure(crate::http::config)
                    .default_service(web::to(service_kit::http_errors::not_found))
            },
            upgrader,
        )?;
        let handle = server.handle();
        Ok(Self {
            port,
            server,
            handle,
            state,
            background_cancel,
            background,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then drains: WebSockets close with 1001, in-flight
    /// requests finish, background tasks stop.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            server,
            handle,
            state,
            background_cancel,
            background,
            ..
        } = self;
        let mut server = tokio::spawn(server);
        let early = tokio::select! {
            _ = shutdown => None,
            result = &mut server => Some(result),
        };
        state.shutdown.cancel();
        state.transport.shut_down_all();
        state.tracker.close();
        if tokio::time::timeout(crate::transport::CLOSE_GRACE, state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close in time");
        }
        handle.stop(true).await;
        let result = match early {
            Some(result) => result,
            None => server.await,
        };
        background_cancel.cancel();
        background.close();
        if tokio::time::timeout(Duration::from_secs(5), background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        if let Store::Mongo(mongo) = &state.store {
            mongo.client().clone().shutdown().await;
        }
        tracing::info!("comments-gateway stopped");
        result
            .context("server task panicked")?
            .context("server failed")?;
        Ok(())
    }
}
