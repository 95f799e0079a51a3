//! Layered settings: built-in defaults < optional file < environment.

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(#[from] config::ConfigError);

/// Loads `T` from its serde defaults, then the TOML file named by `CONFIG_FILE` (or
/// `config/<service>.toml` when present), then the process environment (`PORT`, `REDIS_URL`,
/// ... map to the fields `port`, `redis_url`, ...). Empty variables count as unset.
pub fn load<T: DeserializeOwned>(service: &str) -> Result<T, SettingsError> {
    let file = std::env::var("CONFIG_FILE").unwrap_or_else(|_| format!("config/{service}.toml"));
    let env = config::Environment::default()
        .try_parsing(true)
        .ignore_empty(true)
        .source(Some(
            std::env::vars()
                .filter(|(k, _)| {
                    k.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                })
                .collect(),
        ));
    let settings = config::Config::builder()
        .add_source(config::File::with_name(&file).required(false))
        .add_source(env)
        .build()?;
    Ok(settings.try_deserialize()?)
}

/// A secret string (a token or a key) that never shows in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
