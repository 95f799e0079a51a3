//! Child processes that die with the test process, and free ports.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports handed out by [`free_port`]: below the kernel's ephemeral range (32768 and up on
/// Linux), so no `bind(0)` and no outgoing connection of another process takes one between the
/// check and the server's own bind.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// How long a reservation holds: longer than any test run; older ones are reused.
const RESERVATION: Duration = Duration::from_secs(3600);

/// A free TCP port on 127.0.0.1 that no other test process on this machine is handed for an
/// hour. A port from `bind(0)` can reach two test processes at once (each binds, releases,
/// then starts a server that takes seconds to bind): the second server then fails to start and
/// its test talks to the first's, so a SIGSTOP meant for its store stops nothing. Here each
/// port is reserved with a file created exclusively in a folder all test processes share.
pub fn free_port() -> u16 {
    let dir = std::env::temp_dir().join(format!("book-library-test-ports-{}", user_id()));
    let _ = std::fs::create_dir_all(&dir);
    let span = u128::from(PORTS.end - PORTS.start);
    for _ in 0..4 * span {
        let port = PORTS.start + (uuid::Uuid::new_v4().as_u128() % span) as u16;
        if reserve(&dir.join(port.to_string())) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // Every reserved port is taken: fall back to one from the kernel.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Creates the reservation file, or takes over one older than [`RESERVATION`].
fn reserve(file: &std::path::Path) -> bool {
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(file)
            .is_ok()
    };
    if create() {
        return true;
    }
    let stale = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age > RESERVATION);
    stale && std::fs::remove_file(file).is_ok() && create()
}

fn user_id() -> String {
    std::env::var("USER").unwrap_or_else(|_| "user".to_owned())
}

/// A server process started through a small shell watchdog that kills it when the test
/// process goes away, even if the test process is killed without running destructors.
pub struct Supervised {
    child: Child,
}

impl Supervised {
    /// Runs `program args...` under the watchdog.
    pub fn spawn(program: &str, args: &[String]) -> Self {
        let me = std::process::id();
        let quoted: Vec<String> = std::iter::once(program.to_owned())
            .chain(args.iter().cloned())
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        // exec-free wrapper: start the server, forward TERM/KILL to it, and kill it when the
        // parent test process disappears.
        let script = format!(
            "{cmd} & c=$!; trap 'kill -TERM $c 2>/dev/null; wait $c; exit 0' TERM; \
             while kill -0 {me} 2>/dev/null && kill -0 $c 2>/dev/null; do sleep 0.2; done; \
             kill -TERM $c 2>/dev/null; sleep 2; kill -KILL $c 2>/dev/null; exit 0",
            cmd = quoted.join(" ")
        );
        let quiet = std::env::var_os("TEST_LOG").is_none();
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(if quiet {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .stderr(if quiet {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Self { child }
    }

    /// Stops the server (SIGTERM through the watchdog) and waits for it.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `port` accepts TCP connections; panics after `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration, what: &str) {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start on port {port} within {timeout:?}");
}

/// Waits until nothing accepts on `port`.
pub fn wait_for_port_closed(port: u16, timeout: Duration) {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        assert!(ports.iter().all(|p| PORTS.contains(p)), "{ports:?}");
    }
}
