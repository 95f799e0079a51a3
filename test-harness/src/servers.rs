//! Private redis-server and SecantusDB (MongoDB wire protocol) instances.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process::{Supervised, free_port, wait_for_port, wait_for_port_closed};

/// A redis-server of a test's own, on a free port, that can be stopped and started again.
pub struct RedisServer {
    port: u16,
    process: Option<Supervised>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port, without persistence.
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            process: None,
        };
        server.start_again();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server; its port stays reserved for [`Self::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
        wait_for_port_closed(self.port, Duration::from_secs(5));
    }

    /// Starts the server again on the same port (empty: it keeps nothing on disk).
    pub fn start_again(&mut self) {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.process = Some(Supervised::spawn(&bin, &args));
        wait_for_port(self.port, Duration::from_secs(10), "redis-server");
        wait_for_redis_ping(self.port);
    }
}

fn wait_for_redis_ping(port: u16) {
    for _ in 0..100 {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut reply = [0u8; 16];
            if stream.write_all(b"PING\r\n").is_ok()
                && let Ok(n) = stream.read(&mut reply)
                && reply[..n].starts_with(b"+PONG")
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server on port {port} does not answer PING");
}

/// A SecantusDB server (MongoDB wire protocol) of a test's own.
pub struct MongoServer {
    port: u16,
    storage: Option<tempfile::TempDir>,
    process: Option<Supervised>,
}

fn secantus_bin() -> String {
    if let Ok(bin) = std::env::var("SECANTUS_BIN") {
        return bin;
    }
    let venv = std::env::var("SECANTUS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned()))
                .join(".cache/secantus-venv")
        });
    let bin = venv.join("bin/secantusd-py");
    if !bin.exists() {
        panic!(
            "{} is missing: run scripts/test-deps.sh (it installs SecantusDB into that venv)",
            bin.display()
        );
    }
    bin.to_string_lossy().into_owned()
}

impl MongoServer {
    /// Starts an in-memory server on a free port.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a server whose data lives in a temporary folder, so it survives
    /// [`Self::stop`] and [`Self::start_again`].
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Self {
        let storage =
            persistent.then(|| tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")));
        let mut server = Self {
            port: free_port(),
            storage,
            process: None,
        };
        server.start_again();
        server
    }

    /// `mongodb://127.0.0.1:PORT/?directConnection=true` (no database in the path).
    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
        wait_for_port_closed(self.port, Duration::from_secs(10));
    }

    /// Starts it again on the same port (with its data, when persistent).
    pub fn start_again(&mut self) {
        let storage = self
            .storage
            .as_ref()
            .map(|d| d.path().to_string_lossy().into_owned())
            .unwrap_or_else(|| ":memory:".to_owned());
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--storage-path",
            &storage,
            "--log-level",
            "ERROR",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.process = Some(Supervised::spawn(&secantus_bin(), &args));
        wait_for_port(self.port, Duration::from_secs(30), "SecantusDB");
    }
}

static SHARED_REDIS: OnceLock<String> = OnceLock::new();
static SHARED_MONGO: OnceLock<String> = OnceLock::new();
static OWNED: OnceLock<std::sync::Mutex<Vec<Box<dyn Send>>>> = OnceLock::new();

fn keep_alive(server: Box<dyn Send>) {
    if let Ok(mut all) = OWNED.get_or_init(Default::default).lock() {
        all.push(server);
    }
}

/// URL of this run's private Redis: `TEST_REDIS_URL`, or one started for this process.
pub fn redis() -> String {
    SHARED_REDIS
        .get_or_init(|| {
            if let Some(url) = std::env::var("TEST_REDIS_URL")
                .ok()
                .filter(|u| !u.is_empty())
            {
                return url;
            }
            let server = RedisServer::start();
            let url = server.url();
            keep_alive(Box::new(server));
            url
        })
        .clone()
}

/// URL (without database) of this run's private Mongo-compatible server: `TEST_MONGO_URL`, or
/// one started for this process.
pub fn mongo() -> String {
    SHARED_MONGO
        .get_or_init(|| {
            if let Some(url) = std::env::var("TEST_MONGO_URL")
                .ok()
                .filter(|u| !u.is_empty())
            {
                return url;
            }
            let server = MongoServer::start();
            let url = server.url();
            keep_alive(Box::new(server));
            url
        })
        .clone()
}

/// `base` (as from [`mongo`] or [`MongoServer::url`]) with `db` as the database in the path.
pub fn mongo_url_with_db(base: &str, db: &str) -> String {
    match base.split_once("/?") {
        Some((host, query)) => format!("{host}/{db}?{query}"),
        None => format!("{}/{db}", base.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_in_url() {
        assert_eq!(
            mongo_url_with_db("mongodb://127.0.0.1:1/?directConnection=true", "x"),
            "mongodb://127.0.0.1:1/x?directConnection=true"
        );
        assert_eq!(mongo_url_with_db("mongodb://h:1", "x"), "mongodb://h:1/x");
    }
}
