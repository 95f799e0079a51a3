//! Reactions: the closed set of emoji a reader may give a comment, and the maps built on it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the six reactions. On the wire it is the emoji itself; anything else is refused
/// (`bad_request`). The heart is `❤️` (U+2764 U+FE0F); a bare `❤` (U+2764, as some keyboards
/// send it) is accepted too and read as the same heart, which is always sent back with U+FE0F.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Emoji {
    /// 👍
    ThumbsUp,
    /// ❤️
    Heart,
    /// 😂
    Joy,
    /// 😮
    Wow,
    /// 😢
    Sad,
    /// 🎉
    Tada,
}

/// Why a string is not one of the six reactions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("emoji must be one of 👍 ❤️ 😂 😮 😢 🎉")]
pub struct EmojiError;

impl Emoji {
    /// All six, in wire order (the order maps and lists use).
    pub const ALL: [Emoji; 6] = [
        Emoji::ThumbsUp,
        Emoji::Heart,
        Emoji::Joy,
        Emoji::Wow,
        Emoji::Sad,
        Emoji::Tada,
    ];

    /// The emoji as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Emoji::ThumbsUp => "\u{1F44D}",
            Emoji::Heart => "\u{2764}\u{FE0F}",
            Emoji::Joy => "\u{1F602}",
            Emoji::Wow => "\u{1F62E}",
            Emoji::Sad => "\u{1F622}",
            Emoji::Tada => "\u{1F389}",
        }
    }

    /// A stable ASCII name, for storage keys and field names.
    pub fn key(self) -> &'static str {
        match self {
            Emoji::ThumbsUp => "thumbs_up",
            Emoji::Heart => "heart",
            Emoji::Joy => "joy",
            Emoji::Wow => "wow",
            Emoji::Sad => "sad",
            Emoji::Tada => "tada",
        }
    }

    /// The emoji whose [`Emoji::key`] is `key`.
    pub fn from_key(key: &str) -> Option<Emoji> {
        Emoji::ALL.into_iter().find(|e| e.key() == key)
    }

    /// Reads the wire form (the bare heart U+2764 included).
    pub fn parse(value: &str) -> Result<Emoji, EmojiError> {
        if value == "\u{2764}" {
            return Ok(Emoji::Heart);
        }
        Emoji::ALL
            .into_iter()
            .find(|e| e.as_str() == value)
            .ok_or(EmojiError)
    }
}

impl TryFrom<String> for Emoji {
    type Error = EmojiError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Emoji::parse(&value)
    }
}

impl std::str::FromStr for Emoji {
    type Err = EmojiError;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Emoji::parse(value)
    }
}

impl From<Emoji> for &'static str {
    fn from(value: Emoji) -> &'static str {
        value.as_str()
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Emoji {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Emoji".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let all: Vec<&str> = Emoji::ALL.iter().map(|e| e.as_str()).collect();
        schemars::json_schema!({
            "type": "string",
            "enum": all,
            "description": "One of the six reactions, the emoji itself. The server always sends the heart as U+2764 U+FE0F; in requests a bare U+2764 is read as the same heart.",
        })
    }
}

impl fmt::Display for Emoji {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comment's reaction counts: emoji → count, only counts above 0 (`{}` when none).
pub type Reactions = BTreeMap<Emoji, u32>;

/// The emoji one user gave one comment, each once.
pub type MyReactions = BTreeSet<Emoji>;

/// `mine` in `subscribed` and `history`: comment id → the emoji the connection's user gave it,
/// only comments with at least one.
pub type Mine = BTreeMap<String, MyReactions>;

/// The JSON Schema of [`Reactions`] (named `Reactions`): an object emoji → count, only counts
/// above 0, no other keys.
#[cfg(feature = "schema")]
pub struct ReactionsSchema;

#[cfg(feature = "schema")]
impl schemars::JsonSchema for ReactionsSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Reactions".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let counts: serde_json::Map<String, serde_json::Value> = Emoji::ALL
            .iter()
            .map(|e| {
                (
                    e.as_str().to_owned(),
                    serde_json::json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}),
                )
            })
            .collect();
        schemars::json_schema!({
            "type": "object",
            "description": "A comment's reaction counts: emoji -> count, only counts above 0 (`{}` when none).",
            "properties": counts,
            "additionalProperties": false,
        })
    }
}

/// The JSON Schema of [`Mine`] (named `Mine`): comment id → the emoji this user gave it.
#[cfg(feature = "schema")]
pub struct MineSchema;

#[cfg(feature = "schema")]
impl schemars::JsonSchema for MineSchema {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Mine".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let emoji = generator.subschema_for::<Emoji>();
        schemars::json_schema!({
            "type": "object",
            "description": "The signed-in user's own reactions: comment id -> the emoji this user gave it, each once (only comments of the reply with at least one; `{}` when none).",
            "additionalProperties": {"type": "array", "items": emoji, "uniqueItems": true, "minItems": 1},
        })
    }
}

/// Builds a [`Reactions`] map from `(emoji, count)` pairs, leaving out counts of 0 (or below).
pub fn reactions_from_counts(counts: impl IntoIterator<Item = (Emoji, i64)>) -> Reactions {
    counts
        .into_iter()
        .filter_map(|(emoji, n)| u32::try_from(n).ok().filter(|n| *n > 0).map(|n| (emoji, n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_emoji_round_trip() {
        for emoji in Emoji::ALL {
            let json = serde_json::to_string(&emoji).expect("serializes");
            assert_eq!(json, format!("\"{}\"", emoji.as_str()));
            assert_eq!(serde_json::from_str::<Emoji>(&json).expect("parses"), emoji);
            assert_eq!(Emoji::from_key(emoji.key()), Some(emoji));
        }
        assert_eq!(
            serde_json::to_string(&Emoji::ALL).expect("serializes"),
            "[\"👍\",\"❤️\",\"😂\",\"😮\",\"😢\",\"🎉\"]"
        );
    }

    #[test]
    fn bare_heart_reads_as_the_heart() {
        assert_eq!(Emoji::parse("\u{2764}"), Ok(Emoji::Heart));
        let heart: Emoji = serde_json::from_str("\"\u{2764}\"").expect("parses");
        assert_eq!(
            serde_json::to_string(&heart).expect("serializes"),
            "\"\u{2764}\u{FE0F}\""
        );
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "🙂",
            "👍🏻",
            "👍 ",
            " 👍",
            "+1",
            "thumbs_up",
            "heart",
            "❤️❤️",
            "\u{FE0F}",
            "👎",
            "😀",
        ] {
            assert_eq!(Emoji::parse(bad), Err(EmojiError), "{bad:?}");
            let json = serde_json::to_string(bad).expect("json string");
            assert!(serde_json::from_str::<Emoji>(&json).is_err(), "{bad:?}");
        }
        for bad in ["1", "null", "true", "[\"👍\"]", "{}"] {
            assert!(serde_json::from_str::<Emoji>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn maps_use_emoji_keys_and_skip_zero() {
        let counts = reactions_from_counts([
            (Emoji::Tada, 2),
            (Emoji::ThumbsUp, 1),
            (Emoji::Sad, 0),
            (Emoji::Joy, -1),
        ]);
        assert_eq!(
            serde_json::to_value(&counts).expect("serializes"),
            serde_json::json!({"👍": 1, "🎉": 2})
        );
        let back: Reactions = serde_json::from_str(r#"{"👍": 1, "🎉": 2}"#).expect("parses");
        assert_eq!(back, counts);
        assert!(serde_json::from_str::<Reactions>(r#"{"🙂": 1}"#).is_err());
        assert!(serde_json::from_str::<Reactions>(r#"{"👍": -1}"#).is_err());
        let mine: Mine = serde_json::from_str(r#"{"c1": ["🎉", "👍", "🎉"]}"#).expect("parses");
        assert_eq!(
            serde_json::to_value(&mine).expect("serializes"),
            serde_json::json!({"c1": ["👍", "🎉"]})
        );
    }
}
