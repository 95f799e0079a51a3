//! `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.

use std::time::Duration;

use actix_web::{HttpResponse, web};

use crate::books::AppState;

/// Registers the operational routes.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/healthz")
            .route(web::get().to(service_kit::health::healthz))
            .default_service(web::to(service_kit::http_errors::method_not_allowed)),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(readyz))
            .default_service(web::to(service_kit::http_errors::method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(service_kit::metrics::metrics_endpoint))
            .default_service(web::to(service_kit::http_errors::method_not_allowed)),
    )
    .service(
        web::resource("/openapi.json")
            .route(web::get().to(crate::openapi::openapi_json))
            .default_service(web::to(service_kit::http_errors::method_not_allowed)),
    );
}

/// 200 when the library's own store answers; counter and gateway do not count.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The library's own store answers (counter and the gateway do not count)", body = service_kit::health::HealthStatus),
        (status = 503, description = "The store does not answer; `failing` names it", body = service_kit::health::HealthStatus),
    )
)]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ping = tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await;
    match ping {
        Ok(Ok(())) => service_kit::health::readiness(&[]),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "store not ready");
            service_kit::health::readiness(&[state.store.name()])
        }
        Err(_) => {
            tracing::warn!("store ping timed out");
            service_kit::health::readiness(&[state.store.name()])
        }
    }
}
