//! `/` and `/view`: the catalogue and the library-wide discussion.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use serde_json::json;
use shared_proto::RoomId;

use super::{Page, PageBase, comments_context, merge, resource};
use crate::books::AppState;
use crate::templates;

/// Registers `/` and `/view`.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(root)))
        .service(resource("/view").route(web::get().to(index)))
        .service(resource("/view/").route(web::get().to(index)));
}

#[utoipa::path(
    get,
    path = "/",
    tag = "pages",
    operation_id = "page_root",
    summary = "Redirect to /view",
    responses((status = 302, description = "Redirect to /view"))
)]
async fn root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((LOCATION, "/view"))
        .finish()
}

#[utoipa::path(
    get,
    path = "/view",
    tag = "pages",
    operation_id = "page_index",
    summary = "The catalogue and the library-wide comments (room index)",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
    )
)]
async fn index(state: web::Data<AppState>, session: Session) -> Page {
    let base = PageBase::new(&session);
    let (books, comments, presence) = tokio::join!(
        state.books_with_views(),
        state.gateway.room_comments(RoomId::INDEX),
        state.gateway.room_presence(RoomId::INDEX)
    );
    let books = books?;
    let ctx = merge(
        base.context("Catalogue", json!({ "books": books })),
        comments_context(&state, RoomId::INDEX, comments, presence),
    );
    Ok(templates::page(StatusCode::OK, "index.html", &ctx))
}
