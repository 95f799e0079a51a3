//! Fan-out through a Redis that speaks only TLS (`rediss://`): two gateway processes trust the
//! server through `SSL_CERT_FILE`; a gateway that does not know the CA refuses the server.

use std::time::Duration;

use test_harness::TlsRedisServer;

use crate::helpers::*;
use crate::procs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_fan_out_through_a_tls_redis() {
    let redis = TlsRedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mongo = test_harness::mongo_url_with_db(&test_harness::mongo(), &test_harness::unique_db());
    let envs = [
        ("REDIS_URL", redis.url()),
        ("MONGO_URL", mongo),
        (
            "SSL_CERT_FILE",
            redis.ca_file().to_string_lossy().into_owned(),
        ),
    ];
    let (pa, pb) = (procs::port(), procs::port());
    let a = procs::gateway(pa, &envs, dir.path(), "a");
    let b = procs::gateway(pb, &envs, dir.path(), "b");
    for (port, gw) in [(pa, &a), (pb, &b)] {
        assert!(
            procs::wait_port(port, Duration::from_secs(60)),
            "gateway up: {}",
            gw.output()
        );
        wait_ready(port, 200).await;
    }
    let mut reader = Client::connect(&format!("ws://127.0.0.1:{pa}/ws")).await;
    reader.subscribe("tls").await;
    let token = user_token("JD");
    let mut writer = Client::connect(&format!("ws://127.0.0.1:{pb}/ws?token={token}")).await;
    writer.subscribe("tls").await;
    // The reader's instance follows the room on Redis once it has a local subscriber; posts
    // made before that reach it through the store, so both paths end in the same frames.
    for text in ["one", "two", "three"] {
        writer.post("tls", text).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let frame = reader
            .recv_within(Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("only {seen:?} arrived: {}", a.output()));
        if frame["type"] == "comment" {
            seen.push(
                frame["payload"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    assert_eq!(seen, ["one", "two", "three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_does_not_trust_the_certificate_is_not_ready() {
    let redis = TlsRedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let envs = [
        ("REDIS_URL", redis.url()),
        // An empty bundle: the test CA is unknown, as it is to the system's store.
        ("SSL_CERT_FILE", "/dev/null".to_owned()),
    ];
    let port = procs::port();
    let gw = procs::gateway(port, &envs, dir.path(), "untrusting");
    if procs::wait_port(port, Duration::from_secs(60)) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (status, body) = readiness(port).await;
        assert_eq!(status, 503, "an unverified Redis is not ready: {body}");
    } else {
        // Refusing to start at all is as good: it must not have talked to Redis in clear.
        assert!(!gw.alive() || gw.output().to_lowercase().contains("redis"));
    }
}

async fn readiness(port: u16) -> (u16, String) {
    match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
        Ok(resp) => (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

async fn wait_ready(port: u16, want: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = readiness(port).await;
        if status == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz {status}, wanted {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
