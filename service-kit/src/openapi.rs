//! What every service's OpenAPI document shares: rendering it once and answering
//! `GET /openapi.json` with it.

use actix_web::HttpResponse;
use utoipa::openapi::OpenApi;

/// The document as JSON text (render once, e.g. in a `LazyLock`).
pub fn render(document: &OpenApi) -> String {
    document.to_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise the OpenAPI document");
        "{}".to_owned()
    })
}

/// The `GET /openapi.json` answer for a rendered document.
pub fn respond(json: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(json)
}
