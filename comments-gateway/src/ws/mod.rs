//! The WebSocket transport: checks before the upgrade (origin, token, per-address cap), then
//! one loop per connection that only moves frames (client frames in, queued frames out, pings);
//! requests that touch the store run as their own tasks and answer through the connection's
//! queue, so a hung store never stalls the loop.

mod connection;
pub mod guard;
mod requests;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::error::GatewayError;
use crate::state::AppState;

pub use connection::CLOSE_GRACE;

/// `GET /ws` query.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

/// `GET /ws?token=...`: checks origin, token and the per-address cap, upgrades, and starts
/// the connection's task.
pub async fn ws_entry(
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<WsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    state.guard.check_origin(&req)?;
    let user = match query.token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => Some(
            state
                .verifier
                .verify(token)
                .map_err(|_| GatewayError::Unauthorized("invalid or expired token".into()))?,
        ),
    };
    if state.shutdown.is_cancelled() {
        return Err(GatewayError::Unavailable("the gateway (shutting down)"));
    }
    let slot = state.guard.admit(&req)?;
    let (response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| GatewayError::BadRequest(format!("expected a WebSocket upgrade: {e}")))?;
    let state = state.into_inner();
    let task = state.tracker.track_future(connection::run_connection(
        state.clone(),
        session,
        stream,
        user,
        slot,
    ));
    actix_web::rt::spawn(task);
    Ok(response)
}
