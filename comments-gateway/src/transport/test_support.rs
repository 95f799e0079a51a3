//! Loopback sockets for the tests of the transport and of the fan-out.

use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::Frame;

/// A connected pair on 127.0.0.1: (the server's side, the client's side).
pub(crate) async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(addr).await.expect("connects");
    let (server, _) = listener.accept().await.expect("accepts");
    (server, client)
}

/// The bytes that arrive at `client` within `wait`.
pub(crate) async fn arrived(client: &TcpStream, wait: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 1 << 20];
    while let Ok(ready) = tokio::time::timeout_at(deadline, client.readable()).await {
        ready.expect("readable");
        match client.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    got
}

/// The bytes of these text frames, back to back, as the client reads them.
pub(crate) fn bytes_of(frames: &[&str]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|t| Frame::text(*t).into_bytes().to_vec())
        .collect()
}
