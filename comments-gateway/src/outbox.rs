//! A connection's bounded outbound queue, shared by the connection loop (which drains it into
//! the socket) and everything that sends to the connection (hub, request tasks).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytestring::ByteString;
use tokio::sync::Notify;

use crate::metrics::GatewayMetrics;

/// A connection's bounded outbound queue. An idle connection holds no buffer at all (an
/// empty `VecDeque` does not allocate), and the queue gives its memory back after a burst.
pub struct Outbox {
    queue: Mutex<VecDeque<ByteString>>,
    max: usize,
    /// One wake-up for everything the loop must look at: frames, overflow, shutdown.
    ready: Notify,
    overflowed: AtomicBool,
    shutting_down: AtomicBool,
}

/// Why the hub wants a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The queue overflowed: 1013.
    TooSlow,
    /// The server drains: 1001.
    Shutdown,
}

impl Outbox {
    /// Takes the next queued frame, if any.
    pub fn try_recv(&self) -> Option<ByteString> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let frame = queue.pop_front();
        if queue.is_empty() && queue.capacity() > 64 {
            *queue = VecDeque::new();
        }
        frame
    }

    /// Set once the connection must close.
    pub fn closing(&self) -> Option<Closing> {
        if self.shutting_down.load(Ordering::Acquire) {
            Some(Closing::Shutdown)
        } else if self.overflowed.load(Ordering::Acquire) {
            Some(Closing::TooSlow)
        } else {
            None
        }
    }

    /// Resolves after frames were queued or [`Outbox::closing`] changed (possibly already
    /// handled: check both).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.ready.notified()
    }
}

/// What the hub needs to reach one connection: a handle to its outbox.
#[derive(Clone)]
pub struct ConnTx(Arc<Outbox>);

impl ConnTx {
    /// A queue holding at most `max` frames.
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Outbox {
            queue: Mutex::new(VecDeque::new()),
            max: max.max(1),
            ready: Notify::new(),
            overflowed: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// The receiving side.
    pub fn outbox(&self) -> &Outbox {
        &self.0
    }

    /// Marks the connection too slow; it closes with 1013.
    pub fn overflow(&self, metrics: &GatewayMetrics) {
        if !self.0.overflowed.swap(true, Ordering::AcqRel) {
            metrics.slow_client_closes.inc();
            self.0.ready.notify_one();
        }
    }

    /// Asks the connection to close with 1001.
    pub fn shut_down(&self) {
        self.0.shutting_down.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }

    /// Queues a frame; on overflow marks the connection for a 1013 close. False if not queued.
    pub fn push(&self, frame: ByteString, metrics: &GatewayMetrics) -> bool {
        let queued = self.enqueue(frame, metrics);
        if queued {
            metrics.messages_out.inc();
        }
        queued
    }

    /// [`ConnTx::push`] without counting (the caller counts a whole fan-out at once).
    pub(crate) fn enqueue(&self, frame: ByteString, metrics: &GatewayMetrics) -> bool {
        if self.0.overflowed.load(Ordering::Acquire) {
            return false;
        }
        {
            let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.len() >= self.0.max {
                drop(queue);
                self.overflow(metrics);
                return false;
            }
            queue.push_back(frame);
        }
        self.0.ready.notify_one();
        true
    }
}
