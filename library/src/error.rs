//! The crate's one error type, mapped once to a status and the contract's JSON body. Pages
//! wrap it in [`PageError`] to answer with HTML instead.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpResponse, ResponseError};
use shared_proto::ErrorCode;

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input; the message is safe to show.
    #[error("{0}")]
    BadRequest(String),
    /// Not signed in, or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// A failed CSRF check on a form.
    #[error("{0}")]
    Forbidden(String),
    /// No such book, user or file.
    #[error("{0}")]
    NotFound(String),
    /// A body over the size limit.
    #[error("{0}")]
    TooLarge(String),
    /// Too many sign-in or sign-up attempts; try again after `retry_after_secs`.
    #[error("too many attempts: try again in {retry_after_secs} seconds")]
    RateLimited {
        /// Seconds until the attempt would be accepted (the `Retry-After` value).
        retry_after_secs: u64,
    },
    /// The store does not answer.
    #[error("storage unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything unexpected; the cause goes to the log, never to the response.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// The contract's error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::TooLarge(_) => ErrorCode::TooLarge,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Shorthand for a 404 about a book.
    pub fn book_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound(format!("no book with id {id}"))
    }

    /// Adds `Retry-After` when the error is [`Error::RateLimited`].
    pub fn with_retry_after(&self, mut response: HttpResponse) -> HttpResponse {
        if let Error::RateLimited { retry_after_secs } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.max(&1).to_string())
        {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        response
    }

    fn log(&self) {
        match self {
            Error::Internal(cause) => tracing::error!(error = ?cause, "request failed"),
            Error::Unavailable(cause) => tracing::warn!(error = ?cause, "storage unavailable"),
            _ => {}
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        self.with_retry_after(service_kit::http_errors::error_response(
            self.code(),
            self.to_string(),
        ))
    }
}

/// An [`Error`] on a page: answers with the HTML error page.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PageError(#[from] pub Error);

impl From<anyhow::Error> for PageError {
    fn from(value: anyhow::Error) -> Self {
        PageError(Error::Internal(value))
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        self.0.log();
        self.0.with_retry_after(crate::templates::error_page(
            self.status_code(),
            &self.0.to_string(),
        ))
    }
}

/// Result of a JSON handler.
pub type ApiResult<T> = Result<T, Error>;
/// Result of a page handler.
pub type PageResult<T> = Result<T, PageError>;
