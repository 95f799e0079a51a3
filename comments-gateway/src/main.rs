//! `cargo run -p comments-gateway`: the gateway with settings from the environment.

use comments_gateway::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    service_kit::telemetry::init(settings.rust_log.as_deref(), settings.log_format);
    tracing::info!(
        "comments-gateway starting: {}",
        settings.describe_backends()
    );
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "comments-gateway listening");
    app.run_until_stopped(service_kit::shutdown::signal()).await
}
