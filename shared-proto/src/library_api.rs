//! Bodies of the library's JSON API (`/api/v1`).

use serde::{Deserialize, Serialize};

/// A book as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Book {
    /// Sequential numeric id; as a string it is the book's comment room.
    pub id: u64,
    /// Title.
    pub title: String,
    /// Authors, free text.
    pub authors: String,
    /// Description, free text.
    pub description: String,
    /// A number (the original app's "favorite" field).
    pub favorite: i64,
    /// Stored cover file name (under the uploads folder), empty when none.
    pub file_name_cover: String,
    /// The cover's original file name.
    pub file_original_cover: String,
    /// Stored book file name, empty when none.
    pub file_name_book: String,
    /// The book file's original name (used for downloads).
    pub file_original_book: String,
    /// View count from `counter`, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub views: Option<u64>,
}

/// A user as the API shows them (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublicUser {
    /// Unique username, the user's id.
    pub username: String,
    /// Full name.
    pub fullname: String,
    /// E-mail address.
    pub email: String,
    /// Sign-up time, RFC 3339.
    pub created: String,
}

/// `{"user": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserEnvelope {
    /// The user.
    pub user: PublicUser,
}

/// `{"message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MessageBody {
    /// What happened.
    pub message: String,
}

/// `{"token": "...", "expiresAt": "..."}` from `GET /api/v1/user/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenResponse {
    /// HS256 JWT for the gateway.
    pub token: String,
    /// Expiry, RFC 3339 UTC.
    pub expires_at: String,
}

/// `POST /api/v1/user/signup` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SignupRequest {
    /// Wanted username.
    pub username: String,
    /// Full name.
    pub fullname: String,
    /// E-mail address.
    pub email: String,
    /// Password in clear (hashed before storing).
    pub password: String,
}

/// `POST /api/v1/user/login` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LoginRequest {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn book_shape() {
        let json = serde_json::json!({
            "id": 1, "title": "Война и мир", "authors": "Лев Толстой", "description": "",
            "favorite": 1, "fileNameCover": "c.png", "fileOriginalCover": "cover.png",
            "fileNameBook": "b.txt", "fileOriginalBook": "book.txt", "views": 3
        });
        let book: Book = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(book.views, Some(3));
        assert_eq!(serde_json::to_value(&book).expect("serializes"), json);
    }

    #[test]
    fn token_shape() {
        let token = TokenResponse {
            token: "t".into(),
            expires_at: "2026-01-01T00:00:00.000Z".into(),
        };
        assert_eq!(
            serde_json::to_value(&token).expect("serializes"),
            serde_json::json!({"token": "t", "expiresAt": "2026-01-01T00:00:00.000Z"})
        );
    }
}
