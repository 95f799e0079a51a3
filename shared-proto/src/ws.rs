//! The gateway's WebSocket protocol: one JSON message per text frame,
//! `{"type": "<snake_case>", "ref": <optional, echoed>, "payload": {...}}`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::Role;
use crate::comment::{Comment, CommentText};
use crate::error::ErrorCode;
use crate::ids::{ClientId, CommentId, RoomId};
use crate::reaction::{Emoji, Mine, Reactions};

/// Frames longer than this close the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 65_536;
/// Rooms one connection may be subscribed to at once.
pub const MAX_ROOMS_PER_CONNECTION: usize = 50;
/// Default page size of `subscribe` (without `since`) and `history`.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// Largest `limit` accepted.
pub const MAX_PAGE_LIMIT: u32 = 200;
/// Most comments one `subscribe` with `since` returns.
pub const MAX_SINCE_BATCH: usize = 500;
/// Longest accepted string `ref`.
pub const MAX_REF_LEN: usize = 128;

/// A client-chosen request reference, echoed in the reply: a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ref {
    /// A string reference.
    Text(String),
    /// An integer reference.
    Number(i64),
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Ref {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Ref".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A client-chosen request reference, echoed in the reply: a string of at most 128 characters or an integer.",
            "anyOf": [
                {"type": "string", "maxLength": MAX_REF_LEN},
                {"type": "integer", "format": "int64"},
            ],
        })
    }
}

impl From<&str> for Ref {
    fn from(value: &str) -> Self {
        Ref::Text(value.to_owned())
    }
}

// ---------------------------------------------------------------- client -> server

/// `subscribe {room, since?, limit?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
pub struct Subscribe {
    /// The room.
    pub room: RoomId,
    /// Resume after this `seq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Latest N (1..=200) when `since` is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 200)))]
    pub limit: Option<u32>,
}

/// `unsubscribe {room}`, `typing {room}`, `unsubscribed {room}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RoomOnly {
    /// The room.
    pub room: RoomId,
}

/// `post {room, text, clientId?, replyTo?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
pub struct Post {
    /// The room.
    pub room: RoomId,
    /// Trimmed text.
    #[serde(serialize_with = "serialize_text")]
    pub text: CommentText,
    /// Idempotency key, scoped to the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// The comment of the same room this one answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<CommentId>,
}

/// `edit {room, id, text}`: new text for one's own comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
pub struct Edit {
    /// The room.
    pub room: RoomId,
    /// The comment's id.
    pub id: CommentId,
    /// The new text, trimmed (rules as for `post`).
    #[serde(serialize_with = "serialize_text")]
    pub text: CommentText,
}

/// `react {room, id, emoji, on}`: give (`on: true`) or take back (`on: false`) a reaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct React {
    /// The room.
    pub room: RoomId,
    /// The comment's id.
    pub id: CommentId,
    /// One of the six reactions.
    pub emoji: Emoji,
    /// Give it or take it back.
    pub on: bool,
}

fn serialize_text<S: serde::Serializer>(text: &CommentText, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(text.as_str())
}

/// `delete {room, id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Delete {
    /// The room.
    pub room: RoomId,
    /// The comment's id.
    pub id: String,
}

/// `history {room, before, limit?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
#[cfg_attr(feature = "schema", schemars(transform = crate::schema::limit_is_optional))]
pub struct History {
    /// The room.
    pub room: RoomId,
    /// Comments with a `seq` below this.
    pub before: u64,
    /// Newest N (1..=200, default 50).
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 200)))]
    pub limit: u32,
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ClientMessage {
    /// Join a room and get its backlog.
    Subscribe(Subscribe),
    /// Leave a room.
    Unsubscribe(RoomOnly),
    /// Write a comment.
    Post(Post),
    /// Delete a comment.
    Delete(Delete),
    /// Page back through a room.
    History(History),
    /// Application-level ping.
    Ping(Empty),
    /// Change the text of one's own comment.
    Edit(Edit),
    /// Give or take back a reaction.
    React(React),
    /// Tell the room's other readers this user is typing.
    Typing(RoomOnly),
}

/// An empty payload, `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Empty {}

/// A decoded client frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
pub struct ClientFrame {
    /// Echoed in the reply.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<Ref>,
    /// The request.
    #[serde(flatten)]
    pub message: ClientMessage,
}

/// Why a client frame was refused; the connection stays open and gets `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    /// The frame's `ref`, when it could be read.
    pub reference: Option<Ref>,
    /// `bad_request` or `too_large`.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

impl DecodeError {
    fn bad(reference: Option<Ref>, message: impl Into<String>) -> Self {
        Self {
            reference,
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscribe {
    room: RoomId,
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPost {
    room: RoomId,
    text: String,
    #[serde(default)]
    client_id: Option<ClientId>,
    #[serde(default)]
    reply_to: Option<CommentId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdit {
    room: RoomId,
    id: CommentId,
    text: String,
}

fn comment_text(raw: &str, reference: &Option<Ref>) -> Result<CommentText, DecodeError> {
    CommentText::parse(raw).map_err(|e| DecodeError {
        reference: reference.clone(),
        code: e.code(),
        message: e.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    room: RoomId,
    before: u64,
    #[serde(default)]
    limit: Option<u32>,
}

/// Checks a page `limit`: absent means the default; otherwise 1..=200.
pub fn page_limit(limit: Option<u32>) -> Result<u32, String> {
    match limit {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(format!(
            "limit must be between 1 and {MAX_PAGE_LIMIT}, got {n}"
        )),
    }
}

fn payload<T: DeserializeOwned>(
    kind: &str,
    payload: Value,
    reference: &Option<Ref>,
) -> Result<T, DecodeError> {
    serde_json::from_value(payload)
        .map_err(|e| DecodeError::bad(reference.clone(), format!("invalid {kind} payload: {e}")))
}

fn read_ref(object: &mut Map<String, Value>) -> Result<Option<Ref>, DecodeError> {
    match object.remove("ref") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_REF_LEN => Ok(Some(Ref::Text(s))),
        Some(Value::String(_)) => Err(DecodeError::bad(
            None,
            format!("ref must be at most {MAX_REF_LEN} characters"),
        )),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(|n| Some(Ref::Number(n)))
            .ok_or_else(|| DecodeError::bad(None, "ref must be a string or an integer")),
        Some(_) => Err(DecodeError::bad(None, "ref must be a string or an integer")),
    }
}

impl ClientFrame {
    /// Builds a frame.
    pub fn new(message: ClientMessage) -> Self {
        Self {
            reference: None,
            message,
        }
    }

    /// The same frame with a `ref`.
    pub fn with_ref(mut self, reference: impl Into<Ref>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes and validates one text frame.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| DecodeError::bad(None, format!("malformed JSON: {e}")))?;
        let Value::Object(mut object) = value else {
            return Err(DecodeError::bad(None, "a frame must be a JSON object"));
        };
        let reference = read_ref(&mut object)?;
        let kind = match object.remove("type") {
            Some(Value::String(kind)) => kind,
            Some(_) => return Err(DecodeError::bad(reference, "type must be a string")),
            None => return Err(DecodeError::bad(reference, "missing type")),
        };
        let body = match object.remove("payload") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(body @ Value::Object(_)) => body,
            Some(_) => return Err(DecodeError::bad(reference, "payload must be an object")),
        };
        if let Some(extra) = object.keys().next() {
            return Err(DecodeError::bad(
                reference,
                format!("unknown field '{extra}'"),
            ));
        }
        let message = match kind.as_str() {
            "subscribe" => {
                let raw: RawSubscribe = payload(&kind, body, &reference)?;
                let limit = if raw.since.is_some() {
                    None
                } else {
                    Some(
                        page_limit(raw.limit)
                            .map_err(|m| DecodeError::bad(reference.clone(), m))?,
                    )
                };
                ClientMessage::Subscribe(Subscribe {
                    room: raw.room,
                    since: raw.since,
                    limit,
                })
            }
            "unsubscribe" => ClientMessage::Unsubscribe(payload(&kind, body, &reference)?),
            "post" => {
                let raw: RawPost = payload(&kind, body, &reference)?;
                let text = comment_text(&raw.text, &reference)?;
                ClientMessage::Post(Post {
                    room: raw.room,
                    text,
                    client_id: raw.client_id,
                    reply_to: raw.reply_to,
                })
            }
            "edit" => {
                let raw: RawEdit = payload(&kind, body, &reference)?;
                let text = comment_text(&raw.text, &reference)?;
                ClientMessage::Edit(Edit {
                    room: raw.room,
                    id: raw.id,
                    text,
                })
            }
            "react" => ClientMessage::React(payload(&kind, body, &reference)?),
            "typing" => ClientMessage::Typing(payload(&kind, body, &reference)?),
            "delete" => {
                let delete: Delete = payload(&kind, body, &reference)?;
                if delete.id.is_empty() || delete.id.len() > 128 {
                    return Err(DecodeError::bad(reference, "id must be 1..128 characters"));
                }
                ClientMessage::Delete(delete)
            }
            "history" => {
                let raw: RawHistory = payload(&kind, body, &reference)?;
                let limit =
                    page_limit(raw.limit).map_err(|m| DecodeError::bad(reference.clone(), m))?;
                ClientMessage::History(History {
                    room: raw.room,
                    before: raw.before,
                    limit,
                })
            }
            "ping" => ClientMessage::Ping(Empty {}),
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(DecodeError::bad(
                    reference,
                    format!("unknown type '{shown}'"),
                ));
            }
        };
        Ok(Self { reference, message })
    }
}

// ---------------------------------------------------------------- server -> client

/// The connection's user in `welcome`: `{id, name, role}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserInfo {
    /// Username.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// `welcome {connectionId, user, heartbeatMs}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Welcome {
    /// This connection's id.
    pub connection_id: String,
    /// The signed-in user, or null when anonymous.
    pub user: Option<UserInfo>,
    /// How often the server pings.
    pub heartbeat_ms: u64,
}

/// `subscribed {room, comments, truncated, mine?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Subscribed {
    /// The room.
    pub room: RoomId,
    /// Backlog, oldest first.
    pub comments: Vec<Comment>,
    /// More exist beyond what was sent.
    pub truncated: bool,
    /// Signed-in connections only: the user's own reactions to these comments (`{}` when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "crate::reaction::MineSchema"))]
    pub mine: Option<Mine>,
}

/// `ack {comment}` (after a post or an edit), `ack {id, reactions}` (after a react) or
/// `ack {id}` (after a delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Ack {
    /// The stored (or edited) comment.
    Posted {
        /// The comment.
        comment: Comment,
    },
    /// The comment's reaction counts after a `react`.
    Reacted {
        /// The comment's id.
        id: String,
        /// Its counts now.
        #[cfg_attr(
            feature = "schema",
            schemars(with = "crate::reaction::ReactionsSchema")
        )]
        reactions: Reactions,
    },
    /// The deleted comment's id.
    Deleted {
        /// The id.
        id: String,
    },
}

/// `comment_edited {room, comment}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CommentEdited {
    /// The room.
    pub room: RoomId,
    /// The comment with its new text and `editedAt`.
    pub comment: Comment,
}

/// `reactions {room, id, reactions}`: a comment's reaction counts changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReactionsChanged {
    /// The room.
    pub room: RoomId,
    /// The comment's id.
    pub id: String,
    /// Its counts now, only those above 0.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "crate::reaction::ReactionsSchema")
    )]
    pub reactions: Reactions,
}

/// A user as presence and typing show them: `{id, name}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserRef {
    /// Username.
    pub id: String,
    /// Full name.
    pub name: String,
}

/// `typing {room, user}`: someone else in the room is typing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Typing {
    /// The room.
    pub room: RoomId,
    /// Who is typing.
    pub user: UserRef,
}

/// `presence {room, readers, users}`; also the body of `GET /rooms/{room}/presence` (without
/// `room`, see [`PresenceCounts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Presence {
    /// The room.
    pub room: RoomId,
    /// Distinct readers on all instances: each signed-in user once, each anonymous connection once.
    pub readers: u32,
    /// The signed-in readers, at most [`MAX_PRESENCE_USERS`], earliest first.
    pub users: Vec<UserRef>,
}

/// `GET /rooms/{room}/presence` → `{"readers", "users"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PresenceCounts {
    /// Distinct readers on all instances.
    pub readers: u32,
    /// The signed-in readers, at most [`MAX_PRESENCE_USERS`], earliest first.
    pub users: Vec<UserRef>,
}

/// Most users a `presence` message names.
pub const MAX_PRESENCE_USERS: usize = 50;

/// `comment_deleted {room, id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CommentDeleted {
    /// The room.
    pub room: RoomId,
    /// The deleted comment's id.
    pub id: String,
}

/// `history {room, comments, more}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HistoryPage {
    /// The room.
    pub room: RoomId,
    /// Oldest first.
    pub comments: Vec<Comment>,
    /// Older ones exist.
    pub more: bool,
    /// Signed-in connections only: the user's own reactions to these comments (`{}` when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "crate::reaction::MineSchema"))]
    pub mine: Option<Mine>,
}

/// `notice {text, from: "admin", room?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Notice {
    /// The notice.
    pub text: String,
    /// Always `admin`.
    pub from: String,
    /// The room it was sent to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "RoomId"))]
    pub room: Option<RoomId>,
}

/// `error {code, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorPayload {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ServerMessage {
    /// First message on every connection.
    Welcome(Welcome),
    /// Reply to `subscribe`.
    Subscribed(Subscribed),
    /// Reply to `unsubscribe`.
    Unsubscribed(RoomOnly),
    /// Reply to `post`, `edit`, `react` and `delete`.
    Ack(Ack),
    /// A live comment.
    Comment(Comment),
    /// A comment was deleted.
    CommentDeleted(CommentDeleted),
    /// Reply to `history`.
    History(HistoryPage),
    /// Reply to `ping`.
    Pong(Empty),
    /// Admin broadcast.
    Notice(Notice),
    /// Something went wrong.
    Error(ErrorPayload),
    /// A comment's text was edited.
    CommentEdited(CommentEdited),
    /// A comment's reaction counts changed.
    Reactions(ReactionsChanged),
    /// Someone else in the room is typing.
    Typing(Typing),
    /// Who reads the room now.
    Presence(Presence),
}

/// A server frame: a message and the `ref` of the request it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(deny_unknown_fields))]
pub struct ServerFrame {
    /// The request's `ref`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Ref"))]
    pub reference: Option<Ref>,
    /// The message.
    #[serde(flatten)]
    pub message: ServerMessage,
}

impl ServerFrame {
    /// A frame answering the request `reference`.
    pub fn reply(reference: Option<Ref>, message: ServerMessage) -> Self {
        Self { reference, message }
    }

    /// An unasked frame.
    pub fn push(message: ServerMessage) -> Self {
        Self {
            reference: None,
            message,
        }
    }

    /// An `error` frame.
    pub fn error(reference: Option<Ref>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::reply(
            reference,
            ServerMessage::Error(ErrorPayload {
                code,
                message: message.into(),
            }),
        )
    }

    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes a server frame (for clients and tests).
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The wire `type` of this frame.
    pub fn kind(&self) -> &'static str {
        match &self.message {
            ServerMessage::Welcome(_) => "welcome",
            ServerMessage::Subscribed(_) => "subscribed",
            ServerMessage::Unsubscribed(_) => "unsubscribed",
            ServerMessage::Ack(_) => "ack",
            ServerMessage::Comment(_) => "comment",
            ServerMessage::CommentDeleted(_) => "comment_deleted",
            ServerMessage::History(_) => "history",
            ServerMessage::Pong(_) => "pong",
            ServerMessage::Notice(_) => "notice",
            ServerMessage::Error(_) => "error",
            ServerMessage::CommentEdited(_) => "comment_edited",
            ServerMessage::Reactions(_) => "reactions",
            ServerMessage::Typing(_) => "typing",
            ServerMessage::Presence(_) => "presence",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::comment::Author;

    fn decode(value: Value) -> Result<ClientFrame, DecodeError> {
        ClientFrame::decode(&value.to_string())
    }

    fn sample_comment() -> Comment {
        Comment {
            id: "c1".into(),
            seq: 7,
            room: RoomId::parse("1").expect("valid"),
            author: Author {
                id: "JD".into(),
                name: "John".into(),
            },
            text: "<b>hi</b>".into(),
            created_at: "2026-11-22T21:00:00.000Z".into(),
            reply_to: None,
            edited_at: None,
            reactions: Reactions::new(),
        }
    }

    fn decode_err(value: Value) -> DecodeError {
        decode(value.clone()).expect_err(&value.to_string())
    }

    #[test]
    fn subscribe_shapes() {
        let frame = decode(json!({"type": "subscribe", "ref": "r1", "payload": {"room": "index"}}))
            .expect("valid");
        assert_eq!(frame.reference, Some(Ref::Text("r1".into())));
        let ClientMessage::Subscribe(sub) = frame.message else {
            panic!("not a subscribe")
        };
        assert_eq!(
            (sub.room.as_str(), sub.since, sub.limit),
            ("index", None, Some(50))
        );

        let frame = decode(
            json!({"type": "subscribe", "payload": {"room": "1", "since": 5, "limit": 999}}),
        )
        .expect("limit is ignored with since");
        assert!(matches!(
            frame.message,
            ClientMessage::Subscribe(Subscribe {
                since: Some(5),
                limit: None,
                ..
            })
        ));

        for limit in [0, 201] {
            let err = decode(
                json!({"type": "subscribe", "ref": 3, "payload": {"room": "1", "limit": limit}}),
            )
            .expect_err("out of range");
            assert_eq!(err.code, ErrorCode::BadRequest);
            assert_eq!(err.reference, Some(Ref::Number(3)));
        }
    }

    #[test]
    fn post_text_rules() {
        let frame = decode(
            json!({"type": "post", "payload": {"room": "1", "text": "  hi  ", "clientId": "k1"}}),
        )
        .expect("valid");
        let ClientMessage::Post(post) = frame.message else {
            panic!("not a post")
        };
        assert_eq!(post.text.as_str(), "hi");
        assert_eq!(post.client_id.map(String::from), Some("k1".to_owned()));

        let empty =
            decode(json!({"type": "post", "ref": "x", "payload": {"room": "1", "text": "   "}}))
                .expect_err("empty");
        assert_eq!(
            (empty.code, empty.reference),
            (ErrorCode::BadRequest, Some(Ref::Text("x".into())))
        );
        let long =
            decode(json!({"type": "post", "payload": {"room": "1", "text": "a".repeat(2001)}}))
                .expect_err("too long");
        assert_eq!(long.code, ErrorCode::TooLarge);
        assert!(
            decode(json!({"type": "post", "payload": {"room": "1", "text": "a".repeat(2000)}}))
                .is_ok()
        );
    }

    #[test]
    fn rejects_malformed_frames() {
        let cases = [
            "not json".to_owned(),
            "[]".to_owned(),
            "\"ping\"".to_owned(),
            json!({"payload": {}}).to_string(),
            json!({"type": 5}).to_string(),
            json!({"type": "shout", "payload": {}}).to_string(),
            json!({"type": "ping", "payload": []}).to_string(),
            json!({"type": "subscribe", "payload": {}}).to_string(),
            json!({"type": "subscribe", "payload": {"room": "a/b"}}).to_string(),
            json!({"type": "subscribe", "payload": {"room": "a".repeat(65)}}).to_string(),
            json!({"type": "subscribe", "payload": {"room": ""}}).to_string(),
            json!({"type": "subscribe", "payload": {"room": 1}}).to_string(),
            json!({"type": "subscribe", "payload": {"room": "1", "since": -1}}).to_string(),
            json!({"type": "subscribe", "payload": {"room": "1", "since": "3"}}).to_string(),
            json!({"type": "post", "payload": {"room": "1"}}).to_string(),
            json!({"type": "post", "payload": {"room": "1", "text": 5}}).to_string(),
            json!({"type": "post", "payload": {"room": "1", "text": "x", "clientId": ""}})
                .to_string(),
            json!({"type": "delete", "payload": {"room": "1"}}).to_string(),
            json!({"type": "delete", "payload": {"room": "1", "id": ""}}).to_string(),
            json!({"type": "history", "payload": {"room": "1"}}).to_string(),
            json!({"type": "history", "payload": {"room": "1", "before": 5, "limit": 0}})
                .to_string(),
            json!({"type": "ping", "ref": {"a": 1}}).to_string(),
            json!({"type": "ping", "ref": "r".repeat(200)}).to_string(),
            json!({"type": "ping", "extra": 1}).to_string(),
        ];
        for case in cases {
            let err = ClientFrame::decode(&case).expect_err(&case);
            assert_eq!(err.code, ErrorCode::BadRequest, "{case}");
        }
    }

    #[test]
    fn ping_with_or_without_payload() {
        for frame in [
            json!({"type": "ping"}),
            json!({"type": "ping", "payload": {}}),
        ] {
            assert_eq!(
                decode(frame).expect("valid").message,
                ClientMessage::Ping(Empty {})
            );
        }
    }

    #[test]
    fn client_frames_round_trip() {
        let frames = [
            json!({"type": "subscribe", "ref": "a", "payload": {"room": "1", "since": 4}}),
            json!({"type": "unsubscribe", "payload": {"room": "index"}}),
            json!({"type": "post", "ref": 9, "payload": {"room": "1", "text": "hi", "clientId": "c-1"}}),
            json!({"type": "delete", "payload": {"room": "1", "id": "abc"}}),
            json!({"type": "history", "payload": {"room": "1", "before": 10, "limit": 20}}),
            json!({"type": "ping", "payload": {}}),
            json!({"type": "post", "payload": {"room": "1", "text": "re", "replyTo": "demo-1-1"}}),
            json!({"type": "edit", "ref": "e", "payload": {"room": "1", "id": "abc", "text": "new"}}),
            json!({"type": "react", "payload": {"room": "1", "id": "abc", "emoji": "🎉", "on": true}}),
            json!({"type": "react", "payload": {"room": "1", "id": "abc", "emoji": "❤️", "on": false}}),
            json!({"type": "typing", "payload": {"room": "index"}}),
        ];
        for json in frames {
            let frame = decode(json.clone()).expect("valid");
            let encoded: Value = serde_json::from_str(&frame.encode()).expect("json");
            assert_eq!(encoded, json);
        }
    }

    #[test]
    fn server_frames_have_contract_shapes() {
        let comment = sample_comment();
        let cases = [
            (
                ServerFrame::push(ServerMessage::Welcome(Welcome {
                    connection_id: "k".into(),
                    user: None,
                    heartbeat_ms: 15000,
                })),
                json!({"type": "welcome", "payload": {"connectionId": "k", "user": null, "heartbeatMs": 15000}}),
            ),
            (
                ServerFrame::reply(
                    Some("r".into()),
                    ServerMessage::Ack(Ack::Posted {
                        comment: comment.clone(),
                    }),
                ),
                json!({"type": "ack", "ref": "r", "payload": {"comment": serde_json::to_value(&comment).expect("json")}}),
            ),
            (
                ServerFrame::reply(None, ServerMessage::Ack(Ack::Deleted { id: "c1".into() })),
                json!({"type": "ack", "payload": {"id": "c1"}}),
            ),
            (
                ServerFrame::push(ServerMessage::Pong(Empty {})),
                json!({"type": "pong", "payload": {}}),
            ),
            (
                ServerFrame::push(ServerMessage::Notice(Notice {
                    text: "hi".into(),
                    from: "admin".into(),
                    room: None,
                })),
                json!({"type": "notice", "payload": {"text": "hi", "from": "admin"}}),
            ),
            (
                ServerFrame::error(
                    Some(Ref::Number(2)),
                    ErrorCode::NotSubscribed,
                    "subscribe first",
                ),
                json!({"type": "error", "ref": 2, "payload": {"code": "not_subscribed", "message": "subscribe first"}}),
            ),
            (
                ServerFrame::push(ServerMessage::CommentDeleted(CommentDeleted {
                    room: RoomId::index(),
                    id: "c1".into(),
                })),
                json!({"type": "comment_deleted", "payload": {"room": "index", "id": "c1"}}),
            ),
        ];
        for (frame, expected) in cases {
            let text = frame.encode();
            assert_eq!(
                serde_json::from_str::<Value>(&text).expect("json"),
                expected
            );
            assert_eq!(ServerFrame::decode(&text).expect("decodes"), frame);
        }
        let comment_frame = ServerFrame::push(ServerMessage::Comment(comment));
        assert_eq!(comment_frame.kind(), "comment");
        assert_eq!(
            ServerFrame::decode(&comment_frame.encode()).expect("decodes"),
            comment_frame
        );
    }

    #[test]
    fn post_reply_to() {
        let frame = decode(
            json!({"type": "post", "payload": {"room": "1", "text": "yes", "replyTo": "c-9"}}),
        )
        .expect("valid");
        let ClientMessage::Post(post) = frame.message else {
            panic!("not a post")
        };
        assert_eq!(post.reply_to.map(String::from), Some("c-9".to_owned()));
        let frame = decode(
            json!({"type": "post", "payload": {"room": "1", "text": "yes", "replyTo": null}}),
        )
        .expect("null replyTo is no reply");
        assert!(matches!(
            frame.message,
            ClientMessage::Post(Post { reply_to: None, .. })
        ));
        for bad in [
            json!(""),
            json!("a b"),
            json!("x".repeat(129)),
            json!(5),
            json!({"$ne": 1}),
            json!(["a"]),
        ] {
            let err = decode_err(
                json!({"type": "post", "ref": "p", "payload": {"room": "1", "text": "x", "replyTo": bad}}),
            );
            assert_eq!(err.code, ErrorCode::BadRequest);
            assert_eq!(err.reference, Some(Ref::Text("p".into())));
        }
    }

    #[test]
    fn edit_rules() {
        let frame = decode(
            json!({"type": "edit", "payload": {"room": "1", "id": "abc", "text": "  new  "}}),
        )
        .expect("valid");
        let ClientMessage::Edit(edit) = frame.message else {
            panic!("not an edit")
        };
        assert_eq!((edit.id.as_str(), edit.text.as_str()), ("abc", "new"));

        let empty = decode_err(
            json!({"type": "edit", "ref": 1, "payload": {"room": "1", "id": "abc", "text": " "}}),
        );
        assert_eq!(
            (empty.code, empty.reference),
            (ErrorCode::BadRequest, Some(Ref::Number(1)))
        );
        let long = decode_err(
            json!({"type": "edit", "payload": {"room": "1", "id": "abc", "text": "a".repeat(2001)}}),
        );
        assert_eq!(long.code, ErrorCode::TooLarge);
        for payload in [
            json!({"room": "1", "id": "abc"}),
            json!({"room": "1", "text": "x"}),
            json!({"id": "abc", "text": "x"}),
            json!({"room": "1", "id": "", "text": "x"}),
            json!({"room": "1", "id": "a/b", "text": "x"}),
            json!({"room": "1", "id": 5, "text": "x"}),
            json!({"room": "a b", "id": "abc", "text": "x"}),
            json!({"room": "1", "id": "abc", "text": 5}),
            json!({"room": "1", "id": "abc", "text": "x", "clientId": "k"}),
            json!({"room": "1", "id": "abc", "text": "x", "extra": true}),
        ] {
            let err = decode_err(json!({"type": "edit", "payload": payload}));
            assert_eq!(err.code, ErrorCode::BadRequest, "{payload}");
        }
    }

    #[test]
    fn react_rules() {
        let frame = decode(json!({"type": "react", "payload": {"room": "1", "id": "abc", "emoji": "👍", "on": true}}))
            .expect("valid");
        assert_eq!(
            frame.message,
            ClientMessage::React(React {
                room: RoomId::parse("1").expect("valid"),
                id: CommentId::parse("abc").expect("valid"),
                emoji: Emoji::ThumbsUp,
                on: true,
            })
        );
        let bare_heart = decode(json!({"type": "react", "payload": {"room": "1", "id": "abc", "emoji": "\u{2764}", "on": true}}))
            .expect("bare heart");
        assert!(matches!(
            bare_heart.message,
            ClientMessage::React(React {
                emoji: Emoji::Heart,
                ..
            })
        ));
        for payload in [
            json!({"room": "1", "id": "abc", "emoji": "🙂", "on": true}),
            json!({"room": "1", "id": "abc", "emoji": "👍🏻", "on": true}),
            json!({"room": "1", "id": "abc", "emoji": "", "on": true}),
            json!({"room": "1", "id": "abc", "emoji": "thumbs_up", "on": true}),
            json!({"room": "1", "id": "abc", "emoji": 1, "on": true}),
            json!({"room": "1", "id": "abc", "emoji": "👍"}),
            json!({"room": "1", "id": "abc", "on": true}),
            json!({"room": "1", "emoji": "👍", "on": true}),
            json!({"id": "abc", "emoji": "👍", "on": true}),
            json!({"room": "1", "id": "abc", "emoji": "👍", "on": "yes"}),
            json!({"room": "1", "id": "abc", "emoji": "👍", "on": 1}),
            json!({"room": "1", "id": "abc", "emoji": "👍", "on": null}),
            json!({"room": "1", "id": "", "emoji": "👍", "on": true}),
            json!({"room": "1", "id": "a b", "emoji": "👍", "on": true}),
            json!({"room": "1", "id": "abc", "emoji": "👍", "on": true, "count": 5}),
        ] {
            let err = decode_err(json!({"type": "react", "ref": "r", "payload": payload}));
            assert_eq!(err.code, ErrorCode::BadRequest, "{payload}");
            assert_eq!(err.reference, Some(Ref::Text("r".into())));
        }
    }

    #[test]
    fn typing_and_room_payload_rules() {
        let frame = decode(json!({"type": "typing", "payload": {"room": "index"}})).expect("valid");
        assert_eq!(
            frame.message,
            ClientMessage::Typing(RoomOnly {
                room: RoomId::index()
            })
        );
        for bad in [
            json!({"type": "typing"}),
            json!({"type": "typing", "payload": {}}),
            json!({"type": "typing", "payload": {"room": "a/b"}}),
            json!({"type": "typing", "payload": {"room": "1", "user": "JD"}}),
            json!({"type": "unsubscribe", "payload": {"room": "1", "x": 1}}),
            json!({"type": "delete", "payload": {"room": "1", "id": "a", "x": 1}}),
        ] {
            assert_eq!(decode_err(bad).code, ErrorCode::BadRequest);
        }
    }

    #[test]
    fn discussion_server_frames_have_contract_shapes() {
        let room = RoomId::parse("1").expect("valid");
        let mut comment = sample_comment();
        comment.edited_at = Some("2026-11-22T21:05:00.000Z".into());
        comment.reply_to = Some("c0".into());
        comment.reactions.insert(Emoji::Joy, 3);
        let user = UserRef {
            id: "JD".into(),
            name: "John Doe".into(),
        };
        let mut mine = Mine::new();
        mine.insert(
            "c1".into(),
            [Emoji::Tada, Emoji::ThumbsUp].into_iter().collect(),
        );
        let cases = [
            (
                ServerMessage::CommentEdited(CommentEdited {
                    room: room.clone(),
                    comment: comment.clone(),
                }),
                json!({"type": "comment_edited", "payload": {"room": "1", "comment": {
                    "id": "c1", "seq": 7, "room": "1", "author": {"id": "JD", "name": "John"},
                    "text": "<b>hi</b>", "createdAt": "2026-11-22T21:00:00.000Z",
                    "replyTo": "c0", "editedAt": "2026-11-22T21:05:00.000Z", "reactions": {"😂": 3}
                }}}),
            ),
            (
                ServerMessage::Reactions(ReactionsChanged {
                    room: room.clone(),
                    id: "c1".into(),
                    reactions: comment.reactions.clone(),
                }),
                json!({"type": "reactions", "payload": {"room": "1", "id": "c1", "reactions": {"😂": 3}}}),
            ),
            (
                ServerMessage::Ack(Ack::Reacted {
                    id: "c1".into(),
                    reactions: Reactions::new(),
                }),
                json!({"type": "ack", "payload": {"id": "c1", "reactions": {}}}),
            ),
            (
                ServerMessage::Typing(Typing {
                    room: room.clone(),
                    user: user.clone(),
                }),
                json!({"type": "typing", "payload": {"room": "1", "user": {"id": "JD", "name": "John Doe"}}}),
            ),
            (
                ServerMessage::Presence(Presence {
                    room: room.clone(),
                    readers: 3,
                    users: vec![user],
                }),
                json!({"type": "presence", "payload": {"room": "1", "readers": 3, "users": [{"id": "JD", "name": "John Doe"}]}}),
            ),
            (
                ServerMessage::Subscribed(Subscribed {
                    room: room.clone(),
                    comments: vec![],
                    truncated: false,
                    mine: Some(mine.clone()),
                }),
                json!({"type": "subscribed", "payload": {"room": "1", "comments": [], "truncated": false, "mine": {"c1": ["👍", "🎉"]}}}),
            ),
            (
                ServerMessage::Subscribed(Subscribed {
                    room: room.clone(),
                    comments: vec![],
                    truncated: false,
                    mine: Some(Mine::new()),
                }),
                json!({"type": "subscribed", "payload": {"room": "1", "comments": [], "truncated": false, "mine": {}}}),
            ),
            (
                ServerMessage::Subscribed(Subscribed {
                    room: room.clone(),
                    comments: vec![],
                    truncated: true,
                    mine: None,
                }),
                json!({"type": "subscribed", "payload": {"room": "1", "comments": [], "truncated": true}}),
            ),
            (
                ServerMessage::History(HistoryPage {
                    room: room.clone(),
                    comments: vec![comment.clone()],
                    more: false,
                    mine: Some(mine),
                }),
                json!({"type": "history", "payload": {"room": "1", "comments": [serde_json::to_value(&comment).expect("json")], "more": false, "mine": {"c1": ["👍", "🎉"]}}}),
            ),
        ];
        for (message, expected) in cases {
            let frame = ServerFrame::push(message);
            let text = frame.encode();
            assert_eq!(
                serde_json::from_str::<Value>(&text).expect("json"),
                expected
            );
            assert_eq!(ServerFrame::decode(&text).expect("decodes"), frame);
            assert_eq!(frame.kind(), expected["type"].as_str().expect("type"));
        }
    }
}
