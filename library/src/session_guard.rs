//! Checks every signed-in request's session against the store before the handler runs, so a
//! session that was signed out (on any instance) or is older than `SESSION_MAX_AGE_SECS` counts
//! as signed out everywhere, even when an old copy of its cookie is replayed.

use actix_session::SessionExt;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::auth;
use crate::books::AppState;
use crate::error::PageError;

/// The middleware (`middleware::from_fn(session_guard::guard)`, inside the session middleware).
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if needs_session(req.path())
        && let Some(state) = req.app_data::<web::Data<AppState>>().cloned()
    {
        let session = req.get_session();
        if let Err(e) = auth::validate_session(&state.store, &session).await {
            return Err(if req.path().starts_with("/api/") {
                e.into()
            } else {
                PageError(e).into()
            });
        }
    }
    next.call(req).await
}

/// Static files and probes never look at the session.
fn needs_session(path: &str) -> bool {
    !(path.starts_with("/static/") || matches!(path, "/healthz" | "/readyz" | "/metrics"))
}
