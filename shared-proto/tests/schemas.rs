//! The generated JSON Schemas, AsyncAPI document and TypeScript declarations: the checked-in
//! files are what the generator writes, the AsyncAPI document hangs together, and the schemas
//! say what serde really puts on (and accepts from) the wire.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use proptest::prelude::*;
use serde_json::{Value, json};
use shared_proto::schema::{self, REGENERATE};
use shared_proto::ws::{
    Ack, ClientFrame, CommentDeleted, CommentEdited, Empty, ErrorPayload, HistoryPage, Notice,
    Presence, ReactionsChanged, Ref, RoomOnly, ServerFrame, ServerMessage, Subscribed, Typing,
    UserInfo, UserRef, Welcome,
};
use shared_proto::{
    Author, ClientId, Comment, CommentId, Emoji, ErrorCode, Mine, Reactions, Role, RoomId, Username,
};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A validator for one definition of the bundle (compiled once per definition).
fn validator(definition: &str) -> &'static jsonschema::Validator {
    static COMPILED: LazyLock<Mutex<BTreeMap<String, &'static jsonschema::Validator>>> =
        LazyLock::new(Mutex::default);
    let mut compiled = COMPILED.lock().expect("lock");
    compiled.entry(definition.to_owned()).or_insert_with(|| {
        let schema = schema::schema_for(definition);
        Box::leak(Box::new(
            jsonschema::validator_for(&schema).expect("the schema compiles"),
        ))
    })
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

#[test]
fn checked_in_files_are_current() {
    let mut stale = Vec::new();
    for (path, generated) in schema::files() {
        let checked_in = std::fs::read_to_string(root().join(path)).unwrap_or_default();
        if checked_in != generated {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}; regenerate with `{REGENERATE}` and commit the result"
    );
}

fn pointer_of(reference: &str) -> &str {
    reference.strip_prefix('#').unwrap_or(reference)
}

#[test]
fn asyncapi_document_hangs_together() {
    let doc = schema::asyncapi();
    assert_eq!(doc["asyncapi"], "3.0.0");
    for key in ["title", "version"] {
        assert!(doc["info"][key].as_str().is_some_and(|s| !s.is_empty()));
    }

    // Every $ref is local and resolves.
    let mut all = Vec::new();
    schema::collect_refs(&doc, &mut all);
    assert!(!all.is_empty());
    for reference in &all {
        assert!(reference.starts_with("#/"), "non-local $ref {reference}");
        assert!(
            doc.pointer(pointer_of(reference)).is_some(),
            "$ref {reference} does not resolve"
        );
    }

    // Channel messages are component messages; operations name the channel and only its
    // messages, replies included.
    let channel_messages = doc["channels"]["ws"]["messages"]
        .as_object()
        .expect("channel messages");
    for (key, message) in channel_messages {
        assert_eq!(
            message["$ref"],
            format!("#/components/messages/{key}"),
            "{key}"
        );
    }
    let operations = doc["operations"].as_object().expect("operations");
    let mut sent = BTreeSet::new();
    let mut received = BTreeSet::new();
    for (name, op) in operations {
        assert_eq!(op["channel"]["$ref"], "#/channels/ws", "{name}");
        let action = op["action"].as_str().expect("action");
        assert!(action == "send" || action == "receive", "{name}: {action}");
        let mut listed = op["messages"].as_array().expect("messages").clone();
        if let Some(reply) = op.get("reply") {
            assert_eq!(reply["channel"]["$ref"], "#/channels/ws", "{name}");
            listed.extend(
                reply["messages"]
                    .as_array()
                    .expect("reply messages")
                    .clone(),
            );
        }
        for message in listed {
            let reference = message["$ref"].as_str().expect("a $ref");
            let key = reference
                .strip_prefix("#/channels/ws/messages/")
                .unwrap_or_else(|| panic!("{name}: {reference} is not a message of the channel"));
            assert!(channel_messages.contains_key(key), "{name}: {key}");
        }
        for message in op["messages"].as_array().expect("messages") {
            let key = message["$ref"].as_str().expect("ref").rsplit('/').next();
            let key = key.expect("key").to_owned();
            if action == "send" {
                sent.insert(key);
            } else {
                received.insert(key);
            }
        }
    }

    // Every message type of the Rust enums has its message and operation.
    let defs = schema::definitions();
    let client = schema::variants(&defs, "ClientMessage");
    let server = schema::variants(&defs, "ServerMessage");
    assert_eq!(client.len(), 9, "{client:?}");
    assert_eq!(server.len(), 14, "{server:?}");
    for v in &client {
        assert!(
            received.contains(&schema::message_key("client", &v.kind)),
            "{}",
            v.kind
        );
    }
    for v in &server {
        assert!(
            sent.contains(&schema::message_key("server", &v.kind)),
            "{}",
            v.kind
        );
    }
    assert_eq!(received.len() + sent.len(), channel_messages.len());
}

#[test]
fn typescript_declares_every_definition() {
    let ts = schema::typescript();
    for name in schema::definitions().keys() {
        assert!(
            ts.contains(&format!("export type {name} = ")),
            "{name} is missing"
        );
    }
    assert!(!ts.contains("unknown;"), "an untranslated schema:\n{ts}");
}

fn comment() -> Comment {
    let mut reactions = Reactions::new();
    reactions.insert(Emoji::Heart, 2);
    reactions.insert(Emoji::Tada, 1);
    Comment {
        id: "c1".into(),
        seq: 7,
        room: RoomId::parse("1").expect("room"),
        author: Author {
            id: "JD".into(),
            name: "John Doe".into(),
        },
        text: "<b>hi</b>".into(),
        created_at: "2026-11-22T21:00:00.000Z".into(),
        reply_to: Some("c0".into()),
        edited_at: None,
        reactions,
    }
}

/// One frame of every server message type (and every shape of `ack`), as serde encodes it.
fn server_frames() -> Vec<ServerFrame> {
    let room = RoomId::parse("1").expect("room");
    let user = UserRef {
        id: "JD".into(),
        name: "John Doe".into(),
    };
    let mut mine = Mine::new();
    mine.insert("c1".into(), [Emoji::Heart].into_iter().collect());
    let r = |s: &str| Some(Ref::Text(s.into()));
    vec![
        ServerFrame::push(ServerMessage::Welcome(Welcome {
            connection_id: "k".into(),
            user: Some(UserInfo {
                id: "JD".into(),
                name: "John Doe".into(),
                role: Role::Admin,
            }),
            heartbeat_ms: 15000,
        })),
        ServerFrame::push(ServerMessage::Welcome(Welcome {
            connection_id: "k".into(),
            user: None,
            heartbeat_ms: 15000,
        })),
        ServerFrame::reply(
            r("1"),
            ServerMessage::Subscribed(Subscribed {
                room: room.clone(),
                comments: vec![comment()],
                truncated: true,
                mine: Some(mine.clone()),
            }),
        ),
        ServerFrame::reply(
            Some(Ref::Number(3)),
            ServerMessage::Subscribed(Subscribed {
                room: room.clone(),
                comments: vec![],
                truncated: false,
                mine: None,
            }),
        ),
        ServerFrame::reply(
            r("u"),
            ServerMessage::Unsubscribed(RoomOnly { room: room.clone() }),
        ),
        ServerFrame::reply(
            r("p"),
            ServerMessage::Ack(Ack::Posted { comment: comment() }),
        ),
        ServerFrame::reply(
            r("x"),
            ServerMessage::Ack(Ack::Reacted {
                id: "c1".into(),
                reactions: Reactions::new(),
            }),
        ),
        ServerFrame::reply(r("d"), ServerMessage::Ack(Ack::Deleted { id: "c1".into() })),
        ServerFrame::push(ServerMessage::Comment(comment())),
        ServerFrame::push(ServerMessage::CommentDeleted(CommentDeleted {
            room: room.clone(),
            id: "c1".into(),
        })),
        ServerFrame::reply(
            r("h"),
            ServerMessage::History(HistoryPage {
                room: room.clone(),
                comments: vec![comment()],
                more: false,
                mine: Some(Mine::new()),
            }),
        ),
        ServerFrame::reply(r("ping"), ServerMessage::Pong(Empty {})),
        ServerFrame::push(ServerMessage::Notice(Notice {
            text: "hi".into(),
            from: "admin".into(),
            room: Some(RoomId::index()),
        })),
        ServerFrame::push(ServerMessage::Notice(Notice {
            text: "hi".into(),
            from: "admin".into(),
            room: None,
        })),
        ServerFrame::error(r("e"), ErrorCode::NotSubscribed, "subscribe first"),
        ServerFrame::push(ServerMessage::Error(ErrorPayload {
            code: ErrorCode::BadRequest,
            message: "binary frames are not accepted".into(),
        })),
        ServerFrame::push(ServerMessage::CommentEdited(CommentEdited {
            room: room.clone(),
            comment: Comment {
                edited_at: Some("2026-11-22T21:05:00.000Z".into()),
                ..comment()
            },
        })),
        ServerFrame::push(ServerMessage::Reactions(ReactionsChanged {
            room: room.clone(),
            id: "c1".into(),
            reactions: comment().reactions,
        })),
        ServerFrame::push(ServerMessage::Typing(Typing {
            room: room.clone(),
            user: user.clone(),
        })),
        ServerFrame::push(ServerMessage::Presence(Presence {
            room,
            readers: 3,
            users: vec![user],
        })),
    ]
}

#[test]
fn every_server_frame_serde_writes_is_valid() {
    let frame_schema = validator("ServerFrame");
    let mut kinds = BTreeSet::new();
    for frame in server_frames() {
        let value: Value = serde_json::from_str(&frame.encode()).expect("JSON");
        let problems = errors(frame_schema, &value);
        assert!(problems.is_empty(), "{value}: {problems:?}");
        // And against its own AsyncAPI message.
        let message_schema = schema::message_schema("server", frame.kind()).expect("a message");
        let message_validator = jsonschema::validator_for(&message_schema).expect("compiles");
        let problems = errors(&message_validator, &value);
        assert!(
            problems.is_empty(),
            "{}: {value}: {problems:?}",
            frame.kind()
        );
        kinds.insert(frame.kind());
    }
    assert_eq!(kinds.len(), 14, "{kinds:?}");
}

#[test]
fn frames_off_the_contract_are_invalid() {
    let server = validator("ServerFrame");
    let base = serde_json::to_value(comment()).expect("JSON");
    let with = |field: &str, value: Value| {
        let mut comment = base.clone();
        comment[field] = value;
        json!({"type": "comment", "payload": comment})
    };
    for bad in [
        json!({"type": "shout", "payload": {}}),
        json!({"type": "pong"}),
        json!({"type": "pong", "payload": {}, "extra": 1}),
        json!({"type": "error", "payload": {"code": "teapot", "message": "x"}}),
        json!({"type": "error", "ref": {"a": 1}, "payload": {"code": "bad_request", "message": "x"}}),
        json!({"type": "welcome", "payload": {"connectionId": "k", "heartbeatMs": 1}}),
        json!({"type": "welcome", "payload": {"connection_id": "k", "user": null, "heartbeatMs": 1}}),
        with("reactions", json!({"🙂": 1})),
        with("reactions", json!({"👍": -1})),
        with("room", json!("a/b")),
        with("seq", json!("7")),
        with("replyTo", json!(5)),
        {
            let mut c = base.clone();
            c.as_object_mut().expect("object").remove("editedAt");
            json!({"type": "comment", "payload": c})
        },
        json!({"type": "typing", "payload": {"room": "1", "user": {"id": "JD"}}}),
        json!({"type": "presence", "payload": {"room": "1", "readers": -1, "users": []}}),
    ] {
        assert!(!server.is_valid(&bad), "accepted {bad}");
    }
}

#[test]
fn client_frames_the_gateway_decodes_are_valid_and_refused_ones_mostly_not() {
    let client = validator("ClientFrame");
    let accepted = [
        json!({"type": "subscribe", "ref": "a", "payload": {"room": "1", "since": 4}}),
        json!({"type": "subscribe", "ref": 1, "payload": {"room": "index", "limit": 20}}),
        json!({"type": "unsubscribe", "payload": {"room": "index"}}),
        json!({"type": "post", "ref": 9, "payload": {"room": "1", "text": "hi", "clientId": "c-1"}}),
        json!({"type": "post", "payload": {"room": "1", "text": "re", "replyTo": "demo-1-1"}}),
        json!({"type": "edit", "ref": "e", "payload": {"room": "1", "id": "abc", "text": "new"}}),
        json!({"type": "delete", "payload": {"room": "1", "id": "abc"}}),
        json!({"type": "react", "payload": {"room": "1", "id": "abc", "emoji": "🎉", "on": true}}),
        json!({"type": "react", "payload": {"room": "1", "id": "abc", "emoji": "❤️", "on": false}}),
        json!({"type": "typing", "payload": {"room": "index"}}),
        json!({"type": "history", "payload": {"room": "1", "before": 10, "limit": 20}}),
        json!({"type": "history", "payload": {"room": "1", "before": 10}}),
        json!({"type": "ping", "payload": {}}),
    ];
    for frame in accepted {
        assert!(
            ClientFrame::decode(&frame.to_string()).is_ok(),
            "the gateway refuses {frame}"
        );
        let problems = errors(client, &frame);
        assert!(problems.is_empty(), "{frame}: {problems:?}");
    }
    // Refused by the decoder and by the schema alike.
    for frame in [
        json!({"type": "shout", "payload": {}}),
        json!({"type": "ping", "payload": {}, "extra": 1}),
        json!({"type": "ping", "ref": "r".repeat(129), "payload": {}}),
        json!({"type": "subscribe", "payload": {"room": "a/b"}}),
        json!({"type": "subscribe", "payload": {"room": "1", "x": 1}}),
        json!({"type": "post", "payload": {"room": "1", "text": ""}}),
        json!({"type": "post", "payload": {"room": "1", "text": "a".repeat(2001)}}),
        json!({"type": "post", "payload": {"room": "1", "text": "x", "clientId": "a b"}}),
        json!({"type": "post", "payload": {"room": "1", "text": "x", "replyTo": "a/b"}}),
        json!({"type": "edit", "payload": {"room": "1", "id": "abc"}}),
        json!({"type": "react", "payload": {"room": "1", "id": "abc", "emoji": "🙂", "on": true}}),
        json!({"type": "react", "payload": {"room": "1", "id": "abc", "emoji": "👍", "on": 1}}),
        json!({"type": "history", "payload": {"room": "1", "before": 10, "limit": 0}}),
        json!({"type": "typing", "payload": {"room": "1", "user": "JD"}}),
    ] {
        assert!(
            ClientFrame::decode(&frame.to_string()).is_err(),
            "the gateway accepts {frame}"
        );
        assert!(!client.is_valid(&frame), "the schema accepts {frame}");
    }
}

proptest! {
    #[test]
    fn id_patterns_agree_with_the_parsers(value in "[ -~é❤]{0,70}|[A-Za-z0-9_.-]{0,140}") {
        let cases: [(&str, bool); 4] = [
            ("RoomId", RoomId::parse(value.clone()).is_ok()),
            ("CommentId", CommentId::parse(value.clone()).is_ok()),
            ("ClientId", ClientId::parse(value.clone()).is_ok()),
            ("Username", Username::parse(value.clone()).is_ok()),
        ];
        for (name, parses) in cases {
            prop_assert_eq!(validator(name).is_valid(&json!(value)), parses, "{} {:?}", name, value);
        }
    }

    #[test]
    fn emoji_schema_is_the_closed_set(value in "[👍❤😂😮😢🎉🙂\u{FE0F} a]{0,3}") {
        let parses = serde_json::from_value::<Emoji>(json!(value)).is_ok();
        // A bare U+2764 is read as the heart but never sent: the schema describes what is sent.
        let bare_heart = value == "\u{2764}";
        prop_assert_eq!(validator("Emoji").is_valid(&json!(value)), parses && !bare_heart);
    }
}

#[test]
fn shared_bodies_serde_writes_are_valid() {
    use shared_proto::counter::{CountResponse, CountsResponse};
    use shared_proto::library_api::{Book, TokenResponse};
    let book = Book {
        id: 1,
        title: "Война и мир".into(),
        authors: "Лев Толстой".into(),
        description: String::new(),
        favorite: 1,
        file_name_cover: "c.png".into(),
        file_original_cover: "cover.png".into(),
        file_name_book: String::new(),
        file_original_book: String::new(),
        views: None,
    };
    let cases = [
        ("Book", serde_json::to_value(&book)),
        (
            "Book",
            serde_json::to_value(Book {
                views: Some(3),
                ..book.clone()
            }),
        ),
        (
            "CountResponse",
            serde_json::to_value(CountResponse {
                book_id: "1".parse().expect("id"),
                count: 8,
            }),
        ),
        (
            "CountsResponse",
            serde_json::to_value(CountsResponse {
                counts: [("1".to_owned(), 8)].into_iter().collect(),
            }),
        ),
        (
            "TokenResponse",
            serde_json::to_value(TokenResponse {
                token: "t".into(),
                expires_at: "2026-01-01T00:00:00.000Z".into(),
            }),
        ),
        (
            "ErrorBody",
            serde_json::to_value(shared_proto::ErrorBody::new(ErrorCode::NotFound, "no")),
        ),
        (
            "Claims",
            serde_json::to_value(shared_proto::Claims {
                sub: Username::parse("JD").expect("name"),
                name: "John Doe".into(),
                role: Role::User,
                exp: 1,
                iat: None,
            }),
        ),
    ];
    for (name, value) in cases {
        let value = value.expect("serialises");
        let problems = errors(validator(name), &value);
        assert!(problems.is_empty(), "{name} {value}: {problems:?}");
    }
    assert!(!validator("Book").is_valid(&json!({"id": "1"})));
}
