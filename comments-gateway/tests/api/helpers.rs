//! Spawning real gateways and talking to them as a client would.

use std::time::Duration;

use comments_gateway::{Application, Settings};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use shared_proto::{Claims, Role, Username};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-token-secret";
pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const WAIT: Duration = Duration::from_secs(10);

/// Which backends a test app uses.
#[derive(Clone)]
pub struct Backends {
    pub redis: Option<String>,
    pub mongo: Option<String>,
    pub prefix: String,
    pub data_dir: Option<String>,
    pub demo_dir: Option<String>,
}

impl Backends {
    /// The run's shared Redis and a fresh Mongo database, with a private channel prefix.
    pub fn shared() -> Self {
        Self {
            redis: Some(test_harness::redis()),
            mongo: Some(test_harness::mongo_url_with_db(
                &test_harness::mongo(),
                &test_harness::unique_db(),
            )),
            prefix: test_harness::unique_prefix(),
            data_dir: None,
            demo_dir: None,
        }
    }

    /// Mongo only, in-process fan-out.
    pub fn mongo_only() -> Self {
        Self {
            redis: None,
            ..Self::shared_mongo()
        }
    }

    fn shared_mongo() -> Self {
        Self {
            redis: None,
            mongo: Some(test_harness::mongo_url_with_db(
                &test_harness::mongo(),
                &test_harness::unique_db(),
            )),
            prefix: test_harness::unique_prefix(),
            data_dir: None,
            demo_dir: None,
        }
    }
}

pub struct TestApp {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn settings(backends: &Backends) -> Settings {
    Settings {
        host: "127.0.0.1".into(),
        port: 0,
        redis_url: backends.redis.clone(),
        mongo_url: backends.mongo.clone(),
        data_dir: backends
            .data_dir
            .clone()
            .unwrap_or_else(|| "/nonexistent".into()),
        demo_dir: backends
            .demo_dir
            .clone()
            .unwrap_or_else(|| "/nonexistent-demo".into()),
        auth_token_secret: comments_gateway::settings::Secret::new(SECRET),
        admin_token: Some(comments_gateway::settings::Secret::new(ADMIN_TOKEN)),
        post_burst: 0,
        post_rate_per_sec: 0.0,
        channel_prefix: backends.prefix.clone(),
        workers: 1,
        // The secrets above are test values; the guards have their own tests.
        app_env: service_kit::secrets::AppEnv::Development,
        max_conns_per_ip: 0,
        ..Settings::default()
    }
}

pub async fn spawn_app(backends: &Backends) -> TestApp {
    spawn_with(settings(backends)).await
}

pub async fn spawn_with(settings: Settings) -> TestApp {
    service_kit::telemetry::init_for_tests();
    let app = Application::build(settings).await.expect("app builds");
    let port = app.port();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        port,
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn ws_url(&self, token: Option<&str>) -> String {
        match token {
            Some(t) => format!("ws://127.0.0.1:{}/ws?token={t}", self.port),
            None => format!("ws://127.0.0.1:{}/ws", self.port),
        }
    }

    pub async fn client(&self, token: Option<&str>) -> Client {
        Client::connect(&self.ws_url(token)).await
    }

    /// Triggers the drain and waits for `run_until_stopped` to return.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("stops in time")
                .expect("no panic"),
            None => Ok(()),
        }
    }

    pub async fn ready(&self) -> (u16, Value) {
        let resp = reqwest::get(self.http("/readyz"))
            .await
            .expect("readyz answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Polls /readyz until its status is `want`.
    pub async fn wait_ready(&self, want: u16) -> Value {
        self.wait_ready_within(want, Duration::from_secs(20)).await
    }

    /// Polls /readyz until its status is `want`, for at most `within`.
    pub async fn wait_ready_within(&self, want: u16, within: Duration) -> Value {
        let started = std::time::Instant::now();
        loop {
            let (status, body) = self.ready().await;
            if status == want {
                return body;
            }
            assert!(started.elapsed() < within, "readyz stayed {status}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn notice(&self, token: Option<&str>, body: Value) -> u16 {
        let mut req = reqwest::Client::new()
            .post(self.http("/admin/notice"))
            .json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("answers").status().as_u16()
    }
}

pub fn token_for(user: &str, name: &str, role: Role, exp_offset: i64) -> String {
    token_signed(user, name, role, exp_offset, SECRET)
}

pub fn token_signed(user: &str, name: &str, role: Role, exp_offset: i64, secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let claims = Claims {
        sub: Username::parse(user).expect("valid username"),
        name: name.into(),
        role,
        exp: (now + exp_offset) as u64,
        iat: Some(now as u64),
    };
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encodes")
}

pub fn user_token(user: &str) -> String {
    token_for(user, &format!("{user} Fullname"), Role::User, 3600)
}

pub fn admin_token() -> String {
    token_for("Admin", "The Admin", Role::Admin, 3600)
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Value,
    next_ref: u64,
    /// `presence` frames come unasked after every subscribe and whenever readers change;
    /// only the tests about presence want them (the others skip them).
    pub keep_presence: bool,
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    Closed(Option<u16>),
    Dropped,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("upgrade");
        let mut client = Client {
            ws,
            welcome: Value::Null,
            next_ref: 0,
            keep_presence: false,
        };
        let welcome = client.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        client.welcome = welcome;
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("sends");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("sends");
    }

    /// The next JSON frame; panics on timeout or close.
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("stream open")
                .expect("no error");
            match msg {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if frame["type"] == "presence" && !self.keep_presence {
                        continue;
                    }
                    return frame;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next JSON frame, or None when none arrives within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(wait, self.ws.next())
                .await
                .ok()?
                .expect("stream open")
                .expect("no error");
            match msg {
                Message::Text(text) => {
                    return Some(serde_json::from_str(text.as_str()).expect("JSON frame"));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame of type `kind`, skipping others.
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Sends a request with a fresh ref and returns the reply carrying that ref (other frames
    /// met meanwhile are dropped).
    pub async fn request(&mut self, kind: &str, payload: Value) -> Value {
        self.next_ref += 1;
        let reference = format!("r{}", self.next_ref);
        self.send(json!({"type": kind, "ref": reference, "payload": payload}))
            .await;
        loop {
            let frame = self.recv().await;
            if frame["ref"] == reference {
                return frame;
            }
        }
    }

    pub async fn subscribe(&mut self, room: &str) -> Value {
        let reply = self.request("subscribe", json!({"room": room})).await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        reply
    }

    pub async fn post(&mut self, room: &str, text: &str) -> Value {
        let reply = self
            .request("post", json!({"room": room, "text": text}))
            .await;
        assert_eq!(reply["type"], "ack", "{reply}");
        reply["payload"]["comment"].clone()
    }

    /// Reads until the server closes; returns the close code.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("ends in time")
            {
                None => return Ended::Dropped,
                Some(Err(_)) => return Ended::Dropped,
                Some(Ok(Message::Close(frame))) => {
                    return Ended::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Asserts nothing but control frames arrives for `quiet`.
    pub async fn silent_for(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    if frame["type"] == "presence" && !self.keep_presence {
                        continue;
                    }
                    panic!("unexpected frame {text}")
                }
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Comments of a `comment` frame or list, as seqs.
pub fn seqs(comments: &Value) -> Vec<u64> {
    comments
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["seq"].as_u64().expect("seq"))
        .collect()
}
