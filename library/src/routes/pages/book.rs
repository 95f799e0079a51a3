//! `/view/book/...`: the book list, a book's page, the create/update forms, delete, files.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::{Page, PageBase, comments_context, merge, resource, see_other};
use crate::auth;
use crate::books::AppState;
use crate::domain::{BookFields, parse_book_id};
use crate::error::{Error, PageError};
use crate::routes::api::book::read_book_body;
use crate::templates;

/// Registers the book pages.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/view/book").route(web::get().to(list)))
        .service(resource("/view/book/").route(web::get().to(list)))
        .service(
            resource("/view/book/create")
                .route(web::get().to(create_form))
                .route(web::post().to(create)),
        )
        .service(
            resource("/view/book/update/{id}")
                .route(web::get().to(update_form))
                .route(web::post().to(update)),
        )
        .service(resource("/view/book/delete/{id}").route(web::post().to(delete)))
        .service(resource("/view/book/{id}").route(web::get().to(show)))
        .service(resource("/view/book/{id}/download").route(web::get().to(download)))
        .service(resource("/view/book/{id}/cover").route(web::get().to(cover)));
}

fn book_id(raw: &str) -> Result<u64, PageError> {
    parse_book_id(raw).ok_or_else(|| PageError(Error::book_not_found(raw)))
}

const LOGIN: &str = "/view/user/login";

#[utoipa::path(
    get,
    path = "/view/book",
    tag = "pages",
    operation_id = "page_list",
    summary = "All books",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
    )
)]
async fn list(state: web::Data<AppState>, session: Session) -> Page {
    let base = PageBase::new(&session);
    let books = state.books_with_views().await?;
    let ctx = base.context("All books", json!({ "books": books }));
    Ok(templates::page(StatusCode::OK, "books.html", &ctx))
}

#[utoipa::path(
    get,
    path = "/view/book/{id}",
    tag = "pages",
    operation_id = "page_show",
    summary = "A book, its view count and its comments",
    params(("id" = String, Path, description = "Book id")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 404, description = "HTML 404 page", content_type = "text/html", body = String),
    )
)]
async fn show(state: web::Data<AppState>, session: Session, path: web::Path<String>) -> Page {
    let id = book_id(&path)?;
    let base = PageBase::new(&session);
    let mut book = state
        .store
        .get_book(id)
        .await?
        .ok_or_else(|| PageError(Error::book_not_found(id)))?;
    let room = id.to_string();
    // One increment per page view; counter and gateway are asked at the same time and each
    // has a short timeout, so a slow one cannot hold the page.
    let (views, comments, presence) = tokio::join!(
        state.counter.increment(id),
        state.gateway.room_comments(&room),
        state.gateway.room_presence(&room)
    );
    book.views = views;
    let title = book.title.clone();
    let ctx = merge(
        base.context(&title, json!({ "book": book })),
        comments_context(&state, &room, comments, presence),
    );
    Ok(templates::page(StatusCode::OK, "book.html", &ctx))
}

fn form_page(
    status: StatusCode,
    base: &PageBase,
    title: &str,
    action: &str,
    cancel: &str,
    book: serde_json::Value,
    error: Option<String>,
) -> HttpResponse {
    let ctx = base.context(
        title,
        json!({ "action": action, "cancel": cancel, "book": book, "error": error }),
    );
    templates::page(status, "book_form.html", &ctx)
}

fn fields_json(fields: &BookFields) -> serde_json::Value {
    json!({
        "title": fields.title,
        "authors": fields.authors,
        "description": fields.description,
        "favorite": fields.favorite.unwrap_or(0),
    })
}

fn form_error_status(e: &Error) -> Option<StatusCode> {
    match e {
        Error::BadRequest(_) => Some(StatusCode::BAD_REQUEST),
        Error::TooLarge(_) => Some(StatusCode::PAYLOAD_TOO_LARGE),
        _ => None,
    }
}

#[utoipa::path(
    get,
    path = "/view/book/create",
    tag = "pages",
    operation_id = "page_create_form",
    summary = "The form to add a book",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
    )
)]
async fn create_form(session: Session) -> Page {
    // Signed out, the form still shows (with its submit disabled and a sign-in notice).
    let base = PageBase::new(&session);
    Ok(form_page(
        StatusCode::OK,
        &base,
        "Add a book",
        "/view/book/create",
        "/view/book",
        json!({ "favorite": 0 }),
        None,
    ))
}

#[utoipa::path(
    post,
    path = "/view/book/create",
    tag = "pages",
    operation_id = "page_create",
    summary = "Add a book (multipart form with cover and book file, csrf_token)",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 303, description = "Redirect (after the action, or to sign in)"),
        (status = 403, description = "Wrong CSRF token, or a cross-site request", content_type = "text/html", body = String),
    )
)]
async fn create(
    req: HttpRequest,
    payload: web::Payload,
    session: Session,
    state: web::Data<AppState>,
) -> Page {
    let base = PageBase::new(&session);
    if base.user.is_none() {
        return Ok(see_other(LOGIN));
    }
    let upload = match read_book_body(&req, payload, &state).await {
        Ok(upload) => upload,
        Err(e) => {
            return form_failure(
                &base,
                "Add a book",
                "/view/book/create",
                "/view/book",
                None,
                e,
            );
        }
    };
    if let Err(e) = auth::check_csrf(&session, upload.csrf_token.as_deref()) {
        upload.discard(&state.files).await;
        return Err(e.into());
    }
    let fields = upload.fields.clone();
    match state.create_book(upload).await {
        Ok(book) => Ok(see_other(&format!("/view/book/{}", book.id))),
        Err(e) => form_failure(
            &base,
            "Add a book",
            "/view/book/create",
            "/view/book",
            Some(&fields),
            e,
        ),
    }
}

fn form_failure(
    base: &PageBase,
    title: &str,
    action: &str,
    cancel: &str,
    fields: Option<&BookFields>,
    e: Error,
) -> Page {
    match form_error_status(&e) {
        Some(status) => Ok(form_page(
            status,
            base,
            title,
            action,
            cancel,
            fields
                .map(fields_json)
                .unwrap_or_else(|| json!({ "favorite": 0 })),
            Some(e.to_string()),
        )),
        None => Err(e.into()),
    }
}

#[utoipa::path(
    get,
    path = "/view/book/update/{id}",
    tag = "pages",
    operation_id = "page_update_form",
    summary = "The form to change a book",
    params(("id" = String, Path, description = "Book id")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 404, description = "HTML 404 page", content_type = "text/html", body = String),
    )
)]
async fn update_form(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<String>,
) -> Page {
    let base = PageBase::new(&session);
    let id = book_id(&path)?;
    let book = state
        .store
        .get_book(id)
        .await?
        .ok_or_else(|| PageError(Error::book_not_found(id)))?;
    let title = format!("Edit “{}”", book.title);
    Ok(form_page(
        StatusCode::OK,
        &base,
        &title,
        &format!("/view/book/update/{id}"),
        &format!("/view/book/{id}"),
        serde_json::to_value(&book).unwrap_or_default(),
        None,
    ))
}

#[utoipa::path(
    post,
    path = "/view/book/update/{id}",
    tag = "pages",
    operation_id = "page_update",
    summary = "Change a book (multipart form; files sent replace the old ones)",
    params(("id" = String, Path, description = "Book id")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 303, description = "Redirect (after the action, or to sign in)"),
        (status = 403, description = "Wrong CSRF token, or a cross-site request", content_type = "text/html", body = String),
        (status = 404, description = "HTML 404 page", content_type = "text/html", body = String),
    )
)]
async fn update(
    req: HttpRequest,
    payload: web::Payload,
    session: Session,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Page {
    let base = PageBase::new(&session);
    if base.user.is_none() {
        return Ok(see_other(LOGIN));
    }
    let id = book_id(&path)?;
    let existing = state
        .store
        .get_book(id)
        .await?
        .ok_or_else(|| PageError(Error::book_not_found(id)))?;
    let action = format!("/view/book/update/{id}");
    let cancel = format!("/view/book/{id}");
    let title = format!("Edit “{}”", existing.title);
    let upload = match read_book_body(&req, payload, &state).await {
        Ok(upload) => upload,
        Err(e) => return form_failure(&base, &title, &action, &cancel, None, e),
    };
    if let Err(e) = auth::check_csrf(&session, upload.csrf_token.as_deref()) {
        upload.discard(&state.files).await;
        return Err(e.into());
    }
    let fields = upload.fields.clone();
    match state.update_book(id, upload).await {
        Ok(book) => Ok(see_other(&format!("/view/book/{}", book.id))),
        Err(e) => form_failure(&base, &title, &action, &cancel, Some(&fields), e),
    }
}

/// A form with only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's token.
    #[serde(default)]
    pub csrf_token: String,
}

#[utoipa::path(
    post,
    path = "/view/book/delete/{id}",
    tag = "pages",
    operation_id = "page_delete",
    summary = "Delete a book, then redirect to /view/book",
    params(("id" = String, Path, description = "Book id")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 303, description = "Redirect (after the action, or to sign in)"),
        (status = 403, description = "Wrong CSRF token, or a cross-site request", content_type = "text/html", body = String),
        (status = 404, description = "HTML 404 page", content_type = "text/html", body = String),
    )
)]
async fn delete(
    state: web::Data<AppState>,
    session: Session,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Page {
    if auth::current_user(&session).is_none() {
        return Ok(see_other(LOGIN));
    }
    auth::check_csrf(&session, Some(&form.csrf_token))?;
    let id = book_id(&path)?;
    state.delete_book(id).await?;
    Ok(see_other("/view/book"))
}

#[utoipa::path(
    get,
    path = "/view/book/{id}/download",
    tag = "pages",
    operation_id = "page_download",
    summary = "The book file under its original file name",
    params(("id" = String, Path, description = "Book id")),
    responses(
        (status = 200, description = "The file (Content-Disposition: attachment)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "HTML 404 page", content_type = "text/html", body = String),
    )
)]
async fn download(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Page {
    let id = book_id(&path)?;
    Ok(state.download(&req, id).await?)
}

#[utoipa::path(
    get,
    path = "/view/book/{id}/cover",
    tag = "pages",
    operation_id = "page_cover",
    summary = "The cover image",
    params(("id" = String, Path, description = "Book id")),
    responses(
        (status = 200, description = "The image", content_type = "image/*", body = Vec<u8>),
        (status = 404, description = "HTML 404 page", content_type = "text/html", body = String),
    )
)]
async fn cover(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> Page {
    let id = book_id(&path)?;
    Ok(state.cover(&req, id).await?)
}
