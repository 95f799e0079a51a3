//! The `counter` binary: settings, telemetry, run until SIGTERM.

use counter::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    service_kit::telemetry::init(settings.rust_log.as_deref(), settings.log_format);
    // The contract asks for the storage mode in the very first log line.
    match settings.redis_target() {
        Ok(None) => tracing::info!(
            "counter starting: embedded storage under {} (REDIS_URL and REDIS_CLUSTER_NODES are unset)",
            settings.embedded_dir().display()
        ),
        Ok(Some(target)) => tracing::info!("counter starting: storage on {}", target.describe()),
        Err(e) => {
            tracing::error!("counter cannot start: {e}");
            return Err(e.into());
        }
    }
    let app = Application::build(settings).await?;
    tracing::info!(
        port = app.port(),
        "counter listening, counts in {}",
        app.storage_description()
    );
    app.run_until_stopped(service_kit::shutdown::signal())
        .await?;
    tracing::info!("counter stopped");
    Ok(())
}
