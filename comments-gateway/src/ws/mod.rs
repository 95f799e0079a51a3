//! WebSocket sessions: the checks before the upgrade (origin, token, per-address cap, drain),
//! shared by the transport's upgrade path and the plain `GET /ws` route, and each connection's
//! session; the socket itself belongs to [`crate::transport`].

mod connection;
pub mod guard;
mod requests;

use std::sync::Arc;

use actix_http::RequestHead;
use actix_http::body::BoxBody;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Deserialize;
use shared_proto::Claims;

use self::connection::Connection;
use self::guard::IpSlot;
use crate::error::GatewayError;
use crate::hub::ConnId;
use crate::state::AppState;
use crate::transport::{Acceptor, ConnTx};

/// `GET /ws` query.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
}

/// What an admitted upgrade carries into its session.
pub struct Admitted {
    user: Option<Claims>,
    slot: IpSlot,
}

/// The checks before an upgrade: an `Origin` outside `ALLOWED_ORIGINS` is 403, a bad or
/// expired token 401, a draining server 503, an address past `MAX_CONNS_PER_IP` 429.
pub fn admit(state: &AppState, head: &RequestHead) -> Result<Admitted, GatewayError> {
    state.guard.check_origin(head)?;
    let query = web::Query::<WsQuery>::from_query(head.uri.query().unwrap_or(""))
        .map_err(|e| GatewayError::BadRequest(format!("invalid query: {e}")))?;
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
    let slot = state.guard.admit(head)?;
    Ok(Admitted { user, slot })
}

/// `GET /ws` that is no upgrade (upgrades never reach actix-web: the transport takes them):
/// the same checks, then 400.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "comments",
    params(("token" = Option<String>, Query, description = "The library's /api/v1/user/token value; none: anonymous (read only)")),
    responses(
        (status = 101, description = "WebSocket upgrade: the protocol is in docs/protocol.md"),
        (status = 400, description = "Not a WebSocket upgrade"),
        (status = 401, description = "Bad or expired token"),
        (status = 403, description = "Origin not in ALLOWED_ORIGINS"),
        (status = 429, description = "Over MAX_CONNS_PER_IP connections from this address"),
        (status = 503, description = "Shutting down"),
    )
)]
pub async fn ws_entry(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    admit(&state, req.head())?;
    Err(GatewayError::BadRequest(
        "expected a WebSocket upgrade".into(),
    ))
}

/// Admits upgrades and opens their sessions.
pub struct Gate {
    state: Arc<AppState>,
}

impl Gate {
    /// A gate over the app's state.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

impl Acceptor for Gate {
    type Ticket = Admitted;
    type Session = Connection;

    fn admit(&self, head: &RequestHead) -> Result<Admitted, actix_http::Response<BoxBody>> {
        admit(&self.state, head).map_err(|e| e.error_response().into())
    }

    fn open(&self, ticket: Admitted, id: ConnId, tx: ConnTx) -> Connection {
        Connection::open(self.state.clone(), id, tx, ticket.user, ticket.slot)
    }

    fn span(&self, head: &RequestHead, id: ConnId) -> tracing::Span {
        let query = head.uri.query().unwrap_or("");
        tracing::info_span!(
            "ws",
            conn = %format_args!("{}-{}", self.state.instance, id),
            http.target = %crate::access_log::redacted_target(head.uri.path(), query),
        )
    }
}
