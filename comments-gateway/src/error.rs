//! The gateway's one error type, mapped once to an HTTP answer or a WebSocket `error` code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use shared_proto::{ErrorBody, ErrorCode};

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Not allowed for this user.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// Posting into a room the connection has not subscribed to.
    #[error("subscribe to the room before posting into it")]
    NotSubscribed,
    /// Input over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// Too many posts.
    #[error("too many posts; slow down")]
    RateLimited,
    /// Past `MAX_CONNS_PER_IP` for the client's address.
    #[error("too many connections from this address")]
    TooManyConnections,
    /// Too many of another kind of request (the message says which).
    #[error("{0}")]
    Throttled(&'static str),
    /// A store does not answer.
    #[error("{0} is unavailable, try again later")]
    Unavailable(&'static str),
    /// An unexpected failure; the cause goes to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl GatewayError {
    /// The protocol code.
    pub fn code(&self) -> ErrorCode {
        match self {
            GatewayError::BadRequest(_) => ErrorCode::BadRequest,
            GatewayError::Unauthorized(_) => ErrorCode::Unauthorized,
            GatewayError::Forbidden(_) => ErrorCode::Forbidden,
            GatewayError::NotFound(_) => ErrorCode::NotFound,
            GatewayError::NotSubscribed => ErrorCode::NotSubscribed,
            GatewayError::TooLarge(_) => ErrorCode::TooLarge,
            GatewayError::RateLimited
            | GatewayError::TooManyConnections
            | GatewayError::Throttled(_) => ErrorCode::RateLimited,
            GatewayError::Unavailable(_) => ErrorCode::Unavailable,
            GatewayError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<crate::store::StoreError> for GatewayError {
    fn from(err: crate::store::StoreError) -> Self {
        match err {
            crate::store::StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                GatewayError::Unavailable("storage")
            }
            crate::store::StoreError::Internal(cause) => GatewayError::Internal(cause),
        }
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if let GatewayError::Internal(cause) = self {
            tracing::error!(error = ?cause, "request failed");
        }
        HttpResponse::build(self.status_code()).json(ErrorBody::new(self.code(), self.to_string()))
    }
}
