//! `/healthz` and `/readyz` answers.

use actix_web::HttpResponse;
use serde_json::json;

/// `GET /healthz`: 200 while the process serves.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz` answer: 200 `{"status":"ok"}`, or 503 naming the stores that do not answer.
pub fn readiness(failing: &[&str]) -> HttpResponse {
    if failing.is_empty() {
        HttpResponse::Ok().json(json!({"status": "ok"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "failing": failing}))
    }
}
