//! Guards at the door: origins, per-address caps, secrets, and tokens kept out of the logs.

use std::process::Command;
use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::*;
use crate::procs;

/// The HTTP status of an upgrade attempt (101 when it succeeded).
async fn upgrade_status(url: &str, origin: Option<&str>) -> u16 {
    let mut request = url.into_client_request().expect("request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("header"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_ws, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_from_another_origin_gets_403() {
    let mut settings = settings(&Backends::mongo_only());
    settings.allowed_origins = Some("https://books.example".into());
    let app = spawn_with(settings).await;
    let url = app.ws_url(None);
    assert_eq!(
        upgrade_status(&url, Some("https://evil.example")).await,
        403
    );
    assert_eq!(
        upgrade_status(&url, Some("https://books.example")).await,
        101
    );
    assert_eq!(
        upgrade_status(&url, None).await,
        101,
        "no Origin: not a browser"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_past_the_per_address_cap_get_429() {
    let mut settings = settings(&Backends::mongo_only());
    settings.max_conns_per_ip = 2;
    let app = spawn_with(settings).await;
    let first = app.client(None).await;
    let _second = app.client(None).await;
    assert_eq!(upgrade_status(&app.ws_url(None), None).await, 429);
    first.close().await;
    // The closed connection gives its place back (once the server has seen the close).
    let started = std::time::Instant::now();
    loop {
        let status = upgrade_status(&app.ws_url(None), None).await;
        if status == 101 {
            break;
        }
        assert!(started.elapsed() < WAIT, "place not given back: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn run_binary(envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(procs::gateway_bin());
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", "/nonexistent")
        .env(
            "MONGO_URL",
            "mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=100",
        )
        .env("RUST_LOG", "info");
    for (k, v) in envs {
        command.env(k, v);
    }
    let output = command.output().expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[test]
fn the_gateway_refuses_to_start_with_missing_short_or_shipped_secrets() {
    let long = "0123456789abcdef0123456789abcdef-real";
    for (envs, variable) in [
        (vec![], "AUTH_TOKEN_SECRET"),
        (vec![("AUTH_TOKEN_SECRET", "short")], "AUTH_TOKEN_SECRET"),
        (
            vec![("AUTH_TOKEN_SECRET", "dev-only-token-secret-change-me")],
            "AUTH_TOKEN_SECRET",
        ),
        (
            vec![("AUTH_TOKEN_SECRET", long), ("ADMIN_TOKEN", "short")],
            "ADMIN_TOKEN",
        ),
        (
            vec![
                ("AUTH_TOKEN_SECRET", long),
                ("ADMIN_TOKEN", "change-me-admin-token"),
            ],
            "ADMIN_TOKEN",
        ),
    ] {
        let (code, text) = run_binary(&envs);
        assert_ne!(code, Some(0), "{envs:?} started: {text}");
        assert!(code.is_some(), "{envs:?} exited by a signal");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one log line: {text}");
        assert!(lines[0].contains(variable), "{envs:?}: {text}");
        assert!(
            !envs
                .iter()
                .any(|(_, v)| lines[0].contains(v) && v.len() > 5),
            "the value is not logged: {text}"
        );
    }
}

#[test]
fn development_mode_accepts_the_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = procs::port();
    let gw = procs::gateway(
        port,
        &[("AUTH_TOKEN_SECRET", String::new())],
        dir.path(),
        "dev",
    );
    assert!(
        procs::wait_port(port, Duration::from_secs(60)),
        "starts in development mode: {}",
        gw.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = procs::port();
    let mut gw = procs::gateway(
        port,
        &[
            ("RUST_LOG", "trace".to_owned()),
            ("LOG_FORMAT", "json".to_owned()),
        ],
        dir.path(),
        "logs",
    );
    assert!(
        procs::wait_port(port, Duration::from_secs(60)),
        "gateway up"
    );
    let good = user_token("JD");
    let bad = format!("{}x", user_token("BadComedian"));
    let base = format!("ws://127.0.0.1:{port}/ws?token=");
    let mut client = Client::connect(&format!("{base}{good}")).await;
    client.subscribe("logs").await;
    client.post("logs", "hello").await;
    client.close().await;
    assert_eq!(upgrade_status(&format!("{base}{bad}"), None).await, 401);
    let resp = reqwest::get(format!(
        "http://127.0.0.1:{port}/rooms/logs/comments?token={good}"
    ))
    .await
    .expect("answers");
    assert_eq!(resp.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.signal("TERM");
    gw.wait_gone(Duration::from_secs(20));
    let logs = gw.output();
    assert!(
        logs.contains("/ws?token=***"),
        "the request is logged, redacted"
    );
    for token in [&good, &bad] {
        let signature = token.rsplit('.').next().unwrap_or(token);
        assert!(!logs.contains(signature), "a token leaked into the logs");
    }
}
