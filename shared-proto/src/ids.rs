//! Validated identifiers. Parse once at the boundary; afterwards code holds only valid values.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value was empty.
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    /// The value was longer than allowed.
    #[error("{kind} must be at most {max} characters")]
    TooLong { kind: &'static str, max: usize },
    /// The value held a character outside the allowed set.
    #[error("{kind} may only contain {allowed}")]
    BadChar {
        kind: &'static str,
        allowed: &'static str,
    },
}

fn check(
    value: &str,
    kind: &'static str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.chars().count() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if !value.chars().all(ok) {
        return Err(IdError::BadChar { kind, allowed });
    }
    Ok(())
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr, $allowed:literal, $ok:expr, $pattern:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            /// Validates `value`.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check(&value, $kind, $max, $allowed, $ok)?;
                Ok(Self(value))
            }

            /// The value as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        #[cfg(feature = "schema")]
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": concat!("A ", $kind, ": 1..", stringify!($max), " ", $allowed, "."),
                })
            }
        }
    };
}

string_newtype!(
    /// A book id as the counter and the comment rooms see it: `^[A-Za-z0-9_-]{1,64}$`.
    BookId,
    "book id",
    64,
    "letters, digits, '_' and '-'",
    is_id_char,
    "^[A-Za-z0-9_-]{1,64}$"
);

string_newtype!(
    /// A comment room: `index` (the library-wide room) or a book id; `^[A-Za-z0-9_-]{1,64}$`.
    RoomId,
    "room",
    64,
    "letters, digits, '_' and '-'",
    is_id_char,
    "^[A-Za-z0-9_-]{1,64}$"
);

string_newtype!(
    /// A user's unique name, their id everywhere: 1..32 of letters, digits, `_`, `-`, `.`.
    Username,
    "username",
    32,
    "letters, digits, '_', '-' and '.'",
    |c: char| is_id_char(c) || c == '.',
    "^[A-Za-z0-9_.-]{1,32}$"
);

string_newtype!(
    /// A client-chosen idempotency key for posts: 1..64 visible ASCII characters.
    ClientId,
    "clientId",
    64,
    "visible ASCII characters",
    |c: char| c.is_ascii_graphic(),
    "^[!-~]{1,64}$"
);

string_newtype!(
    /// A comment's opaque id as clients send it back (`delete`, `edit`, `react`, `replyTo`):
    /// `^[A-Za-z0-9_-]{1,128}$`.
    CommentId,
    "comment id",
    128,
    "letters, digits, '_' and '-'",
    is_id_char,
    "^[A-Za-z0-9_-]{1,128}$"
);

impl RoomId {
    /// The library-wide room.
    pub const INDEX: &'static str = "index";

    /// The library-wide room `index`.
    pub fn index() -> Self {
        Self(Self::INDEX.to_owned())
    }
}

impl From<BookId> for RoomId {
    fn from(id: BookId) -> Self {
        RoomId(id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_contract_ids() {
        for ok in ["1", "index", "abc_DEF-9", &"a".repeat(64)] {
            assert!(RoomId::parse(ok).is_ok(), "{ok}");
            assert!(BookId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(BookId::parse(""), Err(IdError::Empty { kind: "book id" }));
        assert!(matches!(
            BookId::parse("a".repeat(65)),
            Err(IdError::TooLong { max: 64, .. })
        ));
        for bad in ["a/b", "../x", "a b", "é", "a.b", "a\n", "%2F"] {
            assert!(
                matches!(RoomId::parse(bad), Err(IdError::BadChar { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_deserialize_through_validation() {
        let room: RoomId = serde_json::from_str("\"index\"").expect("valid room");
        assert_eq!(room.as_str(), "index");
        assert!(serde_json::from_str::<RoomId>("\"a/b\"").is_err());
        assert!(serde_json::from_str::<RoomId>("12").is_err());
    }

    #[test]
    fn usernames() {
        assert!(Username::parse("JD").is_ok());
        assert!(Username::parse("Bad.Comedian_1").is_ok());
        assert!(Username::parse("a".repeat(33)).is_err());
        assert!(Username::parse("x y").is_err());
    }

    #[test]
    fn comment_ids() {
        for ok in [
            "demo-index-1",
            "0193a1b2c3d4e5f6a7b8c9d0e1f2a3b4",
            "k0f",
            &"a".repeat(128),
        ] {
            assert!(CommentId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "{\"$ne\":1}", "é", &"a".repeat(129)] {
            assert!(CommentId::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<CommentId>("12").is_err());
        assert!(serde_json::from_str::<CommentId>("null").is_err());
    }

    #[test]
    fn client_ids() {
        assert!(ClientId::parse("3f1c-uuid:1").is_ok());
        assert!(ClientId::parse("").is_err());
        assert!(ClientId::parse("has space").is_err());
        assert!(ClientId::parse("x".repeat(65)).is_err());
    }
}
