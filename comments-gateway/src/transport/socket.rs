//! One connection's socket as every sender sees it: frames are written straight into the kernel
//! from the sending thread while it takes them, and queued (bounded) only on backpressure, which
//! is the one case that wakes the connection's task.
//!
//! A room's fan-out *stages* instead ([`ConnTx::stage`]): under the hub's lock each member's
//! frames are only queued, and the thread writes them once the lock is released
//! ([`flush_staged`]), one `writev` per connection for everything queued by then. While one
//! thread writes a fan-out, the next comment of the room is staged behind it on the
//! connections it has not reached yet, so both go out in one write: the busier the room, the
//! fewer writes per comment (uWebSockets drains its topics once per loop turn to the same end).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;

use super::frame::Frame;
use crate::metrics::GatewayMetrics;

/// Why a connection must close, decided outside its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The outbound queue overflowed: 1013.
    TooSlow,
    /// The server drains: 1001.
    Shutdown,
    /// The peer was silent for two heartbeats.
    Silent,
}

/// Frames a flush writes with one `writev` at most.
const WRITEV_BATCH: usize = 64;

#[derive(Default)]
struct Out {
    /// Bytes the kernel has not taken yet, oldest first (the head may be a frame's tail).
    queue: Queue,
    closing: Option<Closing>,
    /// The socket failed or the connection ended: drop whatever comes.
    dead: bool,
    /// The kernel refused bytes: the connection's task writes the queue once the socket has
    /// room. Otherwise a non-empty queue holds staged frames, which the thread that staged the
    /// first of them writes once it lets go of the hub's lock.
    waiting: bool,
    /// A batched write ([`super::uring`]) holds the queue's head without this lock: nothing
    /// takes frames off the queue or truncates it until [`ConnTx::settle`].
    writing: bool,
    /// The connection's task found the queue under a batched write: wake it when it settles.
    wake_when_settled: bool,
}

thread_local! {
    /// Connections this thread staged frames for and has not written yet.
    static STAGED: RefCell<Vec<ConnTx>> = const { RefCell::new(Vec::new()) };
}

/// How many connections this thread has staged frames for and not written yet.
pub fn staged_len() -> usize {
    STAGED.with(|s| s.borrow().len())
}

/// Takes the connections this thread staged after the first `from`: whoever takes them
/// writes them later with [`write_staged`] (and must: their frames wait for it).
pub fn take_staged(from: usize) -> Vec<ConnTx> {
    STAGED.with(|s| {
        let mut staged = s.borrow_mut();
        let from = from.min(staged.len());
        staged.split_off(from)
    })
}

/// Writes the staged frames of `conns` (taken with [`take_staged`]): in one batched submission
/// where the thread has an `io_uring`, else one write per connection.
pub fn write_staged(conns: &[ConnTx]) {
    if conns.len() > 1 && super::uring::write_batch(conns) {
        return;
    }
    for tx in conns {
        tx.flush_now();
    }
}

/// Writes what this thread staged ([`ConnTx::stage`]); call it once the lock under which the
/// frames were staged is released. Connections another thread writes meanwhile are skipped.
pub fn flush_staged() {
    let staged = STAGED.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if staged.is_empty() {
        return;
    }
    write_staged(&staged);
    let mut staged = staged;
    staged.clear();
    STAGED.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.is_empty() && staged.capacity() <= 65_536 {
            // Keep the allocation for the next fan-out of this thread.
            *slot = staged;
        }
    });
}

/// A frame queue that allocates nothing while it holds one frame or none (most connections,
/// most of the time: a fan-out stages one frame per connection, and more wait only under
/// backpressure or in a coalescing window).
#[derive(Default)]
enum Queue {
    #[default]
    Empty,
    One(Bytes),
    Many(VecDeque<Bytes>),
}

impl Queue {
    fn is_empty(&self) -> bool {
        match self {
            Queue::Empty => true,
            Queue::One(_) => false,
            Queue::Many(q) => q.is_empty(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Queue::Empty => 0,
            Queue::One(_) => 1,
            Queue::Many(q) => q.len(),
        }
    }

    fn push_back(&mut self, bytes: Bytes) {
        match self {
            Queue::Empty => *self = Queue::One(bytes),
            Queue::Many(q) => q.push_back(bytes),
            Queue::One(_) => {
                let mut q = VecDeque::with_capacity(4);
                if let Queue::One(first) = std::mem::take(self) {
                    q.push_back(first);
                }
                q.push_back(bytes);
                *self = Queue::Many(q);
            }
        }
    }

    fn pop_front(&mut self) -> Option<Bytes> {
        match self {
            Queue::Empty => None,
            Queue::One(_) => match std::mem::take(self) {
                Queue::One(bytes) => Some(bytes),
                _ => None,
            },
            Queue::Many(q) => {
                let head = q.pop_front();
                if q.is_empty() {
                    *self = Queue::Empty;
                }
                head
            }
        }
    }

    fn front_mut(&mut self) -> Option<&mut Bytes> {
        match self {
            Queue::Empty => None,
            Queue::One(bytes) => Some(bytes),
            Queue::Many(q) => q.front_mut(),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Queue::Empty => {}
            Queue::One(_) => {
                if len == 0 {
                    *self = Queue::Empty;
                }
            }
            Queue::Many(q) => {
                q.truncate(len);
                if q.is_empty() {
                    *self = Queue::Empty;
                }
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Bytes> {
        let (one, many) = match self {
            Queue::Empty => (None, None),
            Queue::One(bytes) => (Some(bytes), None),
            Queue::Many(q) => (None, Some(q.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Drops everything and the allocation with it.
    fn clear(&mut self) {
        *self = Queue::Empty;
    }
}

/// The shared part of one connection.
pub struct Socket {
    /// None for a detached queue (unit tests of the hub).
    stream: Option<TcpStream>,
    out: Mutex<Out>,
    max: u32,
    /// Milliseconds (of [`super::clock`], wrapping) when the peer last sent anything.
    last_seen: AtomicU32,
    /// The connection's task, woken for backpressure, closing and nothing else.
    task: AtomicWaker,
}

/// What the hub and the session hold to reach one connection: `push` a finished frame.
#[derive(Clone)]
pub struct ConnTx(Arc<Socket>);

impl ConnTx {
    /// A handle over an upgraded socket holding at most `max` frames under backpressure.
    pub fn new(stream: TcpStream, max: usize) -> Self {
        Self::build(Some(stream), max)
    }

    /// A handle with no socket: everything pushed is queued (for tests of the fan-out).
    pub fn detached(max: usize) -> Self {
        Self::build(None, max)
    }

    fn build(stream: Option<TcpStream>, max: usize) -> Self {
        Self(Arc::new(Socket {
            stream,
            out: Mutex::new(Out::default()),
            max: max.clamp(1, u32::MAX as usize) as u32,
            last_seen: AtomicU32::new(super::clock() as u32),
            task: AtomicWaker::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Out> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.0.out.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a frame: written at once when the socket has room and nothing waits before it,
    /// else queued; a full queue marks the connection too slow (1013). False if dropped.
    pub fn push(&self, frame: Frame, metrics: &GatewayMetrics) -> bool {
        let sent = self.enqueue(frame, metrics);
        if sent {
            metrics.messages_out.inc();
        }
        sent
    }

    /// [`ConnTx::push`] without counting (the caller counts a whole fan-out at once).
    pub fn enqueue(&self, frame: Frame, metrics: &GatewayMetrics) -> bool {
        self.send(frame, Some(metrics))
    }

    /// Sends a control frame (a pong): never counted, never over the bound.
    pub(crate) fn push_control(&self, frame: Frame) -> bool {
        self.send(frame, None)
    }

    /// Writes or queues; `bounded` (with metrics to count a 1013) applies the queue bound.
    fn send(&self, frame: Frame, bounded: Option<&GatewayMetrics>) -> bool {
        let mut out = self.lock();
        if out.dead || out.closing.is_some() {
            return false;
        }
        if out.queue.is_empty() {
            let bytes = frame.into_bytes();
            let Some(stream) = &self.0.stream else {
                out.queue.push_back(bytes);
                return true;
            };
            match stream.try_write(&bytes) {
                Ok(n) if n == bytes.len() => return true,
                Ok(n) => out.queue.push_back(bytes.slice(n..)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => out.queue.push_back(bytes),
                Err(_) => out.dead = true,
            }
            out.waiting = true;
            drop(out);
            self.0.task.wake();
            return true;
        }
        if let Some(metrics) = bounded
            && out.queue.len() >= self.0.max as usize
        {
            return self.too_slow(out, metrics);
        }
        out.queue.push_back(frame.into_bytes());
        true
    }

    /// Queues a frame of a fan-out to be written by [`flush_staged`] on this thread (unless
    /// someone writes it first), in order with everything else sent to the connection; the
    /// bound applies as for [`ConnTx::push`]. False if dropped.
    pub fn stage(&self, frame: Frame, metrics: &GatewayMetrics) -> bool {
        let mut out = self.lock();
        if out.dead || out.closing.is_some() {
            return false;
        }
        if out.queue.len() >= self.0.max as usize {
            return self.too_slow(out, metrics);
        }
        let first = out.queue.is_empty();
        out.queue.push_back(frame.into_bytes());
        drop(out);
        // A queue that held frames already has a writer: the thread that staged its first
        // frame, or the connection's task.
        if first && self.0.stream.is_some() {
            STAGED.with(|s| s.borrow_mut().push(self.clone()));
        }
        true
    }

    /// The queue overflowed: the connection closes with 1013 after the frame under way. False
    /// (the frame that overflowed it is dropped).
    fn too_slow(&self, mut out: MutexGuard<'_, Out>, metrics: &GatewayMetrics) -> bool {
        out.closing = Some(Closing::TooSlow);
        if !out.writing {
            out.queue.truncate(1);
        }
        drop(out);
        metrics.slow_client_closes.inc();
        self.0.task.wake();
        false
    }

    /// Writes the staged frames while the kernel takes them; leaves them to the connection's
    /// task when it refuses.
    pub(super) fn flush_now(&self) {
        let Some(stream) = &self.0.stream else { return };
        let mut out = self.lock();
        if !out.free_to_write() {
            return;
        }
        if out.drain(stream) {
            return;
        }
        drop(out);
        self.0.task.wake();
    }

    /// Claims the queued frames for a batched write: their slices (at most [`WRITEV_BATCH`])
    /// go to `slices` and Some(bytes offered) comes back; None when there is nothing to write
    /// or someone else writes it. Every claim must be settled ([`ConnTx::settle`]); until
    /// then the slices point at live bytes: nothing takes a frame off the queue, advances,
    /// truncates or clears it meanwhile (see `writing`), and a frame's bytes do not move when
    /// the queue grows.
    pub(super) fn claim(&self, slices: &mut Vec<libc::iovec>) -> Option<usize> {
        self.0.stream.as_ref()?;
        let mut out = self.lock();
        if !out.free_to_write() {
            return None;
        }
        if out.queue.is_empty() {
            out.queue.clear();
            return None;
        }
        out.writing = true;
        let mut offered = 0;
        for bytes in out.queue.iter().take(WRITEV_BATCH) {
            offered += bytes.len();
            slices.push(libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            });
        }
        Some(offered)
    }

    /// Ends a claim: the kernel took `result` bytes of the `offered`, refused them
    /// (WouldBlock) or failed. What is left is written now, or by the task once the socket has
    /// room.
    pub(super) fn settle(&self, result: io::Result<usize>, offered: usize) {
        let Some(stream) = &self.0.stream else { return };
        let mut out = self.lock();
        out.writing = false;
        let mut wake = std::mem::take(&mut out.wake_when_settled);
        match result {
            Ok(taken) => {
                out.advance(taken);
                if taken < offered {
                    out.waiting = true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => out.waiting = true,
            Err(_) => out.dead = true,
        }
        if out.dead {
            out.queue.clear();
            wake = true;
        } else if out.closing.is_some() {
            if out.closing == Some(Closing::TooSlow) {
                out.queue.truncate(1);
            }
            wake = true;
        } else if out.waiting {
            wake = true;
        } else if !out.drain(stream) {
            // Frames queued behind the claim met a full socket.
            wake = true;
        }
        drop(out);
        if wake {
            self.0.task.wake();
        }
    }

    /// Marks the connection too slow; it closes with 1013.
    pub fn overflow(&self, metrics: &GatewayMetrics) {
        if self.close_with(Closing::TooSlow) {
            metrics.slow_client_closes.inc();
        }
    }

    /// Asks the connection to close with 1001 after what is queued.
    pub fn shut_down(&self) {
        self.close_with(Closing::Shutdown);
    }

    /// Asks the connection to close; false if it already closes.
    pub fn close_with(&self, closing: Closing) -> bool {
        let mut out = self.lock();
        if out.closing.is_some() || out.dead {
            return false;
        }
        out.closing = Some(closing);
        if closing == Closing::TooSlow && !out.writing {
            // Only a frame the kernel took in part must be finished before the close frame.
            out.queue.truncate(1);
        }
        drop(out);
        self.0.task.wake();
        true
    }

    /// Set once the connection must close.
    pub fn closing(&self) -> Option<Closing> {
        self.lock().closing
    }

    /// True once the socket failed or the connection ended.
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// Frames waiting for the kernel (the detached queue of tests, or backpressure).
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Takes the oldest queued frame (tests of the fan-out read what was pushed here).
    pub fn try_recv(&self) -> Option<Frame> {
        self.lock().queue.pop_front().map(Frame::from_bytes)
    }

    /// Records that the peer spoke.
    pub(crate) fn seen(&self, now: u64) {
        self.0.last_seen.store(now as u32, Ordering::Relaxed);
    }

    /// Milliseconds since the peer last spoke, at `now` (right for gaps under 24 days: the
    /// heartbeat closes a silent peer long before). A peer that spoke after `now` was read (on
    /// another thread, while the sweep walks the connections) is not silent at all: without
    /// that, the wrapped difference made a busy peer look silent for 49 days and closed it.
    pub(crate) fn silent_for(&self, now: u64) -> u64 {
        let gap = (now as u32).wrapping_sub(self.0.last_seen.load(Ordering::Relaxed));
        if gap > u32::MAX / 2 {
            0
        } else {
            u64::from(gap)
        }
    }

    /// Ends the connection: later pushes are dropped and queued bytes freed.
    pub(crate) fn finish(&self) {
        let mut out = self.lock();
        out.dead = true;
        if !out.writing {
            out.queue.clear();
        }
    }

    pub(crate) fn stream(&self) -> Option<&TcpStream> {
        self.0.stream.as_ref()
    }

    /// Registers the connection's task for wake-ups.
    pub(crate) fn register(&self, cx: &Context<'_>) {
        self.0.task.register(cx.waker());
    }

    /// Appends a frame after everything queued, past the bound (the close frame).
    pub(crate) fn push_last(&self, frame: Frame) {
        let mut out = self.lock();
        if !out.dead {
            out.queue.push_back(frame.into_bytes());
        }
    }

    /// Writes queued bytes while the kernel takes them. Ready(Ok) once the queue is empty.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(stream) = &self.0.stream else {
            return Poll::Ready(Ok(()));
        };
        loop {
            let mut out = self.lock();
            if out.dead {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if out.writing {
                // A batched write holds the head; it wakes the task when it settles.
                out.wake_when_settled = true;
                return Poll::Pending;
            }
            if out.queue.is_empty() {
                out.queue.clear();
                out.waiting = false;
                return Poll::Ready(Ok(()));
            }
            match out.write_to(stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.waiting = true;
                    drop(out);
                    match stream.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => {
                    out.dead = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl Out {
    /// Whether a sender may write the queue now: not when the connection ends or closes (its
    /// task writes the rest), waits for room (its task again) or is claimed by a batched write.
    fn free_to_write(&self) -> bool {
        !(self.dead || self.waiting || self.writing || self.closing.is_some())
    }

    /// Writes the queue while the kernel takes it; true when it is empty. Otherwise the
    /// connection is dead or `waiting` for the socket (its task takes over).
    fn drain(&mut self, stream: &TcpStream) -> bool {
        loop {
            if self.queue.is_empty() {
                self.queue.clear();
                return true;
            }
            match self.write_to(stream) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.dead = true;
                    return false;
                }
            }
        }
        self.waiting = true;
        false
    }

    /// Offers the kernel up to [`WRITEV_BATCH`] queued frames in one write and drops what it
    /// took; Ok(true) when it took all it was offered.
    fn write_to(&mut self, stream: &TcpStream) -> io::Result<bool> {
        let mut slices = [IoSlice::new(&[]); WRITEV_BATCH];
        let mut count = 0;
        let mut offered = 0;
        for (slot, bytes) in slices.iter_mut().zip(self.queue.iter()) {
            *slot = IoSlice::new(bytes);
            offered += bytes.len();
            count += 1;
        }
        let taken = if count == 1 {
            stream.try_write(&slices[0])?
        } else {
            stream.try_write_vectored(&slices[..count])?
        };
        self.advance(taken);
        Ok(taken == offered)
    }

    /// Drops the first `n` queued bytes (the kernel took them).
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(head) = self.queue.front_mut() else {
                break;
            };
            if n >= head.len() {
                n -= head.len();
                self.queue.pop_front();
            } else {
                head.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_support::{arrived, bytes_of, pair};

    fn metrics() -> GatewayMetrics {
        GatewayMetrics::new(&prometheus::Registry::new())
    }

    #[test]
    fn a_detached_queue_is_bounded_and_overflow_closes_with_1013() {
        let m = metrics();
        let tx = ConnTx::detached(2);
        assert!(tx.push(Frame::text("1"), &m));
        assert!(tx.push(Frame::text("2"), &m));
        assert!(!tx.push(Frame::text("3"), &m));
        assert_eq!(tx.closing(), Some(Closing::TooSlow));
        assert_eq!(tx.queued(), 1, "only a frame under way is kept");
        assert!(!tx.push(Frame::text("4"), &m), "nothing after the close");
        assert_eq!(m.slow_client_closes.get(), 1);
    }

    #[test]
    fn a_peer_heard_after_the_sweep_read_the_clock_is_not_silent() {
        let tx = ConnTx::detached(2);
        tx.seen(10_000);
        assert_eq!(tx.silent_for(10_000), 0);
        assert_eq!(tx.silent_for(40_001), 30_001);
        // The sweep read the clock at 9,999; the peer spoke at 10,000 on another thread.
        assert_eq!(tx.silent_for(9_999), 0, "not 49 days");
        // The clock wraps its u32 after 49 days; gaps still come out right.
        tx.seen(u64::from(u32::MAX) - 5);
        assert_eq!(tx.silent_for(u64::from(u32::MAX) + 10), 15);
    }

    #[tokio::test]
    async fn staged_frames_wait_for_the_flush_and_go_out_in_order_with_pushes_behind_them() {
        let (server, client) = pair().await;
        let m = metrics();
        let tx = ConnTx::new(server, 100);
        assert!(tx.stage(Frame::text("c1"), &m));
        assert!(tx.stage(Frame::text("c2"), &m));
        // An ack pushed meanwhile goes after the staged comments, not before them.
        assert!(tx.push(Frame::text("ack"), &m));
        assert_eq!(tx.queued(), 3, "nothing written before the flush");
        assert!(
            arrived(&client, std::time::Duration::from_millis(50))
                .await
                .is_empty()
        );
        flush_staged();
        assert_eq!(tx.queued(), 0);
        assert_eq!(
            arrived(&client, std::time::Duration::from_millis(200)).await,
            bytes_of(&["c1", "c2", "ack"])
        );
        // With nothing staged, a push is written at once again.
        assert!(tx.push(Frame::text("now"), &m));
        assert_eq!(tx.queued(), 0);
        flush_staged();
        assert_eq!(
            arrived(&client, std::time::Duration::from_millis(200)).await,
            bytes_of(&["now"])
        );
    }

    #[tokio::test]
    async fn a_frame_staged_on_another_thread_behind_an_unwritten_one_goes_out_with_it() {
        let (server, client) = pair().await;
        let m = metrics();
        let tx = ConnTx::new(server, 100);
        assert!(tx.stage(Frame::text("first"), &m));
        let (tx2, m2) = (tx.clone(), m.clone());
        std::thread::spawn(move || {
            assert!(tx2.stage(Frame::text("second"), &m2));
            // This thread did not stage the queue's first frame: it leaves the write to the
            // thread that did.
            flush_staged();
            assert_eq!(tx2.queued(), 2);
        })
        .join()
        .expect("thread");
        flush_staged();
        assert_eq!(tx.queued(), 0);
        assert_eq!(
            arrived(&client, std::time::Duration::from_millis(200)).await,
            bytes_of(&["first", "second"])
        );
    }

    #[tokio::test]
    async fn staging_is_bounded_and_a_refused_flush_leaves_the_rest_to_the_task() {
        let (server, client) = pair().await;
        let m = metrics();
        let tx = ConnTx::new(server, 3);
        assert!(tx.stage(Frame::text("1"), &m));
        assert!(tx.stage(Frame::text("2"), &m));
        assert!(tx.stage(Frame::text("3"), &m));
        assert!(!tx.stage(Frame::text("4"), &m), "past the bound");
        assert_eq!(tx.closing(), Some(Closing::TooSlow));
        assert_eq!(m.slow_client_closes.get(), 1);
        flush_staged();
        assert_eq!(
            tx.queued(),
            1,
            "a closing connection's task writes what is left"
        );

        // The peer stops reading: a big fan-out fills the kernel and the task takes over.
        let (server, client2) = pair().await;
        let tx = ConnTx::new(server, 1_000_000);
        let big = Frame::text(vec![b'x'; 60_000]);
        for _ in 0..200 {
            assert!(tx.stage(big.clone(), &m));
        }
        flush_staged();
        let left = tx.queued();
        assert!(left > 0, "the kernel took all 12 MB at once");
        // Staged behind bytes the kernel refused, a frame is the task's to write too.
        assert!(tx.stage(Frame::text("tail"), &m));
        flush_staged();
        assert_eq!(tx.queued(), left + 1);
        let want = 200 * 60_004 + 6;
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while got < want {
                let more = arrived(&client2, std::time::Duration::from_millis(200)).await;
                got += more.len();
            }
            got
        });
        std::future::poll_fn(|cx| tx.poll_flush(cx))
            .await
            .expect("flushes");
        assert_eq!(tx.queued(), 0);
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), reader)
            .await
            .expect("read in time")
            .expect("reader");
        assert_eq!(got, want);
        drop(client);
    }

    #[tokio::test]
    async fn writes_go_straight_into_the_socket_and_queue_only_under_backpressure() {
        let (server, client) = pair().await;
        let m = metrics();
        let tx = ConnTx::new(server, 1_000_000);
        assert!(tx.push(Frame::text("hello"), &m));
        assert_eq!(tx.queued(), 0, "the kernel took it");
        // The peer does not read: the kernel fills up, then frames queue.
        let big = Frame::text(vec![b'x'; 60_000]);
        let mut pushed = 0;
        while tx.queued() == 0 {
            assert!(tx.push(big.clone(), &m));
            pushed += 1;
            assert!(pushed < 10_000, "the kernel never refused");
        }
        assert!(tx.queued() >= 1);
        // Reading on the client side lets the flush finish.
        let reader = tokio::spawn(async move {
            let mut total = 0usize;
            let mut buf = vec![0u8; 65536];
            loop {
                client.readable().await.expect("readable");
                match client.try_read(&mut buf) {
                    Ok(0) => return total,
                    Ok(n) => total += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
        std::future::poll_fn(|cx| tx.poll_flush(cx))
            .await
            .expect("flushes");
        assert_eq!(tx.queued(), 0);
        tx.finish();
        drop(tx);
        let total = reader.await.expect("reader");
        assert_eq!(total, 7 + pushed * 60_004);
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn the_queue_holds_one_frame_inline_and_more_in_order() {
        let mut q = Queue::default();
        assert!(q.is_empty());
        q.push_back(Bytes::from_static(b"a"));
        assert!(matches!(q, Queue::One(_)), "one frame takes no allocation");
        q.push_back(Bytes::from_static(b"b"));
        q.push_back(Bytes::from_static(b"c"));
        assert_eq!(q.len(), 3);
        assert_eq!(
            q.iter().map(|b| b.to_vec()).collect::<Vec<_>>(),
            [b"a", b"b", b"c"]
        );
        if let Some(head) = q.front_mut() {
            head.advance(1);
        }
        assert_eq!(q.pop_front().map(|b| b.len()), Some(0));
        q.truncate(1);
        assert_eq!(q.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), [b"b"]);
        assert_eq!(q.pop_front().as_deref(), Some(&b"b"[..]));
        assert!(matches!(q, Queue::Empty), "emptied, the allocation goes");
        assert_eq!(q.pop_front(), None);
        q.push_back(Bytes::from_static(b"x"));
        q.truncate(0);
        assert!(q.is_empty());
    }
}
