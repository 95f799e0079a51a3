//! The library's HTTP API as OpenAPI 3.1, generated from the handlers' `#[utoipa::path]`
//! attributes and the bodies' `ToSchema` types; served at `GET /openapi.json`. The pages are in
//! it too, as `text/html` answers.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every route of the library (the route test checks that nothing registered is missing).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "library",
        description = "The book catalogue: JSON API under /api/v1 (the session cookie authenticates; \
                       reads are open, writes need a signed-in user) and the server-rendered pages. \
                       Errors of the JSON API are `{\"error\": {\"code\", \"message\"}}`; see docs/http-api.md."
    ),
    paths(
        crate::routes::api::user::signup,
        crate::routes::api::user::login,
        crate::routes::api::user::logout,
        crate::routes::api::user::profile,
        crate::routes::api::user::me,
        crate::routes::api::user::token,
        crate::routes::api::book::list,
        crate::routes::api::book::create,
        crate::routes::api::book::get,
        crate::routes::api::book::update,
        crate::routes::api::book::delete,
        crate::routes::api::book::download,
        crate::routes::pages::catalogue::root,
        crate::routes::pages::catalogue::index,
        crate::routes::pages::book::list,
        crate::routes::pages::book::show,
        crate::routes::pages::book::create_form,
        crate::routes::pages::book::create,
        crate::routes::pages::book::update_form,
        crate::routes::pages::book::update,
        crate::routes::pages::book::delete,
        crate::routes::pages::book::download,
        crate::routes::pages::book::cover,
        crate::routes::pages::user::login_form,
        crate::routes::pages::user::login,
        crate::routes::pages::user::signup_form,
        crate::routes::pages::user::signup,
        crate::routes::pages::user::me,
        crate::routes::pages::user::profile,
        crate::routes::pages::user::logout,
        crate::routes::health::readyz,
        service_kit::health::healthz,
        service_kit::metrics::metrics_endpoint,
        openapi_json,
    ),
    modifiers(&SessionCookie),
    tags(
        (name = "users", description = "Accounts, sessions and gateway tokens"),
        (name = "books", description = "The catalogue"),
        (name = "pages", description = "Server-rendered HTML pages"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The `session` security scheme: the session cookie set by login.
struct SessionCookie;

impl Modify for SessionCookie {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::startup::SESSION_COOKIE,
            ))),
        );
    }
}

/// `POST`/`PUT /api/v1/book` as `multipart/form-data` (what the book form sends).
#[derive(ToSchema)]
#[schema(as = BookForm)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)] // a schema only: the handler reads the parts as they stream in
pub struct BookForm {
    /// Title (required on create).
    title: Option<String>,
    /// Authors, free text.
    authors: Option<String>,
    /// Description, free text.
    description: Option<String>,
    /// A number.
    favorite: Option<i64>,
    /// Cover image; on update, sent only to replace the old one.
    #[schema(value_type = Option<String>, format = Binary)]
    file_cover: Option<Vec<u8>>,
    /// Book file, kept under its original name for downloads; on update, sent only to replace it.
    #[schema(value_type = Option<String>, format = Binary)]
    file_book: Option<Vec<u8>>,
}

/// `POST`/`PUT /api/v1/book` as JSON: the same fields without files.
#[derive(ToSchema)]
#[schema(as = BookFields)]
#[allow(dead_code)] // a schema only: the handler reads the JSON object field by field
pub struct BookFields {
    /// Title (required on create).
    title: Option<String>,
    /// Authors, free text.
    authors: Option<String>,
    /// Description, free text.
    description: Option<String>,
    /// A number.
    favorite: Option<i64>,
}

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
