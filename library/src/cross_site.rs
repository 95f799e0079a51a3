//! Cross-site state changes: a request that changes state (not GET, HEAD or OPTIONS), carries
//! the session cookie and that a browser marks as coming from another site is refused with 403
//! before any handler runs. "Another site" is an `Origin` whose host and port differ from the
//! request's `Host` (or `X-Forwarded-Host`, when the peer is a trusted proxy), or
//! `Sec-Fetch-Site: cross-site` / `same-site`. Requests without those headers (scripts, curl)
//! pass as before.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use service_kit::client_addr::TrustedProxies;

use crate::books::AppState;
use crate::error::{Error, PageError};
use crate::startup::SESSION_COOKIE;

/// The middleware (`middleware::from_fn(cross_site::guard)`).
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = changes_state(req.method())
        && req.cookie(SESSION_COOKIE).is_some()
        && req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|state| is_cross_site(&req, state.throttle.trusted()));
    if refused {
        tracing::info!(method = %req.method(), path = req.path(), "cross-site request refused");
        let error = Error::Forbidden("cross-site requests may not change anything".into());
        let response = if req.path().starts_with("/api/") {
            error.error_response()
        } else {
            PageError(error).error_response()
        };
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_cross_site(req: &ServiceRequest, trusted: &TrustedProxies) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site")
        && matches!(
            site.trim().to_ascii_lowercase().as_str(),
            "cross-site" | "same-site"
        )
    {
        return true;
    }
    let Some(origin) = header("origin") else {
        return false;
    };
    let from_proxy = req
        .peer_addr()
        .is_some_and(|peer| trusted.trusts(peer.ip()));
    let forwarded = header("x-forwarded-host")
        .filter(|_| from_proxy)
        .and_then(|list| list.rsplit(',').next())
        .map(str::trim)
        .filter(|h| !h.is_empty());
    let host = forwarded.or_else(|| header("host"));
    match host {
        Some(host) => !same_host_and_port(origin, host),
        // No Host at all (HTTP/1.0): nothing to compare with, so a browser's Origin is foreign.
        None => true,
    }
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (`host[:port]`); a missing port is
/// the origin scheme's default. An opaque origin (`null`) never matches.
fn same_host_and_port(origin: &str, host: &str) -> bool {
    let Some((scheme, rest)) = origin.trim().split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    match (
        split_host_port(authority, default_port),
        split_host_port(host.trim(), default_port),
    ) {
        (Some((oh, op)), Some((hh, hp))) => oh.eq_ignore_ascii_case(hh) && op == hp,
        _ => false,
    }
}

/// `example.org:8080` -> (`example.org`, 8080); `[::1]:3002` -> (`[::1]`, 3002).
fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let port_at = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => Some(i),
        _ => None,
    };
    match port_at {
        Some(i) => {
            let port = authority[i + 1..].parse().ok()?;
            Some((&authority[..i], port))
        }
        None => Some((authority, default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_their_host() {
        assert!(same_host_and_port(
            "http://127.0.0.1:3002",
            "127.0.0.1:3002"
        ));
        assert!(same_host_and_port(
            "https://Books.example.org",
            "books.example.org"
        ));
        assert!(same_host_and_port(
            "https://books.example.org",
            "books.example.org:443"
        ));
        assert!(same_host_and_port("http://[::1]:3002", "[::1]:3002"));
        assert!(!same_host_and_port(
            "http://127.0.0.1:3003",
            "127.0.0.1:3002"
        ));
        assert!(!same_host_and_port(
            "http://evil.example",
            "books.example.org"
        ));
        assert!(!same_host_and_port(
            "https://books.example.org",
            "books.example.org:80"
        ));
        assert!(!same_host_and_port("null", "books.example.org"));
        assert!(!same_host_and_port(
            "http://a@books.example.org",
            "books.example.org"
        ));
        assert!(!same_host_and_port(
            "http://books.example.org:x",
            "books.example.org"
        ));
    }

    #[test]
    fn only_state_changes_are_checked() {
        assert!(!changes_state(&Method::GET));
        assert!(!changes_state(&Method::HEAD));
        assert!(!changes_state(&Method::OPTIONS));
        assert!(changes_state(&Method::POST));
        assert!(changes_state(&Method::PUT));
        assert!(changes_state(&Method::DELETE));
    }
}
