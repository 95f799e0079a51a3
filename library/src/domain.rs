//! Validated input: book fields, sign-up data. Parse at the boundary, hold only valid values after.

use serde::{Deserialize, Serialize};
use shared_proto::library_api::PublicUser;
use shared_proto::{Role, Username};

use crate::error::Error;

/// Longest title / authors, in characters.
pub const MAX_SHORT_FIELD: usize = 500;
/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 20_000;
/// Shortest password of a new account, in characters (the demo users keep theirs).
pub const MIN_PASSWORD: usize = 8;
/// Longest password, in characters.
pub const MAX_PASSWORD: usize = 1024;

/// A stored user, password hash included (never sent out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    /// Unique username.
    pub username: String,
    /// Full name.
    pub fullname: String,
    /// E-mail.
    pub email: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// Role.
    #[serde(default)]
    pub role: Role,
    /// Sign-up time, RFC 3339.
    pub created: String,
}

impl UserRecord {
    /// The public view of the user.
    pub fn public(&self) -> PublicUser {
        PublicUser {
            username: self.username.clone(),
            fullname: self.fullname.clone(),
            email: self.email.clone(),
            created: self.created.clone(),
        }
    }
}

/// Sign-up data that passed validation.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Username.
    pub username: Username,
    /// Full name, trimmed.
    pub fullname: String,
    /// E-mail, trimmed.
    pub email: String,
    /// Clear password (hashed before storing).
    pub password: String,
}

impl NewUser {
    /// Validates sign-up fields.
    pub fn parse(
        username: &str,
        fullname: &str,
        email: &str,
        password: &str,
    ) -> Result<Self, Error> {
        let username = Username::parse(username.trim())
            .map_err(|e| Error::BadRequest(format!("invalid username: {e}")))?;
        let fullname = fullname.trim();
        if fullname.is_empty() || fullname.chars().count() > 100 {
            return Err(Error::BadRequest(
                "fullname must be 1..100 characters".into(),
            ));
        }
        let email = email.trim();
        if !valid_email(email) {
            return Err(Error::BadRequest(
                "email must look like name@example.com".into(),
            ));
        }
        let length = password.chars().count();
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
            return Err(Error::BadRequest(format!(
                "password must be {MIN_PASSWORD}..{MAX_PASSWORD} characters"
            )));
        }
        Ok(Self {
            username,
            fullname: fullname.to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
        })
    }
}

fn valid_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    match email.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    }
}

/// Book fields from a create or update request; `None` means "not sent".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BookFields {
    /// Title (required on create, non-empty when sent).
    pub title: Option<String>,
    /// Authors.
    pub authors: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// The favorite number.
    pub favorite: Option<i64>,
}

impl BookFields {
    /// Checks lengths and, on create, that a title is there.
    pub fn validate(self, creating: bool) -> Result<Self, Error> {
        let title = self.title.map(|t| t.trim().to_owned());
        match &title {
            Some(t) if t.is_empty() => {
                return Err(Error::BadRequest("title must not be empty".into()));
            }
            Some(t) if t.chars().count() > MAX_SHORT_FIELD => {
                return Err(Error::BadRequest(format!(
                    "title must be at most {MAX_SHORT_FIELD} characters"
                )));
            }
            None if creating => return Err(Error::BadRequest("title is required".into())),
            _ => {}
        }
        let authors = self.authors.map(|a| a.trim().to_owned());
        if authors
            .as_ref()
            .is_some_and(|a| a.chars().count() > MAX_SHORT_FIELD)
        {
            return Err(Error::BadRequest(format!(
                "authors must be at most {MAX_SHORT_FIELD} characters"
            )));
        }
        let description = self.description.map(|d| d.trim().to_owned());
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
        {
            return Err(Error::BadRequest(format!(
                "description must be at most {MAX_DESCRIPTION} characters"
            )));
        }
        Ok(Self {
            title,
            authors,
            description,
            favorite: self.favorite,
        })
    }
}

/// Parses the `favorite` field as sent by a form or a script: an integer, a checkbox's `on`,
/// `true`/`false`, or empty (0).
pub fn parse_favorite(raw: &str) -> Result<i64, Error> {
    let raw = raw.trim();
    match raw {
        "" | "false" | "off" => Ok(0),
        "on" | "true" => Ok(1),
        n => n
            .parse::<i64>()
            .map_err(|_| Error::BadRequest("favorite must be a number".into())),
    }
}

/// A favorite value from JSON: a number, a boolean, a numeric string or null.
pub fn favorite_from_json(value: &serde_json::Value) -> Result<Option<i64>, Error> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Bool(b) => Ok(Some(i64::from(*b))),
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| Error::BadRequest("favorite must be an integer".into())),
        serde_json::Value::String(s) => parse_favorite(s).map(Some),
        _ => Err(Error::BadRequest("favorite must be a number".into())),
    }
}

/// A numeric book id from a path segment; anything else is "no such book".
pub fn parse_book_id(raw: &str) -> Option<u64> {
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn favorites() {
        assert_eq!(parse_favorite("").ok(), Some(0));
        assert_eq!(parse_favorite("on").ok(), Some(1));
        assert_eq!(parse_favorite(" 7 ").ok(), Some(7));
        assert!(parse_favorite("x").is_err());
        assert_eq!(
            favorite_from_json(&serde_json::json!(3)).ok(),
            Some(Some(3))
        );
        assert_eq!(
            favorite_from_json(&serde_json::json!(true)).ok(),
            Some(Some(1))
        );
        assert!(favorite_from_json(&serde_json::json!([1])).is_err());
        assert!(favorite_from_json(&serde_json::json!(1.5)).is_err());
    }

    #[test]
    fn book_ids() {
        assert_eq!(parse_book_id("12"), Some(12));
        for bad in ["", "-1", "1a", "../1", "99999999999999999999"] {
            assert_eq!(parse_book_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn book_fields() {
        let missing = BookFields::default().validate(true);
        assert!(missing.is_err());
        let ok = BookFields {
            title: Some("  T ".into()),
            ..Default::default()
        }
        .validate(true)
        .map(|f| f.title);
        assert_eq!(ok.ok(), Some(Some("T".to_owned())));
        assert!(BookFields::default().validate(false).is_ok());
        let blank = BookFields {
            title: Some(" ".into()),
            ..Default::default()
        };
        assert!(blank.validate(false).is_err());
    }

    #[test]
    fn signups() {
        let pw = "red-pill";
        assert!(NewUser::parse("neo", "Thomas A", "neo@matrix.io", pw).is_ok());
        assert!(NewUser::parse("ne o", "Thomas", "neo@matrix.io", pw).is_err());
        assert!(NewUser::parse("neo", "", "neo@matrix.io", pw).is_err());
        assert!(NewUser::parse("neo", "T", "matrix.io", pw).is_err());
        assert!(NewUser::parse("neo", "T", "a@b", "").is_err());
        assert!(NewUser::parse("neo", "T", "a@b", "seven77").is_err());
        assert!(NewUser::parse("neo", "T", "a@b", "жжжжжжжж").is_ok());
        assert!(NewUser::parse("neo", "T", "a@b", &"x".repeat(1025)).is_err());
    }
}
