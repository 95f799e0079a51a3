//! `stack`: the whole system in one process for a laptop: counter (3001), library (3002) and
//! comments-gateway (3003), each built from its own crate exactly as its binary builds it.
//! With MONGO_URL / REDIS_URL unset every service uses its embedded store under DATA_DIR and
//! the gateway fans out in-process. It always runs in development mode (`APP_ENV=development`):
//! unset secrets fall back to the development defaults, so it is for laptops, not production.

use serde::Deserialize;
use service_kit::secrets::AppEnv;
use tokio_util::sync::CancellationToken;

/// Ports of the three services (`COUNTER_PORT`, `LIBRARY_PORT`, `GATEWAY_PORT`); the shared
/// variables (`DATA_DIR`, `MONGO_URL`, `REDIS_URL`, secrets, ...) are read by each service.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct StackSettings {
    counter_port: u16,
    library_port: u16,
    gateway_port: u16,
    /// Host name the browser uses to reach the gateway.
    public_host: String,
}

impl Default for StackSettings {
    fn default() -> Self {
        Self {
            counter_port: 3001,
            library_port: 3002,
            gateway_port: 3003,
            public_host: "localhost".to_owned(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let stack: StackSettings = service_kit::settings::load("stack")?;
    let mut counter_settings = counter::Settings::load()?;
    let mut library_settings = library::Settings::load()?;
    let mut gateway_settings = comments_gateway::Settings::load()?;
    service_kit::telemetry::init(
        library_settings.rust_log.as_deref(),
        library_settings.log_format,
    );

    let embedded = library_settings.mongo_url.is_none() && gateway_settings.redis_url.is_none();
    library_settings.app_env = AppEnv::Development;
    gateway_settings.app_env = AppEnv::Development;
    tracing::info!(
        "stack starting in development mode (development secrets accepted; not for production): \
         counter on {}, library on {}, comments-gateway on {}; {}",
        stack.counter_port,
        stack.library_port,
        stack.gateway_port,
        if embedded {
            format!(
                "embedded storage under {} and in-process fan-out (MONGO_URL and REDIS_URL are unset)",
                library_settings.data_dir.display()
            )
        } else {
            "external MongoDB/Redis where MONGO_URL/REDIS_URL are set, embedded elsewhere"
                .to_owned()
        }
    );

    counter_settings.port = stack.counter_port;
    library_settings.port = stack.library_port;
    gateway_settings.port = stack.gateway_port;
    // The library finds the other two where this process runs them, unless told otherwise.
    let defaults = library::Settings::default();
    if library_settings.counter_url == defaults.counter_url {
        library_settings.counter_url = format!("http://127.0.0.1:{}", stack.counter_port);
    }
    if library_settings.gateway_url == defaults.gateway_url {
        library_settings.gateway_url = format!("http://127.0.0.1:{}", stack.gateway_port);
    }
    if library_settings.gateway_public_url == defaults.gateway_public_url {
        library_settings.gateway_public_url =
            format!("ws://{}:{}/ws", stack.public_host, stack.gateway_port);
    }

    let counter_app = counter::Application::build(counter_settings).await?;
    let gateway_app = comments_gateway::Application::build(gateway_settings).await?;
    let library_app = library::Application::build(library_settings).await?;
    tracing::info!(
        "open http://{}:{}/view (counter :{}, gateway :{})",
        stack.public_host,
        library_app.port(),
        counter_app.port(),
        gateway_app.port()
    );

    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        service_kit::shutdown::signal().await;
        signal.cancel();
    });
    let (counter_result, gateway_result, library_result) = tokio::join!(
        counter_app.run_until_stopped(stop.clone().cancelled_owned()),
        gateway_app.run_until_stopped(stop.clone().cancelled_owned()),
        library_app.run_until_stopped(stop.clone().cancelled_owned()),
    );
    counter_result?;
    gateway_result?;
    library_result?;
    tracing::info!("stack stopped");
    Ok(())
}
