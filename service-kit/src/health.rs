//! `/healthz` and `/readyz` answers.

use actix_web::HttpResponse;
use serde::Serialize;

/// `{"status": "ok"}`, or `{"status": "unavailable", "failing": [...]}` from `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthStatus {
    /// `ok`, or `unavailable` when a store does not answer.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The stores that do not answer (`redis`, `mongo`, `embedded`); only when unavailable.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["redis"]))]
    pub failing: Vec<String>,
}

/// `GET /healthz`: 200 while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process serves", body = HealthStatus))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthStatus {
        status: "ok",
        failing: Vec::new(),
    })
}

/// `GET /readyz` answer: 200 `{"status":"ok"}`, or 503 naming the stores that do not answer.
pub fn readiness(failing: &[&str]) -> HttpResponse {
    if failing.is_empty() {
        HttpResponse::Ok().json(HealthStatus {
            status: "ok",
            failing: Vec::new(),
        })
    } else {
        HttpResponse::ServiceUnavailable().json(HealthStatus {
            status: "unavailable",
            failing: failing.iter().map(|s| (*s).to_owned()).collect(),
        })
    }
}
