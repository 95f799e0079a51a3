//! `/api/v1/book`: the catalogue as JSON; writes take multipart (with files) or JSON.

use actix_multipart::Multipart;
use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use shared_proto::library_api::MessageBody;

use crate::auth;
use crate::books::AppState;
use crate::domain::{BookFields, favorite_from_json, parse_book_id};
use crate::error::{ApiResult, Error};
use crate::uploads::{self, BookUpload};

/// Largest JSON body for a book.
const JSON_LIMIT: usize = 256 * 1024;

/// Registers the book routes.
pub fn config(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| {
        web::resource(path).default_service(web::to(service_kit::http_errors::method_not_allowed))
    };
    cfg.service(
        resource("/book")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        resource("/book/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(resource("/book/{id}/download").route(web::get().to(download)));
}

fn book_id(raw: &str) -> Result<u64, Error> {
    parse_book_id(raw).ok_or_else(|| Error::book_not_found(raw))
}

/// Reads a book body: multipart (fields + files) or JSON (fields only).
pub async fn read_book_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<BookUpload, Error> {
    let content_type = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if essence == "multipart/form-data" {
        if let Some(length) = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && length > state.settings.max_upload_bytes.saturating_mul(2)
        {
            return Err(Error::TooLarge(format!(
                "uploads are limited to {} MiB",
                state.settings.max_upload_bytes / (1024 * 1024)
            )));
        }
        let multipart = Multipart::new(req.headers(), payload);
        uploads::read_book_form(multipart, &state.files, state.settings.max_upload_bytes).await
    } else if essence == "application/json" || essence.ends_with("+json") {
        let bytes = read_limited(payload, JSON_LIMIT).await?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")))?;
        Ok(BookUpload {
            fields: fields_from_json(&value)?,
            ..BookUpload::default()
        })
    } else {
        Err(Error::BadRequest(
            "send the book as multipart/form-data or application/json".into(),
        ))
    }
}

async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::TooLarge(format!(
                "JSON bodies are limited to {} KiB",
                limit / 1024
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn fields_from_json(value: &serde_json::Value) -> Result<BookFields, Error> {
    let object = value
        .as_object()
        .ok_or_else(|| Error::BadRequest("the body must be a JSON object".into()))?;
    let text = |key: &str| -> Result<Option<String>, Error> {
        match object.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::BadRequest(format!("{key} must be a string"))),
        }
    };
    Ok(BookFields {
        title: text("title")?,
        authors: text("authors")?,
        description: text("description")?,
        favorite: match object.get("favorite") {
            Some(v) => favorite_from_json(v)?,
            None => None,
        },
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/book",
    tag = "books",
    responses((status = 200, description = "All books, with views when counter answered", body = Vec<shared_proto::library_api::Book>))
)]
async fn list(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.books_with_views().await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/book/{id}",
    tag = "books",
    params(("id" = String, Path, description = "Book id")),
    responses(
        (status = 200, description = "The book", body = shared_proto::library_api::Book),
        (status = 404, description = "No such book", body = shared_proto::ErrorBody),
    )
)]
async fn get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = book_id(&path)?;
    Ok(HttpResponse::Ok().json(state.book_with_views(id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/book",
    tag = "books",
    security(("session" = [])),
    request_body(content(
        (crate::openapi::BookForm = "multipart/form-data"),
        (crate::openapi::BookFields = "application/json"),
    )),
    responses(
        (status = 201, description = "The new book", body = shared_proto::library_api::Book),
        (status = 400, description = "Bad fields", body = shared_proto::ErrorBody),
        (status = 401, description = "Signed out", body = shared_proto::ErrorBody),
        (status = 403, description = "Cross-site request", body = shared_proto::ErrorBody),
        (status = 413, description = "Upload over the limit (50 MiB)", body = shared_proto::ErrorBody),
    )
)]
async fn create(
    req: HttpRequest,
    payload: web::Payload,
    session: Session,
    state: web::Data<AppState>,
) -> ApiResult<HttpResponse> {
    auth::require_user(&session)?;
    let upload = read_book_body(&req, payload, &state).await?;
    let book = state.create_book(upload).await?;
    Ok(HttpResponse::Created().json(book))
}

#[utoipa::path(
    put,
    path = "/api/v1/book/{id}",
    tag = "books",
    security(("session" = [])),
    params(("id" = String, Path, description = "Book id")),
    request_body(content(
        (crate::openapi::BookForm = "multipart/form-data"),
        (crate::openapi::BookFields = "application/json"),
    )),
    responses(
        (status = 200, description = "The changed book; files sent replace the old ones, files not sent stay", body = shared_proto::library_api::Book),
        (status = 400, description = "Bad fields", body = shared_proto::ErrorBody),
        (status = 401, description = "Signed out", body = shared_proto::ErrorBody),
        (status = 403, description = "Cross-site request", body = shared_proto::ErrorBody),
        (status = 404, description = "No such book", body = shared_proto::ErrorBody),
        (status = 413, description = "Upload over the limit (50 MiB)", body = shared_proto::ErrorBody),
    )
)]
async fn update(
    req: HttpRequest,
    payload: web::Payload,
    session: Session,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    auth::require_user(&session)?;
    let id = book_id(&path)?;
    if state.store.get_book(id).await?.is_none() {
        return Err(Error::book_not_found(id));
    }
    let upload = read_book_body(&req, payload, &state).await?;
    let book = state.update_book(id, upload).await?;
    Ok(HttpResponse::Ok().json(book))
}

#[utoipa::path(
    delete,
    path = "/api/v1/book/{id}",
    tag = "books",
    security(("session" = [])),
    params(("id" = String, Path, description = "Book id")),
    responses(
        (status = 200, description = "Deleted", body = shared_proto::library_api::MessageBody),
        (status = 401, description = "Signed out", body = shared_proto::ErrorBody),
        (status = 403, description = "Cross-site request", body = shared_proto::ErrorBody),
        (status = 404, description = "No such book", body = shared_proto::ErrorBody),
    )
)]
async fn delete(
    session: Session,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    auth::require_user(&session)?;
    let id = book_id(&path)?;
    state.delete_book(id).await?;
    Ok(HttpResponse::Ok().json(MessageBody {
        message: format!("book {id} deleted"),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/book/{id}/download",
    tag = "books",
    params(("id" = String, Path, description = "Book id")),
    responses(
        (status = 200, description = "The book file under its original name (Content-Disposition)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such book or no file", body = shared_proto::ErrorBody),
    )
)]
async fn download(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = book_id(&path)?;
    state.download(&req, id).await
}
