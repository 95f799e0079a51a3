//! Real frames against the published schemas: two gateway instances (shared Redis, a private
//! SecantusDB) are driven until they have sent every server message type, every shape of `ack`
//! and every error code of the contract; each raw text frame received is then validated
//! against the generated JSON Schema of `ServerFrame` (docs/schemas/wire.schema.json) and
//! against its own message in the AsyncAPI document (docs/asyncapi.json).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shared_proto::schema;
use test_harness::MongoServer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::*;

/// The error codes the contract lists for the WebSocket.
const CONTRACT_CODES: [&str; 8] = [
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "rate_limited",
    "too_large",
    "unavailable",
    "not_subscribed",
];

type Frames = Arc<Mutex<Vec<String>>>;

/// A client that keeps every text frame it receives, raw.
struct Recorder {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    frames: Frames,
    next_ref: u64,
}

impl Recorder {
    async fn connect(app: &TestApp, token: Option<&str>, frames: &Frames) -> Recorder {
        let (ws, _) = tokio_tungstenite::connect_async(app.ws_url(token))
            .await
            .expect("upgrade");
        let mut recorder = Recorder {
            ws,
            frames: frames.clone(),
            next_ref: 0,
        };
        recorder.until("welcome").await;
        recorder
    }

    async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("sends");
    }

    async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("open")
                .expect("no error");
            if let Message::Text(text) = message {
                let raw = text.as_str().to_owned();
                let frame = serde_json::from_str(&raw).expect("JSON");
                self.frames.lock().expect("lock").push(raw);
                return frame;
            }
        }
    }

    async fn until(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Sends a request with a fresh `ref` and returns the reply to it.
    async fn request(&mut self, kind: &str, payload: Value) -> Value {
        self.next_ref += 1;
        let reference = format!("r{}", self.next_ref);
        self.send(Message::text(
            json!({"type": kind, "ref": reference, "payload": payload}).to_string(),
        ))
        .await;
        loop {
            let frame = self.recv().await;
            if frame["ref"] == reference.as_str() {
                return frame;
            }
        }
    }

    async fn ok(&mut self, kind: &str, payload: Value, want: &str) -> Value {
        let reply = self.request(kind, payload).await;
        assert_eq!(reply["type"], want, "{kind}: {reply}");
        reply
    }

    async fn refused(&mut self, kind: &str, payload: Value, code: &str) {
        let reply = self.request(kind, payload).await;
        assert_eq!(
            (reply["type"].as_str(), reply["payload"]["code"].as_str()),
            (Some("error"), Some(code)),
            "{kind}: {reply}"
        );
    }

    /// Reads (and records) whatever arrives within `quiet`.
    async fn drain(&mut self, quiet: Duration) {
        while let Ok(Some(Ok(message))) = tokio::time::timeout(quiet, self.ws.next()).await {
            if let Message::Text(text) = message {
                self.frames
                    .lock()
                    .expect("lock")
                    .push(text.as_str().to_owned());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_frame_matches_the_published_schemas() {
    let mongo = tokio::task::spawn_blocking(MongoServer::start)
        .await
        .expect("mongo starts");
    let backends = Backends {
        redis: Some(test_harness::redis()),
        mongo: Some(format!(
            "{}&serverSelectionTimeoutMS=500&connectTimeoutMS=500",
            test_harness::mongo_url_with_db(&mongo.url(), "library")
        )),
        prefix: test_harness::unique_prefix(),
        data_dir: None,
        demo_dir: None,
    };
    let mut a = spawn_app(&backends).await;
    let mut b = spawn_app(&backends).await;
    let frames: Frames = Arc::default();
    let room = json!({"room": "w"});

    let mut anon = Recorder::connect(&a, None, &frames).await;
    let mut jd = Recorder::connect(&a, Some(&user_token("JD")), &frames).await;
    // The other user is on the other instance: its live frames come through Redis.
    let mut bc = Recorder::connect(&b, Some(&user_token("BadComedian")), &frames).await;

    anon.ok("subscribe", room.clone(), "subscribed").await;
    jd.ok("subscribe", room.clone(), "subscribed").await;
    bc.ok("subscribe", room.clone(), "subscribed").await;
    bc.until("presence").await;

    let first = jd
        .ok(
            "post",
            json!({"room": "w", "text": "first", "clientId": "k-1"}),
            "ack",
        )
        .await;
    let first_id = first["payload"]["comment"]["id"].clone();
    bc.until("comment").await;
    let reply = bc
        .ok(
            "post",
            json!({"room": "w", "text": "a reply", "replyTo": first_id}),
            "ack",
        )
        .await;
    let reply_id = reply["payload"]["comment"]["id"].clone();
    jd.ok(
        "edit",
        json!({"room": "w", "id": first_id, "text": "first, edited"}),
        "ack",
    )
    .await;
    bc.until("comment_edited").await;
    jd.ok(
        "react",
        json!({"room": "w", "id": reply_id, "emoji": "❤️", "on": true}),
        "ack",
    )
    .await;
    bc.until("reactions").await;
    jd.send(Message::text(
        json!({"type": "typing", "payload": {"room": "w"}}).to_string(),
    ))
    .await;
    bc.until("typing").await;

    // Backlogs: the latest page (truncated), a resume with `since`, a history page; `mine` set.
    let latest = jd
        .ok("subscribe", json!({"room": "w", "limit": 1}), "subscribed")
        .await;
    assert_eq!(latest["payload"]["truncated"], true, "{latest}");
    jd.ok("subscribe", json!({"room": "w", "since": 0}), "subscribed")
        .await;
    let page = jd
        .ok("history", json!({"room": "w", "before": 1000}), "history")
        .await;
    assert!(
        page["payload"]["mine"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "{page}"
    );
    jd.ok("ping", json!({}), "pong").await;

    let gone = jd
        .ok("post", json!({"room": "w", "text": "to delete"}), "ack")
        .await;
    let gone_id = gone["payload"]["comment"]["id"].clone();
    jd.ok("delete", json!({"room": "w", "id": gone_id}), "ack")
        .await;
    bc.until("comment_deleted").await;

    let admin = Some(ADMIN_TOKEN);
    assert_eq!(a.notice(admin, json!({"text": "to all"})).await, 202);
    assert_eq!(
        a.notice(admin, json!({"text": "to w", "room": "w"})).await,
        202
    );
    for client in [&mut anon, &mut bc] {
        client.until("notice").await;
        client.until("notice").await;
    }

    // Every error code of the contract.
    jd.send(Message::text("not json")).await;
    assert_eq!(jd.until("error").await["payload"]["code"], "bad_request");
    jd.send(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(jd.until("error").await["payload"]["code"], "bad_request");
    jd.refused("shout", json!({}), "bad_request").await;
    jd.refused(
        "react",
        json!({"room": "w", "id": reply_id, "emoji": "🙂", "on": true}),
        "bad_request",
    )
    .await;
    anon.refused("post", json!({"room": "w", "text": "hi"}), "unauthorized")
        .await;
    jd.refused(
        "post",
        json!({"room": "elsewhere", "text": "hi"}),
        "not_subscribed",
    )
    .await;
    jd.refused("delete", json!({"room": "w", "id": reply_id}), "forbidden")
        .await;
    jd.refused("delete", json!({"room": "w", "id": "nope"}), "not_found")
        .await;
    jd.refused(
        "post",
        json!({"room": "w", "text": "a".repeat(2001)}),
        "too_large",
    )
    .await;
    let mut limited = false;
    for i in 0..30 {
        let reply = jd
            .request(
                "react",
                json!({"room": "w", "id": reply_id, "emoji": "👍", "on": i % 2 == 0}),
            )
            .await;
        if reply["payload"]["code"] == "rate_limited" {
            limited = true;
            break;
        }
        assert_eq!(reply["type"], "ack", "{reply}");
    }
    assert!(limited, "30 reactions in a row were never rate limited");
    jd.ok("unsubscribe", room.clone(), "unsubscribed").await;

    // The store goes away: reads that need it are `unavailable`.
    let _mongo = tokio::task::spawn_blocking(move || {
        let mut mongo = mongo;
        mongo.stop();
        mongo
    })
    .await
    .expect("mongo stops");
    bc.refused(
        "history",
        json!({"room": "w", "before": 1000}),
        "unavailable",
    )
    .await;

    for client in [&mut anon, &mut jd, &mut bc] {
        client.drain(Duration::from_millis(300)).await;
    }
    let frames = frames.lock().expect("lock").clone();
    check_frames(&frames);
    let _ = a.stop().await;
    let _ = b.stop().await;
}

/// Validates every frame and asserts the run met every message type, `ack` shape and error
/// code.
fn check_frames(frames: &[String]) {
    let whole = jsonschema::validator_for(&schema::schema_for("ServerFrame"))
        .expect("ServerFrame schema compiles");
    let mut by_kind: BTreeMap<String, jsonschema::Validator> = BTreeMap::new();
    let mut kinds = BTreeSet::new();
    let mut acks = BTreeSet::new();
    let mut codes = BTreeSet::new();
    let mut problems = Vec::new();
    for raw in frames {
        let frame: Value = serde_json::from_str(raw).expect("JSON");
        let kind = frame["type"].as_str().unwrap_or_default().to_owned();
        for error in whole.iter_errors(&frame) {
            problems.push(format!(
                "{raw}\n  ServerFrame: {error} at {}",
                error.instance_path()
            ));
        }
        let validator = by_kind.entry(kind.clone()).or_insert_with(|| {
            let schema = schema::message_schema("server", &kind)
                .unwrap_or_else(|| panic!("no AsyncAPI message for {raw}"));
            jsonschema::validator_for(&schema).expect("message schema compiles")
        });
        for error in validator.iter_errors(&frame) {
            problems.push(format!(
                "{raw}\n  server.{kind}: {error} at {}",
                error.instance_path()
            ));
        }
        match kind.as_str() {
            "ack" => {
                let mut keys: Vec<&str> = frame["payload"]
                    .as_object()
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                keys.sort_unstable();
                acks.insert(keys.join(","));
            }
            "error" => {
                codes.insert(
                    frame["payload"]["code"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            _ => {}
        }
        kinds.insert(kind);
    }
    assert!(
        problems.is_empty(),
        "{} of {} frames do not match the schemas:\n{}",
        problems.len(),
        frames.len(),
        problems.join("\n")
    );

    let defs = schema::definitions();
    let all_kinds: BTreeSet<String> = schema::variants(&defs, "ServerMessage")
        .into_iter()
        .map(|v| v.kind)
        .collect();
    assert_eq!(all_kinds.len(), 14, "{all_kinds:?}");
    let missing: Vec<&String> = all_kinds.difference(&kinds).collect();
    assert!(missing.is_empty(), "never received: {missing:?}");
    let want_acks: BTreeSet<String> = ["comment", "id", "id,reactions"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(acks, want_acks, "ack shapes");
    let missing: Vec<&str> = CONTRACT_CODES
        .into_iter()
        .filter(|c| !codes.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "error codes never received: {missing:?}"
    );
}
