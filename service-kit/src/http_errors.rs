//! JSON error answers for HTTP: `{"error": {"code", "message"}}` for 404, 405 and extractor
//! failures, so no route answers with an empty or HTML error.

use actix_web::error::{InternalError, JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use shared_proto::{ErrorBody, ErrorCode};

/// An error answer with the contract's body.
pub fn error_response(code: ErrorCode, message: impl Into<String>) -> HttpResponse {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(ErrorBody::new(code, message))
}

/// Default service for unknown routes: 404 JSON.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    error_response(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    )
}

/// Default service of a resource: 405 JSON for methods it does not route.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    error_response(
        ErrorCode::MethodNotAllowed,
        format!("method {} is not allowed on {}", req.method(), req.path()),
    )
}

fn bad_request(message: String) -> actix_web::Error {
    InternalError::from_response(
        message.clone(),
        error_response(ErrorCode::BadRequest, message),
    )
    .into()
}

/// Extractor configs whose failures answer 400 (or 413) with the JSON error body.
pub fn extractor_config(cfg: &mut web::ServiceConfig, json_limit: usize) {
    cfg.app_data(web::JsonConfig::default().limit(json_limit).error_handler(
        |err, _req| match err {
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                let message = err.to_string();
                InternalError::from_response(
                    message.clone(),
                    error_response(ErrorCode::TooLarge, message),
                )
                .into()
            }
            other => bad_request(format!("invalid JSON body: {other}")),
        },
    ))
    .app_data(
        web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
            bad_request(format!("invalid query: {err}"))
        }),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err: PathError, _req| bad_request(format!("invalid path: {err}"))),
    );
}
