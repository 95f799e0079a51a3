//! `/readyz`: 200 only while the store answers.

use actix_web::{HttpResponse, web};

use service_kit::health::HealthStatus;

use super::AppState;

/// `GET /readyz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The store answers", body = HealthStatus),
        (status = 503, description = "The store does not answer; `failing` names it", body = HealthStatus),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => service_kit::health::readiness(&[]),
        Err(_) => service_kit::health::readiness(&[state.store.name()]),
    }
}
