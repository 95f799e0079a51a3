//! The contract's rule for secrets (`AUTH_SESSION_SECRET`, `AUTH_TOKEN_SECRET`, `ADMIN_TOKEN`):
//! a service refuses to start when one it needs is unset, shorter than 32 bytes or a value the
//! project ships (a development default or an example-file placeholder), unless
//! `APP_ENV=development`.

use crate::settings::Secret;

/// Shortest accepted secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Values the project itself ships (code defaults, `.env.example`, Kubernetes placeholders):
/// never acceptable outside development mode. Anything starting with `change-me` is refused too.
pub const SHIPPED_SECRETS: &[&str] = &[
    "dev-only-session-secret-change-me",
    "dev-only-token-secret-change-me",
    "dev-only-admin-token-change-me",
    "change-me-session-secret-0123456789abcdef",
    "change-me-token-secret-0123456789abcdef",
    "change-me-admin-token",
    "change-me-session-secret",
    "change-me-token-secret",
];

/// `APP_ENV`: `development` relaxes the secret rule; anything else (or unset) is production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppEnv {
    /// Secrets must be real.
    #[default]
    Production,
    /// Development defaults are accepted (with a warning).
    Development,
}

impl AppEnv {
    /// Parses `APP_ENV` (case-insensitive `development` / `dev`; anything else is production).
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "development" || v == "dev" => AppEnv::Development,
            _ => AppEnv::Production,
        }
    }

    /// True in development mode.
    pub fn is_development(self) -> bool {
        self == AppEnv::Development
    }
}

impl<'de> serde::Deserialize<'de> for AppEnv {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Ok(AppEnv::parse(Some(&raw)))
    }
}

/// Why a secret was refused; the message names the variable, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Required but unset or empty.
    #[error(
        "{0} is not set: set it to a random value of at least {MIN_SECRET_BYTES} bytes (or APP_ENV=development for local runs)"
    )]
    Missing(&'static str),
    /// Under [`MIN_SECRET_BYTES`].
    #[error("{0} is shorter than {MIN_SECRET_BYTES} bytes: use a longer random value")]
    TooShort(&'static str),
    /// A value the project ships.
    #[error(
        "{0} is a development default or example placeholder shipped with the project: set a real secret"
    )]
    Shipped(&'static str),
}

/// True when `value` is one the project ships (or looks like a placeholder).
pub fn is_shipped(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    SHIPPED_SECRETS.iter().any(|s| lower == *s) || lower.starts_with("change-me")
}

/// Checks one secret named `name`. `required`: an unset value is an error (else unset is fine,
/// as for `ADMIN_TOKEN`, which then disables its API). In development mode everything passes.
pub fn check_secret(
    name: &'static str,
    value: Option<&Secret>,
    required: bool,
    env: AppEnv,
) -> Result<(), SecretError> {
    if env.is_development() {
        return Ok(());
    }
    let value = value.map(Secret::expose).filter(|v| !v.is_empty());
    match value {
        None if required => Err(SecretError::Missing(name)),
        None => Ok(()),
        Some(v) if is_shipped(v) => Err(SecretError::Shipped(name)),
        Some(v) if v.len() < MIN_SECRET_BYTES => Err(SecretError::TooShort(name)),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Secret {
        Secret::new(v)
    }

    #[test]
    fn production_refuses_missing_short_and_shipped() {
        let p = AppEnv::Production;
        assert_eq!(
            check_secret("AUTH_TOKEN_SECRET", None, true, p),
            Err(SecretError::Missing("AUTH_TOKEN_SECRET"))
        );
        assert_eq!(
            check_secret("AUTH_TOKEN_SECRET", Some(&s("")), true, p),
            Err(SecretError::Missing("AUTH_TOKEN_SECRET"))
        );
        assert_eq!(
            check_secret("X", Some(&s("short")), true, p),
            Err(SecretError::TooShort("X"))
        );
        for shipped in SHIPPED_SECRETS {
            assert_eq!(
                check_secret("X", Some(&s(shipped)), true, p),
                Err(SecretError::Shipped("X"))
            );
        }
        assert!(check_secret("X", Some(&s(&"k".repeat(32))), true, p).is_ok());
        assert!(check_secret("ADMIN_TOKEN", None, false, p).is_ok());
        assert_eq!(
            check_secret("ADMIN_TOKEN", Some(&s("short")), false, p),
            Err(SecretError::TooShort("ADMIN_TOKEN"))
        );
    }

    #[test]
    fn development_accepts_anything() {
        assert!(check_secret("X", None, true, AppEnv::Development).is_ok());
        assert!(check_secret("X", Some(&s("change-me")), true, AppEnv::Development).is_ok());
    }

    #[test]
    fn messages_name_the_variable_not_the_value() {
        let e = check_secret(
            "AUTH_SESSION_SECRET",
            Some(&s("hunter2")),
            true,
            AppEnv::Production,
        )
        .expect_err("too short");
        let text = e.to_string();
        assert!(text.contains("AUTH_SESSION_SECRET"));
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn app_env_parses() {
        assert_eq!(AppEnv::parse(Some("development")), AppEnv::Development);
        assert_eq!(AppEnv::parse(Some("DEV")), AppEnv::Development);
        assert_eq!(AppEnv::parse(Some("production")), AppEnv::Production);
        assert_eq!(AppEnv::parse(None), AppEnv::Production);
    }
}
