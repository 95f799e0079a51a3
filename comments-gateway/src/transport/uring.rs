//! Batched writes of a fan-out: the staged frames of many connections go to the kernel in one
//! `io_uring_enter` instead of one `writev` each. Every send is non-blocking (`MSG_DONTWAIT`:
//! the kernel takes what fits now or answers EAGAIN at once, it never parks a send), so the
//! submission completes before it returns and each connection settles exactly as after its own
//! `writev`: done, or left to its task for backpressure.
//!
//! Each thread that writes fan-outs gets its own ring on first use; where the kernel has none
//! (old, or `io_uring_disabled`) the thread writes one connection at a time as before.
//!
//! The only `unsafe` of the workspace lives here: an entry handed to the ring points at memory
//! the kernel reads after the push returns (see `claim`/`settle` in `socket` for why the frames
//! stay put until then).
#![expect(
    unsafe_code,
    reason = "io_uring entries point at buffers the kernel reads after the push"
)]

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{IoUring, opcode, squeue, types};

use super::socket::ConnTx;

/// Sends one submission holds at most (and the ring's size).
const RING_ENTRIES: u32 = 256;

/// A thread's ring and the scratch its batches reuse.
struct Ring {
    ring: IoUring,
    /// The slices of every claimed connection of the batch, back to back.
    slices: Vec<libc::iovec>,
    /// Per claimed connection: its index in the batch, first slice, slice count, bytes offered.
    claims: Vec<Claim>,
    /// Message headers of the claims with more than one slice (`sendmsg`).
    headers: Vec<libc::msghdr>,
    /// What each claim's send returned.
    results: Vec<i32>,
}

/// A result no completion has reported yet.
const PENDING: i32 = i32::MIN;

#[derive(Clone, Copy)]
struct Claim {
    conn: usize,
    fd: std::os::fd::RawFd,
    first: usize,
    count: usize,
    offered: usize,
}

enum Slot {
    /// Not tried on this thread yet.
    Untried,
    /// The kernel gave no ring: write one connection at a time.
    Unavailable,
    Ready(Box<Ring>),
}

thread_local! {
    static RING: RefCell<Slot> = const { RefCell::new(Slot::Untried) };
}

/// False once `FANOUT_IO_URING=false` asked for one write per connection.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns batched writes on or off for the process (`FANOUT_IO_URING`); on by default.
pub fn batch_writes(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Writes what `conns` have staged, in batched submissions; false when this thread has no ring
/// (the caller writes them one by one).
pub(super) fn write_batch(conns: &[ConnTx]) -> bool {
    if !ENABLED.load(Ordering::Relaxed) {
        return false;
    }
    RING.with(|slot| {
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return false;
        };
        if matches!(*slot, Slot::Untried) {
            *slot = match Ring::new() {
                Ok(ring) => Slot::Ready(Box::new(ring)),
                Err(e) => {
                    tracing::debug!(error = %e, "no io_uring: fan-outs write one socket at a time");
                    Slot::Unavailable
                }
            };
        }
        let Slot::Ready(ring) = &mut *slot else {
            return false;
        };
        for (i, chunk) in conns.chunks(RING_ENTRIES as usize).enumerate() {
            if let Err(e) = ring.write(chunk) {
                tracing::error!(error = %e, "io_uring failed: fan-outs write one socket at a time");
                // Never entered again: what it may still hold is never read.
                if let Slot::Ready(ring) = std::mem::replace(&mut *slot, Slot::Unavailable) {
                    std::mem::forget(ring);
                }
                let rest = (i + 1) * RING_ENTRIES as usize;
                for tx in conns.get(rest..).unwrap_or_default() {
                    tx.flush_now();
                }
                break;
            }
        }
        true
    })
}

/// Bytes for the probe's send (never read by anyone).
static PROBE_BYTES: [u8; 4096] = [0; 4096];

/// Whether a send with `MSG_DONTWAIT` to a full socket completes at once with EAGAIN (every
/// kernel with the `io_uring` features used here does; one that parked it would stall a
/// fan-out on a reader that does not read). Tried on a full local socket pair.
fn sends_never_wait(ring: &mut IoUring) -> io::Result<bool> {
    use std::io::Write;
    let (full, peer) = std::os::unix::net::UnixStream::pair()?;
    full.set_nonblocking(true)?;
    loop {
        match (&full).write(&PROBE_BYTES) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    let entry = opcode::Send::new(
        types::Fd(full.as_raw_fd()),
        PROBE_BYTES.as_ptr(),
        PROBE_BYTES.len() as u32,
    )
    .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    .build();
    // SAFETY: the entry points at a static buffer and a socket that stays open until the send
    // has completed (below).
    if unsafe { ring.submission().push(&entry) }.is_err() {
        return Ok(false);
    }
    let moment = types::Timespec::new().nsec(100_000_000);
    let waited = ring
        .submitter()
        .submit_with_args(1, &types::SubmitArgs::new().timespec(&moment));
    if let Some(done) = ring.completion().next() {
        return Ok(waited.is_ok() && done.result() == -libc::EAGAIN);
    }
    // Parked: closing the peer ends the send; wait for it before the socket goes.
    drop(peer);
    ring.submit_and_wait(1)?;
    ring.completion().for_each(drop);
    Ok(false)
}

impl Ring {
    fn new() -> io::Result<Self> {
        let mut ring = IoUring::new(RING_ENTRIES)?;
        if !sends_never_wait(&mut ring)? {
            return Err(io::Error::other(
                "this kernel parks a MSG_DONTWAIT send instead of answering EAGAIN",
            ));
        }
        Ok(Self {
            ring,
            slices: Vec::new(),
            claims: Vec::new(),
            headers: Vec::new(),
            results: Vec::new(),
        })
    }

    /// One submission for up to [`RING_ENTRIES`] connections; Err when the ring failed (it
    /// must not be used again).
    fn write(&mut self, conns: &[ConnTx]) -> io::Result<()> {
        self.slices.clear();
        self.claims.clear();
        for (index, tx) in conns.iter().enumerate() {
            let Some(fd) = tx.stream().map(AsRawFd::as_raw_fd) else {
                continue;
            };
            let first = self.slices.len();
            if let Some(offered) = tx.claim(&mut self.slices) {
                self.claims.push(Claim {
                    conn: index,
                    fd,
                    first,
                    count: self.slices.len() - first,
                    offered,
                });
            }
        }
        if self.claims.is_empty() {
            return Ok(());
        }
        // The slices are complete: the headers may point into them now.
        self.headers.clear();
        for claim in &self.claims {
            if claim.count > 1 {
                // SAFETY: msghdr is plain data; all-zero is a valid empty header.
                let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
                header.msg_iov = self.slices[claim.first..].as_mut_ptr();
                header.msg_iovlen = claim.count as _;
                self.headers.push(header);
            }
        }
        self.results.clear();
        self.results.resize(self.claims.len(), PENDING);
        let outcome = self.submit();
        for (claim, &result) in self.claims.iter().zip(&self.results) {
            let result = match result {
                // A send the broken ring may still hold: its frames must stay where they are
                // (the connection is left claimed; its task ends it on the close grace).
                PENDING => continue,
                0.. => Ok(result as usize),
                _ => Err(io::Error::from_raw_os_error(-result)),
            };
            conns[claim.conn].settle(result, claim.offered);
        }
        outcome
    }

    /// Submits a send per claim and waits for all of them (none blocks: `MSG_DONTWAIT`); their
    /// results land in `results`.
    fn submit(&mut self) -> io::Result<()> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        let mut headers = self.headers.iter();
        {
            let mut queue = self.ring.submission();
            for (i, claim) in self.claims.iter().enumerate() {
                let fd = types::Fd(claim.fd);
                let header = if claim.count > 1 {
                    headers.next()
                } else {
                    None
                };
                let entry: squeue::Entry = match header {
                    Some(header) => opcode::SendMsg::new(fd, header).flags(flags as u32).build(),
                    None => {
                        let slice = self.slices[claim.first];
                        opcode::Send::new(
                            fd,
                            slice.iov_base.cast_const().cast(),
                            slice.iov_len as u32,
                        )
                        .flags(flags)
                        .build()
                    }
                };
                // SAFETY: what the entry points at (the claimed frames, held by their queues
                // until settled; `slices` and `headers`, untouched until the completions are
                // in) outlives the send, which completes before `write` returns.
                if unsafe { queue.push(&entry.user_data(i as u64)) }.is_err() {
                    // Cannot happen (a chunk fits the ring); such a claim settles as refused.
                    self.results[i] = -libc::EAGAIN;
                }
            }
        }
        let mut waiting = self.results.iter().filter(|&&r| r == PENDING).count();
        while waiting > 0 {
            match self.ring.submit_and_wait(waiting) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.broken(e)),
            }
            waiting -= self.reap();
        }
        Ok(())
    }

    /// The ring failed: the sends it never took settle as refused; those it took complete at
    /// once (they cannot block), so they are collected for a moment.
    fn broken(&mut self, error: io::Error) -> io::Error {
        let untaken = self.ring.submission().len();
        let taken = self.results.len().saturating_sub(untaken);
        for result in &mut self.results[taken..] {
            if *result == PENDING {
                *result = -libc::EAGAIN;
            }
        }
        for _ in 0..1000 {
            if !self.results.contains(&PENDING) {
                break;
            }
            self.reap();
            std::thread::yield_now();
        }
        error
    }

    /// Takes the completions in; how many there were.
    fn reap(&mut self) -> usize {
        let mut n = 0;
        for entry in self.ring.completion() {
            if let Some(slot) = self.results.get_mut(entry.user_data() as usize) {
                *slot = entry.result();
            }
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::*;
    use crate::metrics::GatewayMetrics;
    use crate::transport::socket::take_staged;
    use crate::transport::test_support::{arrived, bytes_of, pair};
    use crate::transport::{Closing, Frame};

    fn metrics() -> GatewayMetrics {
        GatewayMetrics::new(&prometheus::Registry::new())
    }

    fn poll_flush_once(tx: &ConnTx) -> Poll<io::Result<()>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        tx.poll_flush(&mut cx)
    }

    #[test]
    fn the_probe_sees_a_send_to_a_full_socket_answer_at_once() {
        let Ok(mut ring) = IoUring::new(8) else {
            eprintln!("this kernel has no io_uring");
            return;
        };
        let started = std::time::Instant::now();
        assert!(sends_never_wait(&mut ring).expect("probe"));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn one_submission_writes_many_sockets_and_leaves_a_full_one_to_its_task() {
        if IoUring::new(8).is_err() {
            eprintln!("this kernel has no io_uring: the fallback writes one socket at a time");
            return;
        }
        let m = metrics();
        let mut conns = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..5 {
            let (server, client) = pair().await;
            conns.push(ConnTx::new(server, 1_000_000));
            clients.push(client);
        }
        for tx in &conns {
            assert!(tx.stage(Frame::text("a"), &m));
            assert!(tx.stage(Frame::text("b"), &m));
        }
        // The last peer does not read: 12 MB cannot go at once.
        let big = Frame::text(vec![b'x'; 60_000]);
        for _ in 0..200 {
            assert!(conns[4].stage(big.clone(), &m));
        }
        let staged = take_staged(0);
        assert_eq!(staged.len(), 5, "each connection staged once");
        assert!(write_batch(&staged), "the ring is used");
        for (tx, client) in conns.iter().zip(&clients).take(4) {
            assert_eq!(tx.queued(), 0);
            assert_eq!(
                arrived(client, Duration::from_millis(200)).await,
                bytes_of(&["a", "b"])
            );
        }
        let left = conns[4].queued();
        assert!(left > 0, "the kernel took all 12 MB at once");
        assert!(
            poll_flush_once(&conns[4]).is_pending(),
            "the task waits for room"
        );
        let client = clients.pop().expect("five clients");
        let want = 6 + 200 * 60_004;
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while got < want {
                got += arrived(&client, Duration::from_millis(200)).await.len();
            }
            got
        });
        let tx = conns[4].clone();
        std::future::poll_fn(|cx| tx.poll_flush(cx))
            .await
            .expect("flushes");
        let got = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("read in time")
            .expect("reader");
        assert_eq!(got, want, "every byte once, none twice");
    }

    #[tokio::test]
    async fn a_claimed_queue_keeps_its_frames_until_settled_and_others_queue_behind() {
        let m = metrics();
        let (server, client) = pair().await;
        let tx = ConnTx::new(server, 100);
        assert!(tx.stage(Frame::text("a"), &m));
        assert!(tx.stage(Frame::text("b"), &m));
        drop(take_staged(0));
        let mut slices = Vec::new();
        let offered = tx.claim(&mut slices).expect("claimed");
        assert_eq!(slices.len(), 2);
        assert!(tx.claim(&mut Vec::new()).is_none(), "one writer at a time");
        // An ack meanwhile goes behind the claimed frames; the task's flush waits for them.
        assert!(tx.push(Frame::text("ack"), &m));
        assert_eq!(tx.queued(), 3);
        assert!(poll_flush_once(&tx).is_pending());
        // The kernel takes the first frame only.
        let stream = tx.stream().expect("socket");
        let first = slices[0];
        // SAFETY: the claimed frame lives in the queue until settled.
        let bytes =
            unsafe { std::slice::from_raw_parts(first.iov_base.cast::<u8>(), first.iov_len) };
        assert_eq!(stream.try_write(bytes).expect("room"), bytes.len());
        tx.settle(Ok(bytes.len()), offered);
        assert_eq!(tx.queued(), 2, "the rest waits for the task");
        std::future::poll_fn(|cx| tx.poll_flush(cx))
            .await
            .expect("flushes");
        assert_eq!(
            arrived(&client, Duration::from_millis(200)).await,
            bytes_of(&["a", "b", "ack"])
        );

        // Closing and ending while claimed touch no claimed frame; the settle applies them.
        assert!(tx.push(Frame::text("c"), &m), "written at once");
        assert!(tx.stage(Frame::text("d"), &m));
        assert!(tx.stage(Frame::text("e"), &m));
        drop(take_staged(0));
        let mut slices = Vec::new();
        let offered = tx.claim(&mut slices).expect("claimed");
        assert!(tx.close_with(Closing::TooSlow));
        tx.finish();
        assert_eq!(tx.queued(), 2, "nothing freed under the claim");
        tx.settle(Err(io::ErrorKind::WouldBlock.into()), offered);
        assert_eq!(tx.queued(), 0, "freed once settled");
        assert!(tx.is_dead());
        assert_eq!(
            arrived(&client, Duration::from_millis(200)).await,
            bytes_of(&["c"])
        );
    }
}
