//! Servers run as real processes (so they can be stopped, killed and restarted): the gateway
//! binary, redis-server and SecantusDB, each under a watchdog that kills it when the test
//! process goes away, with its PID known for signals.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_harness::free_port;

/// The gateway binary under test (`CHAOS_GATEWAY_BIN` overrides it, e.g. a release build).
pub fn gateway_bin() -> String {
    std::env::var("CHAOS_GATEWAY_BIN")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_comments-gateway").to_owned())
}

/// A process started through a small shell watchdog; `pid` is the server itself.
pub struct Proc {
    watchdog: Child,
    pub pid: u32,
    pub log: PathBuf,
}

fn quote(a: &str) -> String {
    format!("'{}'", a.replace('\'', "'\\''"))
}

impl Proc {
    /// Starts `program args` with `envs`, output to `log`.
    pub fn spawn(program: &str, args: &[String], envs: &[(String, String)], log: &Path) -> Proc {
        let me = std::process::id();
        let pidfile = log.with_extension("pid");
        let _ = std::fs::remove_file(&pidfile);
        let cmd: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().cloned())
            .map(|a| quote(&a))
            .collect();
        let script = format!(
            "{cmd} >>{log} 2>&1 & c=$!; echo $c > {pidfile}; \
             while kill -0 {me} 2>/dev/null && kill -0 $c 2>/dev/null; do sleep 0.2; done; \
             kill -CONT $c 2>/dev/null; kill -KILL $c 2>/dev/null; exit 0",
            cmd = cmd.join(" "),
            log = quote(&log.to_string_lossy()),
            pidfile = quote(&pidfile.to_string_lossy()),
        );
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in envs {
            command.env(k, v);
        }
        let watchdog = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let started = Instant::now();
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                break pid;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no pid for {program}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Proc {
            watchdog,
            pid,
            log: log.to_owned(),
        }
    }

    /// Sends a signal (`STOP`, `CONT`, `TERM`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status();
    }

    /// True while the process exists.
    pub fn alive(&self) -> bool {
        Command::new("kill")
            .arg("-0")
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits until the process is gone; false on timeout.
    pub fn wait_gone(&mut self, timeout: Duration) -> bool {
        let started = Instant::now();
        while self.alive() {
            if started.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.watchdog.wait();
        true
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        self.signal("CONT");
        self.signal("KILL");
        self.wait_gone(Duration::from_secs(10));
    }

    /// Resident memory in KiB (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.alive() {
            self.kill();
        }
    }
}

/// Waits until `port` accepts connections.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A private redis-server on `port`.
pub fn redis(port: u16, dir: &Path) -> Proc {
    let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
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
    let p = Proc::spawn(&bin, &args, &[], &dir.join(format!("redis-{port}.log")));
    assert!(wait_port(port, Duration::from_secs(10)), "redis-server up");
    p
}

fn secantus_bin() -> String {
    if let Ok(bin) = std::env::var("SECANTUS_BIN") {
        return bin;
    }
    let venv = std::env::var("SECANTUS_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/secantus-venv",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    });
    format!("{venv}/bin/secantusd-py")
}

/// A private SecantusDB (MongoDB wire protocol) on `port`, in memory.
pub fn mongo(port: u16, dir: &Path) -> Proc {
    let args: Vec<String> = [
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--storage-path",
        ":memory:",
        "--log-level",
        "ERROR",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let p = Proc::spawn(
        &secantus_bin(),
        &args,
        &[],
        &dir.join(format!("mongo-{port}.log")),
    );
    assert!(wait_port(port, Duration::from_secs(30),), "SecantusDB up");
    p
}

/// A gateway process on `port` with `envs` on top of the test defaults.
pub fn gateway(port: u16, envs: &[(&str, String)], dir: &Path, name: &str) -> Proc {
    let mut all: Vec<(String, String)> = vec![
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), port.to_string()),
        ("APP_ENV".into(), "development".into()),
        ("MAX_CONNS_PER_IP".into(), "0".into()),
        ("POST_BURST".into(), "0".into()),
        ("POST_RATE_PER_SEC".into(), "0".into()),
        ("AUTH_TOKEN_SECRET".into(), crate::helpers::SECRET.into()),
        ("WORKERS".into(), "1".into()),
        ("RUST_LOG".into(), "warn".into()),
        (
            "DATA_DIR".into(),
            dir.join(name).to_string_lossy().into_owned(),
        ),
        ("DEMO_DIR".into(), "/nonexistent-demo".into()),
    ];
    for (k, v) in envs {
        all.retain(|(key, _)| key != k);
        all.push(((*k).to_owned(), v.clone()));
    }
    Proc::spawn(&gateway_bin(), &[], &all, &dir.join(format!("{name}.log")))
}

/// A free port.
pub fn port() -> u16 {
    free_port()
}
