//! What the comments section shows without JavaScript: reply quotes, "edited", reaction counts
//! (in the protocol's emoji order) and who is reading now.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use shared_proto::Comment;

use crate::clients::RoomPresence;

/// The six reactions in display order, with their accessible names (as in `comments.js`).
pub const EMOJI: [(&str, &str); 6] = [
    ("👍", "thumbs up"),
    ("❤️", "heart"),
    ("😂", "laughing"),
    ("😮", "surprised"),
    ("😢", "sad"),
    ("🎉", "celebrate"),
];

/// Code points of a parent's text quoted above a reply.
const QUOTE_CODE_POINTS: usize = 100;
/// Names listed in the readers line before "N others".
const MAX_NAMES: usize = 5;
/// The gateway lists at most this many signed-in readers.
const MAX_LISTED_USERS: usize = 50;

/// The comments as template values, each with `quote` (parent author and short text, when the
/// parent is on the page or among `parents`), `parent_deleted` (the gateway said the parent is
/// gone), `reaction_list` and `reactions_json` added.
pub fn decorate(comments: &[Comment], parents: &BTreeMap<String, Option<Comment>>) -> Vec<Value> {
    let parents: BTreeMap<String, Option<Value>> = parents
        .iter()
        .map(|(id, c)| {
            let value = c.as_ref().and_then(|c| serde_json::to_value(c).ok());
            (id.clone(), value)
        })
        .collect();
    decorate_values(
        comments
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect(),
        &parents,
    )
}

/// [`decorate`] on comments as JSON.
fn decorate_values(values: Vec<Value>, parents: &BTreeMap<String, Option<Value>>) -> Vec<Value> {
    values
        .iter()
        .map(|c| {
            let mut out = c.as_object().cloned().unwrap_or_default();
            if let Some(parent_id) = c.get("replyTo").and_then(Value::as_str) {
                let on_page = values
                    .iter()
                    .find(|p| p.get("id").and_then(Value::as_str) == Some(parent_id));
                match (on_page, parents.get(parent_id)) {
                    (Some(parent), _) | (None, Some(Some(parent))) => {
                        out.insert("quote".into(), quote(parent));
                    }
                    (None, Some(None)) => {
                        out.insert("parent_deleted".into(), Value::Bool(true));
                    }
                    (None, None) => {}
                }
            }
            let reactions = c.get("reactions").and_then(Value::as_object);
            out.insert("reaction_list".into(), reaction_list(reactions));
            let counts: Map<String, Value> = reactions.cloned().unwrap_or_default();
            out.insert(
                "reactions_json".into(),
                Value::String(Value::Object(counts).to_string()),
            );
            Value::Object(out)
        })
        .collect()
}

fn quote(parent: &Value) -> Value {
    let author = parent
        .pointer("/author/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| parent.pointer("/author/id").and_then(Value::as_str))
        .unwrap_or_default();
    let text = parent
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    json!({ "author": author, "text": quote_text(text) })
}

/// One line, whitespace collapsed, at most [`QUOTE_CODE_POINTS`] code points (with "…").
pub fn quote_text(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= QUOTE_CODE_POINTS {
        return flat;
    }
    let cut: String = flat.chars().take(QUOTE_CODE_POINTS - 1).collect();
    format!("{}…", cut.trim_end())
}

fn reaction_list(reactions: Option<&Map<String, Value>>) -> Value {
    let Some(reactions) = reactions else {
        return json!([]);
    };
    EMOJI
        .iter()
        .filter_map(|(emoji, name)| {
            let count = reactions.get(*emoji).and_then(Value::as_u64)?;
            (count > 0).then(|| json!({ "emoji": emoji, "name": name, "count": count }))
        })
        .collect()
}

fn join_names(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [head @ .., last] => format!("{} and {last}", head.join(", ")),
    }
}

/// "3 reading now: John Doe, Administrator and 1 guest" (as `formatPresence` in comments.js);
/// empty when nobody reads.
pub fn presence_text(presence: &RoomPresence) -> String {
    if presence.readers == 0 {
        return String::new();
    }
    let names: Vec<String> = presence
        .users
        .iter()
        .map(|u| {
            if u.name.is_empty() {
                u.id.clone()
            } else {
                u.name.clone()
            }
        })
        .filter(|n| !n.is_empty())
        .collect();
    let shown = names.len().min(MAX_NAMES);
    let mut parts: Vec<String> = names[..shown].to_vec();
    let hidden_users = names.len() - shown;
    let rest = presence.readers.saturating_sub(names.len() as u64);
    if presence.users.len() >= MAX_LISTED_USERS {
        let others = hidden_users as u64 + rest;
        if others > 0 {
            parts.push(format!("{others} others"));
        }
    } else {
        if hidden_users > 0 {
            let s = if hidden_users == 1 { "" } else { "s" };
            parts.push(format!("{hidden_users} other{s}"));
        }
        if rest > 0 {
            let s = if rest == 1 { "" } else { "s" };
            parts.push(format!("{rest} guest{s}"));
        }
    }
    format!("{} reading now: {}", presence.readers, join_names(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::PresenceUser;

    fn user(id: &str, name: &str) -> PresenceUser {
        PresenceUser {
            id: id.into(),
            name: name.into(),
        }
    }

    #[test]
    fn presence_line_names_users_and_counts_guests() {
        let p = |readers, users| presence_text(&RoomPresence { readers, users });
        assert_eq!(
            p(
                3,
                vec![user("JD", "John Doe"), user("Admin", "Administrator")]
            ),
            "3 reading now: John Doe, Administrator and 1 guest"
        );
        assert_eq!(
            p(1, vec![user("JD", "John Doe")]),
            "1 reading now: John Doe"
        );
        assert_eq!(p(2, vec![]), "2 reading now: 2 guests");
        assert_eq!(p(0, vec![]), "");
        let seven: Vec<_> = (0..7)
            .map(|i| user(&format!("u{i}"), &format!("U{i}")))
            .collect();
        assert_eq!(
            p(9, seven),
            "9 reading now: U0, U1, U2, U3, U4, 2 others and 2 guests"
        );
        let fifty: Vec<_> = (0..50).map(|i| user(&format!("u{i}"), "")).collect();
        assert_eq!(
            p(60, fifty),
            "60 reading now: u0, u1, u2, u3, u4 and 55 others"
        );
    }

    #[test]
    fn quotes_are_one_short_line() {
        assert_eq!(quote_text("  a\n\n b  "), "a b");
        let long = "ж".repeat(150);
        let q = quote_text(&long);
        assert_eq!(q.chars().count(), 100);
        assert!(q.ends_with('…'));
    }

    #[test]
    fn replies_quote_their_parent_on_the_page() {
        let comments = vec![
            json!({"id": "p", "seq": 1, "author": {"id": "JD", "name": "John Doe"}, "text": "first\nline",
                   "replyTo": null, "editedAt": null, "reactions": {}}),
            json!({"id": "r", "seq": 2, "author": {"id": "B", "name": ""}, "text": "yes",
                   "replyTo": "p", "editedAt": "2026-01-01T00:00:00.000Z", "reactions": {"👍": 2}}),
            json!({"id": "o", "seq": 3, "author": {"id": "B", "name": ""}, "text": "old",
                   "replyTo": "gone"}),
            json!({"id": "f", "seq": 4, "author": {"id": "B", "name": ""}, "text": "far",
                   "replyTo": "older"}),
            json!({"id": "d", "seq": 5, "author": {"id": "B", "name": ""}, "text": "late",
                   "replyTo": "deleted"}),
        ];
        let parents = BTreeMap::from([
            (
                "older".to_owned(),
                Some(
                    json!({"id": "older", "author": {"id": "JD", "name": "John Doe"}, "text": "long ago"}),
                ),
            ),
            ("deleted".to_owned(), None),
        ]);
        let out = decorate_values(comments, &parents);
        assert_eq!(out[0].get("quote"), None);
        assert_eq!(out[0]["reactions_json"], "{}");
        assert_eq!(
            out[1]["quote"],
            json!({"author": "John Doe", "text": "first line"})
        );
        assert_eq!(out[1]["reactions_json"], r#"{"👍":2}"#);
        assert_eq!(out[1]["reaction_list"][0]["count"], 2);
        assert_eq!(out[1]["editedAt"], "2026-01-01T00:00:00.000Z");
        assert_eq!(out[2].get("quote"), None, "parent not on the page");
        assert_eq!(
            out[2].get("parent_deleted"),
            None,
            "not known to be deleted"
        );
        assert_eq!(out[2]["reaction_list"], json!([]));
        assert_eq!(
            out[3]["quote"],
            json!({"author": "John Doe", "text": "long ago"}),
            "parent read from the gateway"
        );
        assert_eq!(out[4].get("quote"), None);
        assert_eq!(out[4]["parent_deleted"], true);
    }

    #[test]
    fn reactions_in_display_order_without_zero_or_unknown() {
        let map = json!({"🎉": 1, "👍": 3, "🙈": 9, "😢": 0});
        assert_eq!(
            reaction_list(map.as_object()),
            json!([
                {"emoji": "👍", "name": "thumbs up", "count": 3},
                {"emoji": "🎉", "name": "celebrate", "count": 1}
            ])
        );
        assert_eq!(reaction_list(None), json!([]));
    }
}
