//! `cargo run -p comments-gateway`: the gateway with settings from the environment.

use comments_gateway::{Application, Settings};

/// jemalloc: size classes without a per-block header, naturally aligned (tokio's task cells and
/// I/O registrations are 128-byte aligned: no padding around them, as glibc's memalign leaves).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options: a background thread gives freed pages back to the kernel a second after
/// they were last used (not 10 s, and not only when the process next allocates, which an idle
/// gateway seldom does), so what a burst of upgrades or backlogs used does not stay resident.
/// `_RJEM_MALLOC_CONF` in the environment adds to or overrides these (docs/operations.md).
// SAFETY: jemalloc reads this symbol (`malloc_conf`, with tikv-jemalloc-sys's `_rjem_` prefix)
// once, as a NUL-terminated C string; the slice's first word is the pointer to its bytes, which
// are static, end with NUL and are never written.
#[expect(
    unsafe_code,
    reason = "jemalloc reads its options from an exported C symbol"
)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

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
