//! The gateway's HTTP API as OpenAPI 3.1, generated from the handlers' `#[utoipa::path]`
//! attributes and the bodies' `ToSchema` types; served at `GET /openapi.json`. The WebSocket
//! protocol behind `GET /ws` is described in docs/protocol.md.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every route of the gateway (a test checks that every registered one is here).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "comments-gateway",
        description = "Comment rooms: the WebSocket endpoint /ws (protocol in docs/protocol.md), \
                       HTTP reads of a room's comments and readers, and the admin notice. Errors \
                       are `{\"error\": {\"code\", \"message\"}}`; see docs/http-api.md."
    ),
    paths(
        crate::ws::ws_entry,
        crate::http::room_comments,
        crate::http::room_comment,
        crate::http::room_presence,
        crate::http::admin_notice,
        crate::http::readyz,
        service_kit::health::healthz,
        service_kit::metrics::metrics_endpoint,
        openapi_json,
    ),
    modifiers(&AdminToken),
    tags(
        (name = "comments", description = "Rooms, comments and readers"),
        (name = "admin", description = "Operator calls (ADMIN_TOKEN)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// The `admin` security scheme: `Authorization: Bearer $ADMIN_TOKEN`.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `{"comments": [...], "more": bool}` from `GET /rooms/{room}/comments`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomComments {
    /// Oldest first.
    pub comments: Vec<shared_proto::Comment>,
    /// Older comments exist.
    pub more: bool,
}

/// `{"comment": {...}}` from `GET /rooms/{room}/comments/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OneComment {
    /// The comment.
    pub comment: shared_proto::Comment,
}

/// A signed-in reader.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceUser {
    /// Username.
    pub id: String,
    /// Full name.
    pub name: String,
}

/// `{"readers", "users"}` from `GET /rooms/{room}/presence`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Presence {
    /// Distinct readers on all instances (a signed-in user once, each anonymous connection once).
    pub readers: u64,
    /// Signed-in readers, at most 50, earliest first.
    pub users: Vec<PresenceUser>,
}

/// The body of `POST /admin/notice`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NoticeRequest {
    /// 1..2000 characters after trimming.
    pub text: String,
    /// Only this room's connections; absent: every connection.
    pub room: Option<String>,
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
