//! `/counter`: increment and read view counts.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use prometheus::IntCounter;
use serde::Deserialize;
use service_kit::http_errors::method_not_allowed;
use shared_proto::counter::{CountResponse, CountsResponse, parse_id_list};
use shared_proto::{BookId, ErrorBody};

use crate::error::CounterError;
use crate::store::{CounterStore, StoreError};

/// Shared by every request.
pub struct AppState {
    /// The count store.
    pub store: Arc<CounterStore>,
    /// `counter_backend_errors_total`.
    pub backend_errors: IntCounter,
}

impl AppState {
    fn backend(&self, e: StoreError) -> CounterError {
        self.backend_errors.inc();
        match e {
            StoreError::Unavailable(m) => CounterError::Unavailable(anyhow::anyhow!(m)),
            StoreError::Invalid(m) => CounterError::Internal(anyhow::anyhow!(m)),
        }
    }
}

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/counter")
            .route(web::get().to(get_many))
            .default_service(web::to(method_not_allowed)),
    )
    // An empty id never matches `{bookId}`; answer it as the bad id it is.
    .service(web::resource(["/counter/", "/counter//incr"]).to(empty_id))
    .service(
        web::resource("/counter/{bookId}")
            .route(web::get().to(get_one))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/counter/{bookId}/incr")
            .route(web::post().to(incr))
            .default_service(web::to(method_not_allowed)),
    );
}

fn book_id(raw: &str) -> Result<BookId, CounterError> {
    BookId::parse(raw).map_err(|e| CounterError::BadRequest(format!("invalid bookId: {e}")))
}

fn reject_body(req: &HttpRequest) -> Result<(), CounterError> {
    let has_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0");
    if has_length || req.headers().contains_key(header::TRANSFER_ENCODING) {
        return Err(CounterError::BadRequest(
            "this endpoint takes no request body".to_owned(),
        ));
    }
    Ok(())
}

/// The path's book id, for a request that must carry no body.
fn bodyless_book_id(raw: &str, req: &HttpRequest) -> Result<BookId, CounterError> {
    let id = book_id(raw)?;
    reject_body(req)?;
    Ok(id)
}

async fn empty_id() -> Result<HttpResponse, CounterError> {
    Err(CounterError::BadRequest(
        "invalid bookId: book id must not be empty".to_owned(),
    ))
}

/// `POST /counter/{bookId}/incr`.
#[utoipa::path(
    post,
    path = "/counter/{bookId}/incr",
    tag = "counter",
    params(("bookId" = String, Path, description = "Book id, `^[A-Za-z0-9_-]{1,64}$`")),
    responses(
        (status = 200, description = "The count after the increment", body = CountResponse),
        (status = 400, description = "Invalid book id, or a request body", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "counter.incr", skip(state, req), fields(book_id = %path))]
async fn incr(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, CounterError> {
    let id = bodyless_book_id(&path, &req)?;
    let count = state.store.incr(&id).await.map_err(|e| state.backend(e))?;
    Ok(HttpResponse::Ok().json(CountResponse { book_id: id, count }))
}

/// `GET /counter/{bookId}`.
#[utoipa::path(
    get,
    path = "/counter/{bookId}",
    tag = "counter",
    params(("bookId" = String, Path, description = "Book id, `^[A-Za-z0-9_-]{1,64}$`")),
    responses(
        (status = 200, description = "The count; 0 for a book never counted", body = CountResponse),
        (status = 400, description = "Invalid book id", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "counter.get", skip(state, req), fields(book_id = %path))]
async fn get_one(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, CounterError> {
    let id = bodyless_book_id(&path, &req)?;
    let count = state.store.get(&id).await.map_err(|e| state.backend(e))?;
    Ok(HttpResponse::Ok().json(CountResponse { book_id: id, count }))
}

#[derive(Deserialize)]
struct IdsQuery {
    ids: Option<String>,
}

/// `GET /counter?ids=1,2,abc`.
#[utoipa::path(
    get,
    path = "/counter",
    tag = "counter",
    params(("ids" = String, Query, description = "Comma-separated book ids, 1..500")),
    responses(
        (status = 200, description = "The count of every id asked for", body = CountsResponse),
        (status = 400, description = "ids missing, empty, with an invalid item or more than 500", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "counter.get_many", skip_all)]
async fn get_many(
    state: web::Data<AppState>,
    query: web::Query<IdsQuery>,
    req: HttpRequest,
) -> Result<HttpResponse, CounterError> {
    reject_body(&req)?;
    let raw = query
        .ids
        .as_deref()
        .ok_or_else(|| CounterError::BadRequest("missing query parameter ids".to_owned()))?;
    let ids = parse_id_list(raw).map_err(|e| CounterError::BadRequest(e.to_string()))?;
    let values = state
        .store
        .get_many(&ids)
        .await
        .map_err(|e| state.backend(e))?;
    let counts = ids.into_iter().map(String::from).zip(values).collect();
    Ok(HttpResponse::Ok().json(CountsResponse { counts }))
}
