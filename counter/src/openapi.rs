//! The counter's HTTP API as OpenAPI 3.1, generated from the handlers' `#[utoipa::path]`
//! attributes and the bodies' `ToSchema` types; served at `GET /openapi.json`.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::OpenApi;

/// Every route of the counter (the route test checks that nothing registered is missing).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "counter",
        description = "Book view counts. Errors are `{\"error\": {\"code\", \"message\"}}`; see docs/http-api.md."
    ),
    paths(
        crate::routes::counter::incr,
        crate::routes::counter::get_one,
        crate::routes::counter::get_many,
        crate::routes::health::readyz,
        service_kit::health::healthz,
        service_kit::metrics::metrics_endpoint,
        openapi_json,
    ),
    tags(
        (name = "counter", description = "View counts"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| service_kit::openapi::render(&ApiDoc::openapi()));

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This service's HTTP API as OpenAPI 3.1", content_type = "application/json"))
)]
pub async fn openapi_json() -> HttpResponse {
    service_kit::openapi::respond(DOCUMENT.as_str())
}
