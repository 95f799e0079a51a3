//! Claims of the HS256 token the library mints and the gateway checks.

use serde::{Deserialize, Serialize};

use crate::ids::Username;

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Role {
    /// An ordinary reader.
    #[default]
    User,
    /// May delete anyone's comment.
    Admin,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// Token claims: `sub` (username), `name` (full name), `role`, `exp` (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Claims {
    /// The username.
    pub sub: Username,
    /// The user's full name, shown beside their comments.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_shape() {
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "sub": "JD", "name": "John Doe", "role": "admin", "exp": 1_900_000_000u64
        }))
        .expect("parses");
        assert_eq!(claims.role, Role::Admin);
        assert_eq!(claims.sub.as_str(), "JD");
        assert!(
            serde_json::from_value::<Claims>(serde_json::json!({
                "sub": "JD", "name": "x", "role": "root", "exp": 1
            }))
            .is_err()
        );
        assert!(
            serde_json::from_value::<Claims>(
                serde_json::json!({"sub": "a/b", "name": "x", "role": "user", "exp": 1})
            )
            .is_err()
        );
    }
}
