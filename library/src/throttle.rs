//! Sign-in and sign-up throttling with the contract's numbers. The counters live in the store
//! (MongoDB or the embedded one), so every library instance on one MongoDB counts together.
//!
//! Sign-in: past 5 failed logins for one username from one client address, 50 from one address
//! or 100 for one username from all addresses within 15 minutes, the next attempt is refused
//! before anything is checked. Sign-up: past 20 attempts from one address within an hour.
//! A window opens with the first counted attempt after the previous window ended.

use std::net::IpAddr;

use actix_web::HttpRequest;
use service_kit::client_addr::{self, TrustedProxies};

use crate::auth::now_ms;
use crate::error::Error;
use crate::store::{Store, Window};

/// Failed logins for one username from one address, per [`LOGIN_WINDOW_MS`].
pub const MAX_FAILED_PER_USER_AND_ADDRESS: u64 = 5;
/// Failed logins from one address, per [`LOGIN_WINDOW_MS`].
pub const MAX_FAILED_PER_ADDRESS: u64 = 50;
/// Failed logins for one username from all addresses, per [`LOGIN_WINDOW_MS`].
pub const MAX_FAILED_PER_USER: u64 = 100;
/// The login window: 15 minutes.
pub const LOGIN_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Sign-up attempts from one address, per [`SIGNUP_WINDOW_MS`].
pub const MAX_SIGNUPS_PER_ADDRESS: u64 = 20;
/// The sign-up window: one hour.
pub const SIGNUP_WINDOW_MS: i64 = 60 * 60 * 1000;

/// Longest username part of a counter key (longer names cannot exist anyway).
const MAX_KEY_USERNAME: usize = 64;

/// The throttle: on or off (`AUTH_THROTTLE`), and who counts as a proxy (`TRUSTED_PROXIES`).
#[derive(Debug, Clone)]
pub struct Throttle {
    enabled: bool,
    trusted: TrustedProxies,
}

impl Throttle {
    /// A throttle that counts when `enabled`, taking client addresses through `trusted` proxies.
    pub fn new(enabled: bool, trusted: TrustedProxies) -> Self {
        Self { enabled, trusted }
    }

    /// The trusted proxies (also used for `X-Forwarded-Host`).
    pub fn trusted(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// The client address of `req` (see [`client_addr`]); `unknown` without a peer address.
    pub fn client(&self, req: &HttpRequest) -> String {
        client_addr::client_ip(req, &self.trusted)
            .map(|ip: IpAddr| ip.to_string())
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// `Err(RateLimited)` when a login for `username` from `client` must not be checked now.
    pub async fn check_login(
        &self,
        store: &Store,
        username: &str,
        client: &str,
    ) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let now = now_ms();
        let keys = login_keys(username, client);
        let (pair, address, user) = tokio::try_join!(
            store.peek_window(&keys[0], now),
            store.peek_window(&keys[1], now),
            store.peek_window(&keys[2], now),
        )?;
        let limits = [
            (pair, MAX_FAILED_PER_USER_AND_ADDRESS),
            (address, MAX_FAILED_PER_ADDRESS),
            (user, MAX_FAILED_PER_USER),
        ];
        let blocked_until = limits
            .into_iter()
            .filter_map(|(window, limit)| window.filter(|w| w.count >= limit))
            .map(|w| w.reset_ms)
            .max();
        match blocked_until {
            Some(reset_ms) => {
                tracing::info!(username = %key_username(username), client, "login throttled");
                Err(rate_limited(reset_ms, now))
            }
            None => Ok(()),
        }
    }

    /// Counts a failed login for `username` from `client`.
    pub async fn login_failed(
        &self,
        store: &Store,
        username: &str,
        client: &str,
    ) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let now = now_ms();
        let keys = login_keys(username, client);
        tokio::try_join!(
            store.hit_window(&keys[0], LOGIN_WINDOW_MS, now),
            store.hit_window(&keys[1], LOGIN_WINDOW_MS, now),
            store.hit_window(&keys[2], LOGIN_WINDOW_MS, now),
        )?;
        Ok(())
    }

    /// Counts a sign-up attempt from `client`; `Err(RateLimited)` past the limit (then nothing
    /// else may be checked or stored).
    pub async fn signup_attempt(&self, store: &Store, client: &str) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let now = now_ms();
        let window: Window = store
            .hit_window(&format!("signup|{client}"), SIGNUP_WINDOW_MS, now)
            .await?;
        if window.count > MAX_SIGNUPS_PER_ADDRESS {
            tracing::info!(client, "sign-up throttled");
            return Err(rate_limited(window.reset_ms, now));
        }
        Ok(())
    }
}

fn login_keys(username: &str, client: &str) -> [String; 3] {
    let username = key_username(username);
    [
        format!("login|{client}|{username}"),
        format!("login-address|{client}"),
        format!("login-user|{username}"),
    ]
}

/// The username as counted: trimmed and cut to [`MAX_KEY_USERNAME`] characters.
fn key_username(username: &str) -> &str {
    let username = username.trim();
    match username.char_indices().nth(MAX_KEY_USERNAME) {
        Some((end, _)) => &username[..end],
        None => username,
    }
}

fn rate_limited(reset_ms: i64, now_ms: i64) -> Error {
    let wait_ms = u64::try_from(reset_ms.saturating_sub(now_ms)).unwrap_or(0);
    Error::RateLimited {
        retry_after_secs: wait_ms.div_ceil(1000).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_username_and_address_apart() {
        let keys = login_keys(" JD ", "10.0.0.1");
        assert_eq!(keys[0], "login|10.0.0.1|JD");
        assert_eq!(keys[1], "login-address|10.0.0.1");
        assert_eq!(keys[2], "login-user|JD");
        let long = "ж".repeat(100);
        assert_eq!(key_username(&long).chars().count(), MAX_KEY_USERNAME);
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let seconds = |e: Error| match e {
            Error::RateLimited { retry_after_secs } => retry_after_secs,
            other => panic!("{other:?}"),
        };
        assert_eq!(seconds(rate_limited(10_500, 0)), 11);
        assert_eq!(seconds(rate_limited(0, 10)), 1);
    }
}
