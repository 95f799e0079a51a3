//! `spawn_app()`: the real counter application on a free port, with a request helper.

use std::path::PathBuf;

use counter::{Application, Settings};
use serde_json::Value;
use tokio::sync::oneshot;

/// Which store a test app uses.
pub enum Backend {
    /// This run's private Redis, under a key prefix of the test's own.
    Redis { url: String, prefix: String },
    /// The embedded store in `dir`.
    Embedded(PathBuf),
    /// A Redis Cluster: `REDIS_CLUSTER_NODES` as given, under a key prefix of the test's own.
    Cluster { nodes: String, prefix: String },
}

impl Backend {
    /// The run's private Redis with a fresh key prefix.
    pub fn redis() -> Self {
        Backend::Redis {
            url: test_harness::redis(),
            prefix: test_harness::unique_prefix(),
        }
    }
}

/// A running counter.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    service_kit::telemetry::init_for_tests();
    let mut settings = Settings {
        host: "127.0.0.1".into(),
        port: 0,
        workers: 2,
        redis_timeout_ms: 300,
        ..Settings::default()
    };
    match backend {
        Backend::Redis { url, prefix } => {
            settings.redis_url = Some(url);
            settings.redis_key_prefix = prefix;
        }
        Backend::Embedded(dir) => settings.data_dir = dir,
        Backend::Cluster { nodes, prefix } => {
            settings.redis_cluster_nodes = Some(nodes);
            settings.redis_key_prefix = prefix;
        }
    }
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// `POST /counter/{id}/incr` -> (status, body).
    pub async fn incr(&self, id: &str) -> (u16, Value) {
        let res = self
            .client
            .post(self.url(&format!("/counter/{id}/incr")))
            .send()
            .await
            .expect("request");
        read(res).await
    }

    /// `GET path` -> (status, body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        read(res).await
    }

    /// Stops the app gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("clean stop");
        }
    }
}

/// Reads status and JSON body (Null when the body is not JSON).
pub async fn read(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Asserts the contract's error body with the given code.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
}

/// A book id no other test uses.
pub fn unique_book() -> String {
    format!("b{}", &uuid_like()[..12])
}

fn uuid_like() -> String {
    test_harness::unique_prefix()
        .trim_start_matches("t-")
        .trim_end_matches(':')
        .to_owned()
}
