//! A redis-server that speaks only TLS, with a throw-away certificate authority.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Supervised, free_port, wait_for_port};

/// A private `redis-server` listening only on a TLS port, its server certificate (for
/// `localhost` and `127.0.0.1`) signed by a CA made for this server alone.
///
/// Clients trust it through [`Self::ca_file`] (e.g. `SSL_CERT_FILE` for rustls-native-certs);
/// without that file the certificate is unknown and a verifying client must refuse it.
pub struct TlsRedisServer {
    port: u16,
    dir: tempfile::TempDir,
    _process: Supervised,
}

impl TlsRedisServer {
    /// Makes the certificates with the `openssl` command and starts the server.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        make_certificates(dir.path());
        let port = free_port();
        let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--tls-cert-file".into(),
            file("server.pem"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--daemonize".into(),
            "no".into(),
            "--loglevel".into(),
            "warning".into(),
        ];
        let process = Supervised::spawn(&bin, &args);
        wait_for_port(port, Duration::from_secs(10), "redis-server (TLS)");
        Self {
            port,
            dir,
            _process: process,
        }
    }

    /// `rediss://localhost:PORT` (the name the certificate carries).
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap_or_else(|e| panic!("write ext.cnf: {e}"));
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-harness CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl is needed for TLS tests: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
