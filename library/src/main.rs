//! The library service binary: telemetry, settings, build, run until SIGTERM.

use library::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    service_kit::telemetry::init(settings.rust_log.as_deref(), settings.log_format);
    tracing::info!(
        port = settings.port,
        "library starting: {}",
        settings.describe_backends()
    );
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "library listening");
    app.run_until_stopped(service_kit::shutdown::signal()).await
}
