//! The library service binary: telemetry, settings, build, run until SIGTERM.

use library::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    service_kit::telemetry::init(settings.rust_log.as_deref(), settings.log_format);
    let refused = settings.check_secrets();
    if !refused.is_empty() {
        // One line per refused variable, naming it (never its value); then a failing exit.
        for e in &refused {
            tracing::error!("refusing to start: {e}");
        }
        std::process::exit(1);
    }
    if settings.app_env.is_development() {
        tracing::warn!("APP_ENV=development: development secrets are accepted");
    }
    tracing::info!(
        port = settings.port,
        "library starting: {}",
        settings.describe_backends()
    );
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "library listening");
    app.run_until_stopped(service_kit::shutdown::signal()).await
}
