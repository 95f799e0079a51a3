//! HTTP routes: room history, admin notices, health, readiness and metrics.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use shared_proto::channels::BusEvent;
use shared_proto::ws::page_limit;
use shared_proto::{CommentId, CommentText, CommentTextError, RoomId};
use subtle::ConstantTimeEq;

use shared_proto::ErrorBody;

use crate::error::GatewayError;
use crate::state::AppState;
use crate::store::Slice;

/// Registers the gateway's routes.
pub fn config(cfg: &mut web::ServiceConfig) {
    fn not_allowed() -> actix_web::Route {
        web::to(service_kit::http_errors::method_not_allowed)
    }
    cfg.service(
        web::resource("/ws")
            .route(web::get().to(crate::ws::ws_entry))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/openapi.json")
            .route(web::get().to(crate::openapi::openapi_json))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/rooms/{room}/comments")
            .wrap(public_read())
            .route(web::get().to(room_comments))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/rooms/{room}/comments/{id}")
            .wrap(public_read())
            .route(web::get().to(room_comment))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/rooms/{room}/presence")
            .wrap(public_read())
            .route(web::get().to(room_presence))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/admin/notice")
            .route(web::post().to(admin_notice))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/healthz")
            .route(web::get().to(service_kit::health::healthz))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(readyz))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(service_kit::metrics::metrics_endpoint))
            .default_service(not_allowed()),
    );
}

/// Room reads are public and carry no credentials: any page may read them from the browser
/// (the comments UI quotes a parent that is not on its page).
fn public_read() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new().add((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
}

/// `?before=SEQ&limit=N`.
#[derive(Debug, Deserialize)]
pub struct RoomQuery {
    before: Option<u64>,
    limit: Option<u32>,
}

/// `GET /rooms/{room}/comments`.
#[utoipa::path(
    get,
    path = "/rooms/{room}/comments",
    tag = "comments",
    params(
        ("room" = String, Path, description = "`index` or a book id, `^[A-Za-z0-9_-]{1,64}$`"),
        ("before" = Option<u64>, Query, description = "Only comments with a seq below this"),
        ("limit" = Option<u32>, Query, description = "1..200, default 50"),
    ),
    responses(
        (status = 200, description = "The newest `limit` comments (below `before`), oldest first", body = crate::openapi::RoomComments),
        (status = 400, description = "Invalid room, before or limit", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn room_comments(
    path: web::Path<String>,
    query: web::Query<RoomQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let room =
        RoomId::parse(path.into_inner()).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    let limit = page_limit(query.limit).map_err(GatewayError::BadRequest)?;
    let slice = match query.before {
        Some(before) => Slice::Before { before, limit },
        None => Slice::Latest { limit },
    };
    let page = state.comments.read(&room, slice).await?;
    Ok(HttpResponse::Ok().json(json!({"comments": page.comments, "more": page.more})))
}

/// `GET /rooms/{room}/comments/{id}` → `{"comment"}`; 404 when unknown or deleted.
#[utoipa::path(
    get,
    path = "/rooms/{room}/comments/{id}",
    tag = "comments",
    params(
        ("room" = String, Path, description = "`index` or a book id"),
        ("id" = String, Path, description = "The comment's id"),
    ),
    responses(
        (status = 200, description = "The comment", body = crate::openapi::OneComment),
        (status = 400, description = "Invalid room or id", body = ErrorBody),
        (status = 404, description = "Unknown or deleted", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn room_comment(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let (room, id) = path.into_inner();
    let room = RoomId::parse(room).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    let id = CommentId::parse(id).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    let comment = state
        .store
        .get(&room, id.as_str())
        .await?
        .ok_or_else(|| GatewayError::NotFound("no such comment in this room".into()))?;
    Ok(HttpResponse::Ok().json(json!({ "comment": comment })))
}

/// `GET /rooms/{room}/presence` → `{"readers", "users"}` over all instances.
#[utoipa::path(
    get,
    path = "/rooms/{room}/presence",
    tag = "comments",
    params(("room" = String, Path, description = "`index` or a book id")),
    responses(
        (status = 200, description = "Distinct readers of the room on all instances", body = crate::openapi::Presence),
        (status = 400, description = "Invalid room", body = ErrorBody),
    )
)]
pub(crate) async fn room_presence(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let room =
        RoomId::parse(path.into_inner()).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
    Ok(HttpResponse::Ok().json(state.discussions.presence(&room).await))
}

#[derive(Debug, Deserialize)]
struct NoticeBody {
    text: String,
    #[serde(default)]
    room: Option<RoomId>,
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// `POST /admin/notice` with `Authorization: Bearer $ADMIN_TOKEN`.
#[utoipa::path(
    post,
    path = "/admin/notice",
    tag = "admin",
    request_body = crate::openapi::NoticeRequest,
    security(("admin" = [])),
    responses(
        (status = 202, description = "Sent to every matching connection on every instance"),
        (status = 400, description = "Malformed body or empty text", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token (or the admin API is off)", body = ErrorBody),
        (status = 413, description = "Text over 2000 characters", body = ErrorBody),
    )
)]
pub(crate) async fn admin_notice(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let authorised = match (&state.admin_token, bearer(&req)) {
        (Some(expected), Some(given)) => {
            bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()))
        }
        _ => false,
    };
    if !authorised {
        return Err(GatewayError::Unauthorized(
            "a valid admin token is required".into(),
        ));
    }
    let notice: NoticeBody = serde_json::from_slice(&body)
        .map_err(|e| GatewayError::BadRequest(format!("invalid JSON body: {e}")))?;
    let text = CommentText::parse(&notice.text).map_err(|e| match e {
        CommentTextError::Empty => GatewayError::BadRequest(e.to_string()),
        CommentTextError::TooLong(_) => GatewayError::TooLarge(e.to_string()),
    })?;
    state.hub.notice(text.as_str(), notice.room.as_ref());
    let event = BusEvent::Notice {
        origin: state.instance.clone(),
        text: text.into_inner(),
        room: notice.room,
    };
    state.bus.publish(event).await;
    Ok(HttpResponse::Accepted().json(json!({"status": "accepted"})))
}

/// `GET /readyz`: 503 naming `redis` and/or `mongo` while they do not answer.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Redis and MongoDB (or the embedded stores) answer"),
        (status = 503, description = "`{\"status\": \"unavailable\", \"failing\": [...]}`"),
    )
)]
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut failing = Vec::new();
    if state.bus.is_external() && !state.bus.is_up() {
        failing.push("redis");
    }
    if state.store.is_mongo() && !state.mongo_up.load(std::sync::atomic::Ordering::Acquire) {
        failing.push("mongo");
    }
    service_kit::health::readiness(&failing)
}
