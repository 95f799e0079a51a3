//! `/readyz`: 200 only while the store answers.

use actix_web::{HttpResponse, web};

use super::AppState;

/// `GET /readyz`.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => service_kit::health::readiness(&[]),
        Err(_) => service_kit::health::readiness(&[state.store.name()]),
    }
}
