//! A local Redis Cluster (Redis 7) of a test's own: N masters, no replicas, on free ports.
//!
//! ```no_run
//! let mut cluster = test_harness::RedisCluster::start(3);
//! let seeds = cluster.seed_nodes(); // "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3": REDIS_CLUSTER_NODES
//! cluster.stop_node(1);             // its slots fail; with the default
//! cluster.start_node(1);            // `cluster-require-full-coverage no` the others keep serving
//! cluster.restart_node(0);          // both, then waits until every node is healthy again
//! ```
//!
//! Each node runs `redis-server --cluster-enabled yes` with its own config file in a temporary
//! folder and a cluster bus port picked free on its own (`--cluster-port`), so only the client
//! port must be free. `redis-cli --cluster create` assigns the slots. A restarted node reuses
//! its config file and rejoins with its slots (its keys are gone: nothing is persisted).
//! Everything is killed when the value is dropped (and when the test process dies).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{Supervised, free_port, wait_for_port, wait_for_port_closed};

/// How long start-up and recovery may take on a loaded machine.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);

struct Node {
    port: u16,
    bus_port: u16,
    process: Option<Supervised>,
}

/// A running Redis Cluster; see the module docs.
pub struct RedisCluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    require_full_coverage: bool,
}

impl RedisCluster {
    /// Starts `masters` masters (at least 3, as `redis-cli --cluster create` wants), assigns
    /// the slots and waits for `cluster_state:ok` on each. Nodes run with
    /// `cluster-require-full-coverage no`: while one master is down, the others keep serving.
    pub fn start(masters: usize) -> Self {
        Self::start_with(masters, false)
    }

    /// As [`Self::start`], choosing `cluster-require-full-coverage` (`true`: the whole cluster
    /// refuses commands while any slot has no master).
    pub fn start_with(masters: usize, require_full_coverage: bool) -> Self {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut cluster = Self {
            dir,
            nodes: (0..masters)
                .map(|_| Node {
                    port: free_port(),
                    bus_port: free_port(),
                    process: None,
                })
                .collect(),
            require_full_coverage,
        };
        for i in 0..masters {
            cluster.spawn_node(i);
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new(redis_cli_bin())
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli --cluster create: {e}"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_healthy();
        cluster
    }

    /// Seed nodes as `REDIS_CLUSTER_NODES` takes them: `127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn seed_nodes(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `redis://127.0.0.1:P` of every node.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The client port of every node, in start order.
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The index of the node that serves `key`'s slot.
    pub fn node_for_key(&self, key: &str) -> usize {
        let reply = command(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
            .unwrap_or_else(|| panic!("CLUSTER KEYSLOT {key} failed"));
        let slot: u16 = reply
            .trim_start_matches(':')
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT answered {reply:?}"));
        self.node_for_slot(slot)
    }

    /// The index of the node that serves `slot`.
    pub fn node_for_slot(&self, slot: u16) -> usize {
        let nodes = command(self.nodes[0].port, &["CLUSTER", "NODES"])
            .unwrap_or_else(|| panic!("CLUSTER NODES failed"));
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(address) = fields.get(1) else {
                continue;
            };
            let port: Option<u16> = address
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok());
            let serves = fields.iter().skip(8).any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(f), Ok(t)) if f <= slot && slot <= t)
            });
            if serves && let Some(i) = self.nodes.iter().position(|n| Some(n.port) == port) {
                return i;
            }
        }
        panic!("no node serves slot {slot}: {nodes}");
    }

    /// Stops node `i` (SIGTERM); the others mark it failed after the node timeout (2 s).
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut process) = self.nodes[i].process.take() {
            process.stop();
        }
        wait_for_port_closed(self.nodes[i].port, Duration::from_secs(10));
    }

    /// Starts node `i` again with its config file (it rejoins with its slots, empty) and waits
    /// until every node reports the cluster healthy.
    pub fn start_node(&mut self, i: usize) {
        self.spawn_node(i);
        self.wait_healthy();
    }

    /// [`Self::stop_node`] then [`Self::start_node`].
    pub fn restart_node(&mut self, i: usize) {
        self.stop_node(i);
        self.start_node(i);
    }

    /// Waits until every running node answers `cluster_state:ok` and sees no node failed.
    pub fn wait_healthy(&self) {
        let started = Instant::now();
        loop {
            let healthy = self.nodes.iter().all(|n| {
                let ok = command(n.port, &["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"));
                let no_failures = command(n.port, &["CLUSTER", "NODES"])
                    .is_some_and(|nodes| !nodes.contains("fail"));
                ok && no_failures
            });
            if healthy {
                return;
            }
            assert!(
                started.elapsed() < HEALTHY_TIMEOUT,
                "the Redis Cluster on ports {:?} is not healthy after {HEALTHY_TIMEOUT:?}",
                self.node_ports()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn_node(&mut self, i: usize) {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let node = &self.nodes[i];
        let dir: PathBuf = self.dir.path().to_path_buf();
        let args: Vec<String> = [
            "--port",
            &node.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &node.bus_port.to_string(),
            "--cluster-config-file",
            &format!("nodes-{}.conf", node.port),
            "--cluster-node-timeout",
            "2000",
            "--cluster-require-full-coverage",
            if self.require_full_coverage {
                "yes"
            } else {
                "no"
            },
            "--dir",
            &dir.to_string_lossy(),
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
        let process = Supervised::spawn(&bin, &args);
        wait_for_port(node.port, Duration::from_secs(10), "redis-server (cluster)");
        self.nodes[i].process = Some(process);
    }
}

fn redis_cli_bin() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_owned())
}

/// Sends one command and answers the reply's text (a bulk string's content, or the line of a
/// simple reply with its type byte), or `None` when the node does not answer.
fn command(port: u16, args: &[&str]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&reply);
        let Some((head, rest)) = text.split_once("\r\n") else {
            continue;
        };
        match head.strip_prefix('$') {
            Some(len) => {
                let len: usize = len.parse().ok()?;
                if rest.len() >= len {
                    return Some(rest[..len].to_owned());
                }
            }
            None if head.starts_with('-') => return None,
            None => return Some(head.to_owned()),
        }
    }
}
