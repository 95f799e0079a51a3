//! `cargo run -p comments-gateway`: the gateway with settings from the environment.

use comments_gateway::{Application, Settings};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            service_kit::telemetry::init(None, Default::default());
            tracing::error!("comments-gateway cannot start: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    service_kit::telemetry::init(settings.rust_log.as_deref(), settings.log_format);
    if let Err(e) = settings.clone().checked_secrets() {
        tracing::error!("comments-gateway refuses to start: {e}");
        return std::process::ExitCode::FAILURE;
    }
    tracing::info!(
        "comments-gateway starting: {}",
        settings.describe_backends()
    );
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("comments-gateway cannot start: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(port = app.port(), "comments-gateway listening");
    match app.run_until_stopped(service_kit::shutdown::signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("comments-gateway failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
