//! The `library` binary refuses to start with an unset, short or shipped secret (one log line
//! naming the variable, a failing exit) unless `APP_ENV=development`; real secrets start it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const GOOD_SESSION: &str = "8c0f2b5e9d7a41c3b6e2f0a9d8c7b6a5e4f3d2c1b0a99887";
const GOOD_TOKEN: &str = "f1e2d3c4b5a697887766554433221100ffeeddccbbaa9988";

/// The binary with a clean environment: only `vars` (plus PATH, a free port, a fresh DATA_DIR).
fn library(data_dir: &Path, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_library"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", data_dir)
        .env("DEMO_DIR", data_dir.join("no-demo"))
        .env("LOG_FORMAT", "json")
        .env("CONFIG_FILE", data_dir.join("none.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// Runs to the end (it must refuse quickly): the exit success and all output.
fn refused(vars: &[(&str, &str)]) -> (bool, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let output = library(tmp.path(), vars).output().expect("runs");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Lines that name `variable` at level ERROR.
fn error_lines_naming<'a>(output: &'a str, variable: &str) -> Vec<&'a str> {
    output
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains(variable))
        .collect()
}

#[test]
fn unset_secrets_are_refused_with_a_line_naming_each() {
    let (ok, output) = refused(&[]);
    assert!(!ok, "started without secrets:\n{output}");
    assert_eq!(
        error_lines_naming(&output, "AUTH_SESSION_SECRET").len(),
        1,
        "{output}"
    );
    assert_eq!(
        error_lines_naming(&output, "AUTH_TOKEN_SECRET").len(),
        1,
        "{output}"
    );
    assert!(!output.contains("library listening"), "{output}");
}

#[test]
fn a_short_secret_is_refused_without_printing_it() {
    let (ok, output) = refused(&[
        ("AUTH_SESSION_SECRET", "hunter2-hunter2"),
        ("AUTH_TOKEN_SECRET", GOOD_TOKEN),
    ]);
    assert!(!ok, "{output}");
    assert_eq!(
        error_lines_naming(&output, "AUTH_SESSION_SECRET").len(),
        1,
        "{output}"
    );
    assert!(
        error_lines_naming(&output, "AUTH_TOKEN_SECRET").is_empty(),
        "{output}"
    );
    assert!(!output.contains("hunter2"), "the value leaked: {output}");
}

#[test]
fn shipped_values_are_refused() {
    // The example file's placeholders and the code's development defaults.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.example"))
        .expect(".env.example");
    let placeholder = |name: &str| -> String {
        example
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!(".env.example has no {name}"))
            .trim()
            .to_owned()
    };
    let session = placeholder("AUTH_SESSION_SECRET");
    let token = placeholder("AUTH_TOKEN_SECRET");
    let (ok, output) = refused(&[
        ("AUTH_SESSION_SECRET", session.as_str()),
        ("AUTH_TOKEN_SECRET", GOOD_TOKEN),
    ]);
    assert!(!ok, "{output}");
    assert_eq!(
        error_lines_naming(&output, "AUTH_SESSION_SECRET").len(),
        1,
        "{output}"
    );
    let (ok, output) = refused(&[
        ("AUTH_SESSION_SECRET", GOOD_SESSION),
        ("AUTH_TOKEN_SECRET", token.as_str()),
    ]);
    assert!(!ok, "{output}");
    assert_eq!(
        error_lines_naming(&output, "AUTH_TOKEN_SECRET").len(),
        1,
        "{output}"
    );
    let (ok, output) = refused(&[
        ("AUTH_SESSION_SECRET", library::settings::DEV_SESSION_SECRET),
        ("AUTH_TOKEN_SECRET", library::settings::DEV_TOKEN_SECRET),
        ("APP_ENV", "production"),
    ]);
    assert!(!ok, "{output}");
    assert_eq!(
        error_lines_naming(&output, "AUTH_SESSION_SECRET").len(),
        1,
        "{output}"
    );
    assert_eq!(
        error_lines_naming(&output, "AUTH_TOKEN_SECRET").len(),
        1,
        "{output}"
    );
}

/// Starts the binary and waits for "library listening"; SIGTERM then ends it with 0.
fn starts(vars: &[(&str, &str)]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child: Child = library(tmp.path(), vars).spawn().expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = Vec::new();
    let listening = loop {
        match seen.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let port = line
                    .contains("library listening")
                    .then(|| listening_port(&line))
                    .flatten();
                output.push(line);
                if let Some(port) = port {
                    break healthy(port);
                }
            }
            Err(_) => break false,
        }
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("waits");
    assert!(listening, "never listened:\n{}", output.join("\n"));
    assert!(status.success(), "exit {status:?}:\n{}", output.join("\n"));
}

/// The `"port":N` of the JSON "library listening" line.
fn listening_port(line: &str) -> Option<u16> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    json["fields"]["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
}

/// Waits until `GET /healthz` answers 200 (then the SIGTERM handler is installed too).
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    for _ in 0..300 {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ =
                stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn real_secrets_start_it() {
    starts(&[
        ("AUTH_SESSION_SECRET", GOOD_SESSION),
        ("AUTH_TOKEN_SECRET", GOOD_TOKEN),
    ]);
}

#[test]
fn development_mode_starts_without_secrets() {
    starts(&[("APP_ENV", "development")]);
}
