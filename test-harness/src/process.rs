//! Child processes that die with the test process, and free ports.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
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
