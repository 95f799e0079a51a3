//! The WebSocket transport: upgraded sockets taken out of actix-http's HTTP/1 dispatcher, one
//! small task per connection that wakes only for client frames, backpressure and closing, frames
//! encoded once and written straight into each socket by whoever sends them, one heartbeat sweep
//! for all connections.
//!
//! The rest of the gateway sees three things: a [`Session`] that gets each client text message,
//! a [`ConnTx`] to push finished [`Frame`]s to, and [`Closing`] reasons.

mod connection;
mod frame;
mod server;
mod socket;
#[cfg(test)]
pub(crate) mod test_support;
mod upgrade;
mod uring;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::GatewayMetrics;

pub use connection::CLOSE_GRACE;
pub use frame::{DecodeError, Decoder, Frame, Incoming};
pub use server::serve;
pub use socket::{Closing, ConnTx, flush_staged, staged_len, take_staged, write_staged};
pub use upgrade::{Acceptor, Upgrader, WS_PATH};
pub use uring::batch_writes;

/// A connection's id inside this instance.
pub type ConnId = u64;

/// What a connection's client input goes to: the protocol session (requests, rooms, replies).
///
/// Called from the connection's task, which also reads the socket and drives closes: nothing
/// here may block or wait. Work that waits (the store) is started by [`Session::text`] and driven
/// by [`Session::poll_work`], or runs elsewhere and pushes its reply through the [`ConnTx`].
pub trait Session: 'static {
    /// One complete text message (UTF-8, at most 64 KiB).
    fn text(&mut self, text: &str);
    /// A binary message (not part of the protocol).
    fn binary(&mut self);
    /// Drives work started by [`Session::text`]; called on every wake-up of the task.
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// False while the session holds as much unanswered input as it will: reading pauses.
    fn accepts_input(&self) -> bool;
    /// The connection ended (for whatever reason): leave rooms, deregister.
    fn closed(&mut self);
}

/// Milliseconds since the process's first call: the heartbeat's clock.
pub fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Socket-level state shared by all connections: the registry the heartbeat walks.
pub struct Transport {
    /// Every open connection: the one registry (heartbeat, shutdown, notices to everyone).
    conns: Mutex<HashMap<ConnId, ConnTx>>,
    /// Set by the shutdown: connections that arrive later close at once.
    shutting_down: AtomicBool,
    next_id: AtomicU64,
    heartbeat: Duration,
    queue_max: usize,
    max_message: usize,
    metrics: GatewayMetrics,
}

impl Transport {
    /// A transport pinging every `heartbeat`, holding at most `queue_max` frames per connection
    /// under backpressure and accepting client messages up to `max_message` bytes.
    pub fn new(
        heartbeat: Duration,
        queue_max: usize,
        max_message: usize,
        metrics: GatewayMetrics,
    ) -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            heartbeat,
            queue_max,
            max_message,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnId, ConnTx>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh connection id.
    pub fn next_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The server ping interval.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    fn add(&self, id: ConnId, tx: ConnTx) {
        let mut conns = self.lock();
        if self.shutting_down.load(Ordering::Acquire) {
            tx.shut_down();
        }
        conns.insert(id, tx);
    }

    fn remove(&self, id: ConnId) {
        let mut conns = self.lock();
        conns.remove(&id);
        if conns.is_empty() && conns.capacity() > 1024 {
            conns.shrink_to_fit();
        }
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.lock().len()
    }

    /// Closes every connection, present and future, with 1001 (after what is queued for it).
    pub fn shut_down_all(&self) {
        let conns = self.lock();
        self.shutting_down.store(true, Ordering::Release);
        for tx in conns.values() {
            tx.shut_down();
        }
    }

    /// Sends `frame` to every connection (an admin notice without a room).
    pub fn broadcast(&self, frame: &Frame, metrics: &GatewayMetrics) {
        let all: Vec<ConnTx> = self.lock().values().cloned().collect();
        for tx in all {
            tx.push(frame.clone(), metrics);
        }
    }

    /// Pings every connection each heartbeat and closes those silent for two intervals.
    pub async fn run_heartbeat(&self, cancel: CancellationToken) {
        let ping = Frame::ping();
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let silent_ms = 2 * self.heartbeat.as_millis() as u64;
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            batch.extend(self.lock().values().cloned());
            let now = clock();
            for tx in batch.drain(..) {
                if tx.silent_for(now) > silent_ms {
                    tx.close_with(Closing::Silent);
                } else {
                    // Pings are not counted as messages; a full queue means a slow peer.
                    tx.enqueue(ping.clone(), &self.metrics);
                }
            }
            batch.shrink_to(1024);
        }
    }
}
