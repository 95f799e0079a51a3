//! A 50 MiB file through two real `library` processes on one MongoDB: uploaded on one,
//! downloaded from the other, neither process's memory grows by more than a few MiB.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::new_client;

/// Peak growth allowed for a streamed 50 MiB file (the real figure is a few MiB).
const MAX_GROWTH_KIB: u64 = 12 * 1024;
const FILE_BYTES: usize = 50 * 1024 * 1024;

/// The library binary as a child process; killed on drop.
struct LibraryProcess {
    child: Child,
    address: String,
}

impl LibraryProcess {
    fn start(mongo_url: &str, data_dir: &std::path::Path) -> Self {
        let port = test_harness::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_library"))
            .env_clear()
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("MONGO_URL", mongo_url)
            .env("DATA_DIR", data_dir)
            .env("DEMO_DIR", data_dir.join("no-demo"))
            .env("COUNTER_URL", "http://127.0.0.1:9")
            .env("GATEWAY_URL", "http://127.0.0.1:9")
            .env("APP_ENV", "development")
            .env("AUTH_THROTTLE", "off")
            .env("WORKERS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn library");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "library did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// (`VmRSS`, `VmHWM`) in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for LibraryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pattern(i: usize) -> u8 {
    (i % 253) as u8
}

/// Downloads `path`, checking every byte against [`pattern`] without keeping the body.
async fn download_and_check(client: &reqwest::Client, url: String) -> usize {
    let mut response = client.get(url).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    let mut offset = 0;
    while let Some(chunk) = response.chunk().await.expect("body chunk") {
        for (i, byte) in chunk.iter().enumerate() {
            assert_eq!(*byte, pattern(offset + i), "byte {}", offset + i);
        }
        offset += chunk.len();
    }
    offset
}

async fn upload(client: &reqwest::Client, url: String, bytes: Vec<u8>) -> Value {
    let form = Form::new()
        .text("title", "Streamed")
        .part("fileBook", Part::bytes(bytes).file_name("big.bin"));
    let response = client.post(url).multipart(form).send().await.expect("POST");
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.expect("book")
}

#[tokio::test]
async fn a_50_mib_file_streams_through_two_processes_without_growing_them() {
    // Arrange: two library processes on one database, a signed-in client on each, and a
    // small upload and download first so both have served a file once.
    let url = test_harness::mongo_url_with_db(&test_harness::mongo(), &test_harness::unique_db());
    let data = tempfile::tempdir().expect("tempdir");
    let a = LibraryProcess::start(&url, &data.path().join("a"));
    let b = LibraryProcess::start(&url, &data.path().join("b"));
    let client = new_client();
    let response = client
        .post(a.url("/api/v1/user/signup"))
        .json(&json!({"username": "streamer", "fullname": "S", "email": "s@example.com", "password": "pw-streamer"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(response.status().as_u16(), 201);
    let response = client
        .post(a.url("/api/v1/user/login"))
        .json(&json!({"username": "streamer", "password": "pw-streamer"}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status().as_u16(), 201);
    let small: Vec<u8> = (0..1024 * 1024).map(pattern).collect();
    let warm = upload(&client, a.url("/api/v1/book"), small).await;
    let warm_id = warm["id"].as_u64().expect("id");
    let got = download_and_check(&client, b.url(&format!("/api/v1/book/{warm_id}/download"))).await;
    assert_eq!(got, 1024 * 1024);
    let big: Vec<u8> = (0..FILE_BYTES).map(pattern).collect();
    let (a_rss_before, a_peak_before) = a.memory_kib();
    let (b_rss_before, b_peak_before) = b.memory_kib();

    // Act: 50 MiB uploaded to A, downloaded from B.
    let book = upload(&client, a.url("/api/v1/book"), big).await;
    let id = book["id"].as_u64().expect("id");
    let (a_rss_after, a_peak_after) = a.memory_kib();
    let got =
        download_and_check(&new_client(), b.url(&format!("/api/v1/book/{id}/download"))).await;
    let (b_rss_after, b_peak_after) = b.memory_kib();

    // Assert
    assert_eq!(got, FILE_BYTES);
    eprintln!(
        "library A (upload 50 MiB): VmRSS {a_rss_before} -> {a_rss_after} KiB, VmHWM {a_peak_before} -> {a_peak_after} KiB; \
         library B (download 50 MiB): VmRSS {b_rss_before} -> {b_rss_after} KiB, VmHWM {b_peak_before} -> {b_peak_after} KiB"
    );
    assert!(
        a_peak_after.saturating_sub(a_peak_before) < MAX_GROWTH_KIB,
        "upload: peak RSS {a_peak_before} -> {a_peak_after} KiB"
    );
    assert!(
        b_peak_after.saturating_sub(b_peak_before) < MAX_GROWTH_KIB,
        "download: peak RSS {b_peak_before} -> {b_peak_after} KiB"
    );
}
