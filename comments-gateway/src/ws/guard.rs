//! Checks at the WebSocket upgrade: `ALLOWED_ORIGINS` (403) and `MAX_CONNS_PER_IP` per client
//! address, the address taken as `TRUSTED_PROXIES` says (429).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use actix_http::RequestHead;
use actix_web::http::header;
use service_kit::client_addr::{TrustedProxies, head_client_ip};

use crate::error::GatewayError;

/// The upgrade checks and the per-address connection counts.
pub struct UpgradeGuard {
    max_per_ip: usize,
    origins: Option<Vec<String>>,
    proxies: TrustedProxies,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted connection's place in its address's count; given back on drop.
pub struct IpSlot {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: Option<IpAddr>,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }
}

impl UpgradeGuard {
    /// `max_per_ip` 0 turns the cap off; `origins` None allows every origin.
    pub fn new(max_per_ip: usize, origins: Option<Vec<String>>, proxies: TrustedProxies) -> Self {
        Self {
            max_per_ip,
            origins,
            proxies,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// 403 for an `Origin` outside `ALLOWED_ORIGINS` (requests without one, from scripts and
    /// native clients, pass).
    pub fn check_origin(&self, req: &RequestHead) -> Result<(), GatewayError> {
        let Some(allowed) = &self.origins else {
            return Ok(());
        };
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .unwrap_or("")
            .trim()
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if allowed.contains(&origin) {
            Ok(())
        } else {
            Err(GatewayError::Forbidden(
                "this origin may not open the WebSocket".into(),
            ))
        }
    }

    /// Counts the connection against its client address; 429 past the cap.
    pub fn admit(&self, req: &RequestHead) -> Result<IpSlot, GatewayError> {
        if self.max_per_ip == 0 {
            return Ok(IpSlot {
                open: self.open.clone(),
                ip: None,
            });
        }
        let Some(ip) = head_client_ip(req, &self.proxies) else {
            return Ok(IpSlot {
                open: self.open.clone(),
                ip: None,
            });
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(GatewayError::TooManyConnections);
        }
        *count += 1;
        Ok(IpSlot {
            open: self.open.clone(),
            ip: Some(ip),
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_cap_counts_per_address_and_gives_back_on_drop() {
        let guard = UpgradeGuard::new(2, None, TrustedProxies::default());
        let req = || {
            TestRequest::default()
                .peer_addr("10.0.0.1:5000".parse().expect("addr"))
                .to_http_request()
                .head()
                .clone()
        };
        let a = guard.admit(&req()).expect("first");
        let _b = guard.admit(&req()).expect("second");
        assert!(matches!(
            guard.admit(&req()),
            Err(GatewayError::TooManyConnections)
        ));
        let other = TestRequest::default()
            .peer_addr("10.0.0.2:5000".parse().expect("addr"))
            .to_http_request()
            .head()
            .clone();
        assert!(
            guard.admit(&other).is_ok(),
            "another address has its own count"
        );
        drop(a);
        assert!(
            guard.admit(&req()).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_forwarded_address_counts() {
        let proxies = TrustedProxies::parse("127.0.0.1").expect("parses");
        let guard = UpgradeGuard::new(1, None, proxies);
        let via = |client: &str| {
            TestRequest::default()
                .peer_addr("127.0.0.1:5000".parse().expect("addr"))
                .insert_header(("x-forwarded-for", client))
                .to_http_request()
                .head()
                .clone()
        };
        let _a = guard.admit(&via("1.1.1.1")).expect("first client");
        let _b = guard.admit(&via("2.2.2.2")).expect("second client");
        assert!(guard.admit(&via("1.1.1.1")).is_err());
    }

    #[test]
    fn origins_outside_the_list_are_refused() {
        let guard = UpgradeGuard::new(
            0,
            Some(vec!["https://books.example".into()]),
            TrustedProxies::default(),
        );
        let with = |origin: &str| {
            TestRequest::default()
                .insert_header(("origin", origin))
                .to_http_request()
                .head()
                .clone()
        };
        assert!(guard.check_origin(&with("https://books.example")).is_ok());
        assert!(guard.check_origin(&with("https://BOOKS.example/")).is_ok());
        assert!(guard.check_origin(&with("https://evil.example")).is_err());
        assert!(
            guard
                .check_origin(&TestRequest::default().to_http_request().head().clone())
                .is_ok()
        );
    }
}
