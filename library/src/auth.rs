//! Accounts: password hashes, the session's user, CSRF tokens for forms, gateway tokens.

use std::sync::{Arc, OnceLock};

use actix_session::Session;
use actix_web::cookie::Key;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use shared_proto::library_api::TokenResponse;
use shared_proto::{Claims, Role, Username};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::UserRecord;
use crate::error::Error;
use crate::store::{SessionRecord, Store};

const USER_KEY: &str = "user";
const CSRF_KEY: &str = "csrf";
const SESSION_ID_KEY: &str = "sid";

/// The signed-in user as the session remembers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    /// Username.
    pub username: String,
    /// Full name.
    pub fullname: String,
    /// Role.
    pub role: Role,
}

impl SessionUser {
    /// Whether the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The session cookie key: 64 bytes derived from `AUTH_SESSION_SECRET` with Argon2 (any length
/// of secret works; the same secret always gives the same key, so sessions survive restarts).
pub fn session_key(secret: &str) -> anyhow::Result<Key> {
    let mut out = [0u8; 64];
    Argon2::default()
        .hash_password_into(
            secret.as_bytes(),
            b"library-session-cookie-key-v1",
            &mut out,
        )
        .map_err(|e| anyhow::anyhow!("cannot derive the session key: {e}"))?;
    Ok(Key::from(&out))
}

/// Argon2 work, bounded: at most one hash per core at a time (each takes ~19 MiB and a core
/// for tens of milliseconds), so a flood of sign-ins queues instead of taking every core and
/// the memory with it.
#[derive(Clone)]
pub struct Hashing {
    permits: Arc<Semaphore>,
}

impl Default for Hashing {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores)
    }
}

impl Hashing {
    /// At most `parallel` (at least 1) hashes at once.
    pub fn new(parallel: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(parallel.max(1))),
        }
    }

    /// Hashes a password (Argon2id, random salt) off the async threads.
    pub async fn hash(&self, password: String) -> Result<String, Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("hashing semaphore closed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(anyhow::anyhow!("cannot hash a password: {e}")))
        })
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("hashing task failed: {e}")))?
    }

    /// A hashing slot, for work that must not interleave with other sign-ins (the throttle's
    /// check, the verification and its count happen under one, see `authenticate`).
    pub async fn slot(&self) -> Result<HashingSlot, Error> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("hashing semaphore closed: {e}")))?;
        Ok(HashingSlot { _permit: permit })
    }

    /// Checks a password against a stored PHC string; `None` (unknown user) checks against a
    /// dummy hash so both cases take the same time.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        match self.slot().await {
            Ok(slot) => slot.verify(password, stored).await,
            Err(_) => false,
        }
    }
}

/// One of the [`Hashing`] slots, held until dropped.
pub struct HashingSlot {
    _permit: OwnedSemaphorePermit,
}

impl HashingSlot {
    /// [`Hashing::verify`] in this slot.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        tokio::task::spawn_blocking(move || {
            let known = stored.is_some();
            let hash = stored.unwrap_or_else(|| dummy_hash().to_owned());
            let ok = PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            known && ok
        })
        .await
        .unwrap_or(false)
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"not-a-real-password")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// The signed-in user, if any (a broken session counts as signed out).
pub fn current_user(session: &Session) -> Option<SessionUser> {
    session.get::<SessionUser>(USER_KEY).ok().flatten()
}

/// The signed-in user, or 401.
pub fn require_user(session: &Session) -> Result<SessionUser, Error> {
    current_user(session).ok_or_else(|| Error::Unauthorized("sign in first".into()))
}

/// Starts a fresh session for `user` (a new cookie value: no session fixation) whose id is
/// stored, so that every instance knows it and sign-out or expiry ends it.
pub async fn sign_in(
    store: &Store,
    max_age_secs: u64,
    session: &Session,
    user: &UserRecord,
) -> Result<SessionUser, Error> {
    let who = SessionUser {
        username: user.username.clone(),
        fullname: user.fullname.clone(),
        role: user.role,
    };
    let now = now_ms();
    let max_age_ms = i64::try_from(max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let record = SessionRecord {
        id: new_token(),
        username: user.username.clone(),
        created_ms: now,
        expires_ms: now.saturating_add(max_age_ms),
    };
    store.create_session(record.clone()).await?;
    // Signing in again (or as someone else) ends the session this cookie had.
    if let Some(previous) = session.get::<String>(SESSION_ID_KEY).ok().flatten() {
        store.delete_session(&previous).await?;
    }
    let write = |e| Error::Internal(anyhow::anyhow!("cannot write the session: {e}"));
    session.renew();
    session.insert(USER_KEY, &who).map_err(write)?;
    session.insert(SESSION_ID_KEY, &record.id).map_err(write)?;
    session.insert(CSRF_KEY, new_token()).map_err(write)?;
    Ok(who)
}

/// Ends the session: its stored record goes (an old copy of the cookie no longer signs in) and
/// the cookie is cleared.
pub async fn sign_out(store: &Store, session: &Session) -> Result<(), Error> {
    let id = session.get::<String>(SESSION_ID_KEY).ok().flatten();
    session.purge();
    match id {
        Some(id) => store.delete_session(&id).await,
        None => Ok(()),
    }
}

/// Whether the session's signed-in user (if any) is still signed in: its stored record exists,
/// belongs to them and has not expired. When not, the user is dropped from the session (it
/// goes on as an anonymous one). Store failures are errors: nobody is signed out by an outage.
pub async fn validate_session(store: &Store, session: &Session) -> Result<(), Error> {
    let Some(user) = current_user(session) else {
        return Ok(());
    };
    let valid = match session.get::<String>(SESSION_ID_KEY).ok().flatten() {
        Some(id) => store
            .find_session(&id)
            .await?
            .is_some_and(|r| r.username == user.username && r.expires_ms > now_ms()),
        None => false,
    };
    if !valid {
        tracing::debug!(username = %user.username, "session ended or expired; signed out");
        session.remove(USER_KEY);
        session.remove(SESSION_ID_KEY);
    }
    Ok(())
}

/// The current time, Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The session's CSRF token for forms, created on first use.
pub fn csrf_token(session: &Session) -> String {
    if let Ok(Some(token)) = session.get::<String>(CSRF_KEY) {
        return token;
    }
    let token = new_token();
    if let Err(e) = session.insert(CSRF_KEY, &token) {
        tracing::warn!(error = %e, "cannot store a CSRF token");
    }
    token
}

/// Checks a form's `csrf_token` against the session's (constant time).
pub fn check_csrf(session: &Session, sent: Option<&str>) -> Result<(), Error> {
    let expected = session.get::<String>(CSRF_KEY).ok().flatten();
    match (expected, sent) {
        (Some(expected), Some(sent)) if bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) => {
            Ok(())
        }
        _ => Err(Error::Forbidden(
            "the form expired or came from another site; reload the page and try again".into(),
        )),
    }
}

/// Mints the gateway's HS256 token for `user` (read from the store, so a changed role counts).
pub fn mint_token(user: &UserRecord, secret: &str, ttl_secs: u64) -> Result<TokenResponse, Error> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let exp = now + ttl_secs;
    let claims = Claims {
        sub: Username::parse(user.username.clone())
            .map_err(|e| Error::Internal(anyhow::anyhow!("session username is invalid: {e}")))?,
        name: user.fullname.clone(),
        role: user.role,
        exp,
        iat: Some(now),
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("cannot sign a token: {e}")))?;
    Ok(TokenResponse {
        token,
        expires_at: shared_proto::timestamp::rfc3339_from_millis((exp as i64).saturating_mul(1000)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify() {
        let hashing = Hashing::new(1);
        let hash = hashing.hash("pw".into()).await.expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert!(hashing.verify("pw".into(), Some(hash.clone())).await);
        assert!(!hashing.verify("nope".into(), Some(hash)).await);
        assert!(!hashing.verify("pw".into(), None).await);
    }

    #[tokio::test]
    async fn hashing_is_bounded() {
        let hashing = Hashing::new(2);
        let held = hashing
            .permits
            .clone()
            .acquire_many_owned(2)
            .await
            .expect("permits");
        let waiting = tokio::spawn({
            let hashing = hashing.clone();
            async move { hashing.hash("pw".into()).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "hashing ran without a permit");
        drop(held);
        let hash = waiting.await.expect("joins").expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
    }

    #[test]
    fn tokens_carry_the_claims() {
        let user = UserRecord {
            username: "JD".into(),
            fullname: "John Doe".into(),
            email: "jd@example.com".into(),
            password_hash: String::new(),
            role: Role::User,
            created: "2024-01-01T00:00:00.000Z".into(),
        };
        let minted = mint_token(&user, "s3cret", 60).expect("mints");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.validate_exp = true;
        let data = jsonwebtoken::decode::<Claims>(
            &minted.token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .expect("valid token");
        assert_eq!(data.claims.sub.as_str(), "JD");
        assert_eq!(data.claims.name, "John Doe");
        assert!(data.claims.iat.is_some());
        assert!(minted.expires_at.ends_with('Z'));
    }
}
