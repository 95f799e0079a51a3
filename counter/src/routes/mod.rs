//! HTTP routes, one module per resource.

pub(crate) mod counter;
pub(crate) mod health;

use actix_web::web;
use service_kit::http_errors::method_not_allowed;

pub use counter::AppState;

/// Registers every route of the counter.
pub fn config(cfg: &mut web::ServiceConfig) {
    counter::config(cfg);
    cfg.service(
        web::resource("/healthz")
            .route(web::get().to(service_kit::health::healthz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(health::readyz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(service_kit::metrics::metrics_endpoint))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/openapi.json")
            .route(web::get().to(crate::openapi::openapi_json))
            .default_service(web::to(method_not_allowed)),
    );
}
