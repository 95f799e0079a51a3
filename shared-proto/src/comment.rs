//! Comments and their text rule.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::ids::RoomId;
use crate::reaction::Reactions;

/// Most Unicode code points a comment's text may have after trimming.
pub const MAX_COMMENT_CHARS: usize = 2000;

/// Who wrote a comment: `{"id": username, "name": full name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Author {
    /// The author's username.
    pub id: String,
    /// The author's full name at the time of writing.
    pub name: String,
}

/// A stored comment as clients see it. The v3 fields (`replyTo`, `editedAt`, `reactions`) are
/// always sent (`null`, `null`, `{}` when unset) and read as those when missing, so comments
/// stored before v3 keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Comment {
    /// Opaque unique id.
    pub id: String,
    /// Position in its room; grows strictly in storage order.
    pub seq: u64,
    /// The room it belongs to.
    pub room: RoomId,
    /// Who wrote it.
    pub author: Author,
    /// Plain text, trimmed, unescaped.
    pub text: String,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// The id of the top-level comment of the same room this one answers, or `null`.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// When the text was last edited (RFC 3339 UTC with milliseconds), or `null`.
    #[serde(default)]
    pub edited_at: Option<String>,
    /// Reaction counts, only those above 0.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, u32>))]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "crate::reaction::ReactionsSchema")
    )]
    pub reactions: Reactions,
}

/// Why a comment text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommentTextError {
    /// Nothing left after trimming.
    #[error("text must not be empty")]
    Empty,
    /// Over [`MAX_COMMENT_CHARS`] code points after trimming.
    #[error("text must be at most {MAX_COMMENT_CHARS} characters, got {0}")]
    TooLong(usize),
}

impl CommentTextError {
    /// The protocol error code: `bad_request` for empty, `too_large` for too long.
    pub fn code(self) -> ErrorCode {
        match self {
            CommentTextError::Empty => ErrorCode::BadRequest,
            CommentTextError::TooLong(_) => ErrorCode::TooLarge,
        }
    }
}

/// A comment's text: trimmed, then 1..=2000 Unicode code points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommentText(String);

impl CommentText {
    /// Trims `raw` and checks its length.
    pub fn parse(raw: &str) -> Result<Self, CommentTextError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(CommentTextError::Empty);
        }
        let chars = trimmed.chars().count();
        if chars > MAX_COMMENT_CHARS {
            return Err(CommentTextError::TooLong(chars));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for CommentText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CommentText".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_COMMENT_CHARS,
            "description": "Comment text: 1..2000 Unicode code points after trimming (empty: bad_request, longer: too_large); plain text, never HTML.",
        })
    }
}

impl fmt::Display for CommentText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_counts_code_points() {
        assert_eq!(CommentText::parse("  hi \n").expect("valid").as_str(), "hi");
        assert_eq!(CommentText::parse(" \t\n "), Err(CommentTextError::Empty));
        assert_eq!(CommentText::parse(""), Err(CommentTextError::Empty));
        let cyrillic = "ж".repeat(2000);
        assert!(
            CommentText::parse(&cyrillic).is_ok(),
            "2000 two-byte chars are fine"
        );
        assert_eq!(
            CommentText::parse(&"a".repeat(2001)),
            Err(CommentTextError::TooLong(2001))
        );
        assert!(CommentText::parse(&format!("  {}  ", "a".repeat(2000))).is_ok());
        assert_eq!(CommentTextError::Empty.code(), ErrorCode::BadRequest);
        assert_eq!(CommentTextError::TooLong(1).code(), ErrorCode::TooLarge);
    }

    #[test]
    fn keeps_markup_as_plain_text() {
        let text = CommentText::parse("<script>alert(1)</script>").expect("valid");
        assert_eq!(text.as_str(), "<script>alert(1)</script>");
    }

    #[test]
    fn comment_shape() {
        let json = serde_json::json!({
            "id": "abc", "seq": 3, "room": "index",
            "author": {"id": "JD", "name": "John Doe"},
            "text": "hello", "createdAt": "2026-11-22T21:00:00.000Z"
        });
        // A comment stored before v3 reads with the v3 fields unset, and is sent with them.
        let comment: Comment = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(comment.seq, 3);
        assert_eq!(
            (
                &comment.reply_to,
                &comment.edited_at,
                comment.reactions.len()
            ),
            (&None, &None, 0)
        );
        let mut v3 = json.clone();
        v3["replyTo"] = serde_json::Value::Null;
        v3["editedAt"] = serde_json::Value::Null;
        v3["reactions"] = serde_json::json!({});
        assert_eq!(serde_json::to_value(&comment).expect("serializes"), v3);

        let mut bad = json;
        bad["room"] = serde_json::json!("a/b");
        assert!(serde_json::from_value::<Comment>(bad).is_err());
    }

    #[test]
    fn v3_fields_round_trip() {
        let json = serde_json::json!({
            "id": "r1", "seq": 4, "room": "1",
            "author": {"id": "BadComedian", "name": "Евгений"},
            "text": "agreed", "createdAt": "2026-11-22T21:00:00.000Z",
            "replyTo": "abc", "editedAt": "2026-11-22T21:01:00.500Z",
            "reactions": {"👍": 2, "❤️": 1}
        });
        let comment: Comment = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(comment.reply_to.as_deref(), Some("abc"));
        assert_eq!(comment.reactions.get(&crate::Emoji::Heart), Some(&1));
        assert_eq!(serde_json::to_value(&comment).expect("serializes"), json);
        let mut bad = json;
        bad["reactions"] = serde_json::json!({"🙂": 1});
        assert!(serde_json::from_value::<Comment>(bad).is_err());
    }
}
