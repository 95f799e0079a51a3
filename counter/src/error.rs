//! The counter's one error type, mapped once to a status and the JSON error body.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared_proto::ErrorCode;

/// Everything a counter request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The request itself is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The store does not answer (Redis down or too slow).
    #[error("counter storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else; the cause goes to the log, not to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl CounterError {
    fn code(&self) -> ErrorCode {
        match self {
            CounterError::BadRequest(_) => ErrorCode::BadRequest,
            CounterError::Unavailable(_) => ErrorCode::Unavailable,
            CounterError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl ResponseError for CounterError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            CounterError::Unavailable(cause) | CounterError::Internal(cause) => {
                tracing::error!(error = ?cause, "{self}");
            }
            CounterError::BadRequest(_) => {}
        }
        service_kit::http_errors::error_response(self.code(), self.to_string())
    }
}
