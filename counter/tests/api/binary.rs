//! The `counter` binary as an operator runs it: first log line, environment, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "counter binary did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn binary_says_embedded_first_serves_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = test_harness::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_counter"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.path())
        .env("REDIS_URL", "") // empty counts as unset
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn counter");
    wait_ready(port);

    let body = http1::incr(port);
    assert_eq!(body, r#"{"bookId":"1","count":1}"#);

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "no exit within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0), "SIGTERM exits 0");

    let stdout = child.stdout.take().expect("stdout");
    let first = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a log line")
        .expect("utf-8");
    let line: serde_json::Value =
        serde_json::from_str(&first).expect("LOG_FORMAT=json gives JSON lines");
    let message = line["fields"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("embedded"), "first log line: {first}");
    assert!(dir.path().join("counter/counts.redb").exists());
}

#[test]
fn binary_counts_on_a_tls_redis_it_trusts() {
    let redis = test_harness::TlsRedisServer::start();
    let port = test_harness::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_counter"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("REDIS_URL", redis.url())
        .env("REDIS_KEY_PREFIX", test_harness::unique_prefix())
        .env("SSL_CERT_FILE", redis.ca_file())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn counter");
    wait_ready(port);
    assert_eq!(http1::incr(port), r#"{"bookId":"1","count":1}"#);
    assert_eq!(http1::incr(port), r#"{"bookId":"1","count":2}"#);
    let _ = child.kill();
    let _ = child.wait();
}

/// A tiny HTTP/1.1 client so this test needs no async runtime.
mod http1 {
    use std::io::{Read, Write};

    pub fn incr(port: u16) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .write_all(b"POST /counter/1/incr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    }
}
