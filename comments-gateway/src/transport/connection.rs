//! One connection's task: reads client frames (a buffer exists only while a frame is partly
//! read), hands text to the session, finishes writes the kernel refused, and closes with a reason.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::ws::CloseCode;
use bytes::BytesMut;

use super::frame::{DecodeError, Decoder, Frame, Incoming};
use super::socket::{Closing, ConnTx};
use super::{ConnId, Session, Transport, clock};

/// How long a closing connection may take to flush and hear the peer's close.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a server-initiated close waits for the peer's close frame once ours is out.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(2);
/// Bytes asked from the kernel per read.
const READ_CHUNK: usize = 4096;
/// Reads per wake-up before yielding to other connections.
const READS_PER_TURN: usize = 16;

/// How a connection ends.
enum End {
    /// Send this close frame, then wait for the peer's close.
    Close(Frame),
    /// The peer closed: answer with this close frame and stop.
    Answer(Frame),
    /// The socket is gone (EOF or error): nothing to send.
    Gone,
}

/// An open connection: everything its task holds while the connection idles, kept small
/// because that is what each idle connection costs. The teardown is boxed and allocated only
/// when the connection ends.
struct Connection<S> {
    transport: Arc<Transport>,
    id: ConnId,
    tx: ConnTx,
    /// Bytes read but not yet a whole frame; empty (unallocated) between frames.
    buf: BytesMut,
    decoder: Decoder,
    session: S,
    /// The connection's span, when tracing records it.
    span: Option<Box<tracing::Span>>,
}

/// A connection's task: open, then closing.
pub(super) struct Task<S> {
    state: State<S>,
}

enum State<S> {
    Open(Connection<S>),
    Closing(Pin<Box<dyn Future<Output = ()>>>),
    Done,
}

/// The task of an upgraded connection, registered with `transport`; `read` holds bytes the
/// HTTP layer read past the upgrade request.
pub(super) fn run<S: Session + Unpin>(
    transport: Arc<Transport>,
    id: ConnId,
    tx: ConnTx,
    read: BytesMut,
    session: S,
    span: tracing::Span,
) -> Task<S> {
    transport.add(id, tx.clone());
    Task {
        state: State::Open(Connection {
            transport,
            id,
            tx,
            buf: read,
            decoder: Decoder::default(),
            session,
            span: (!span.is_disabled()).then(|| Box::new(span)),
        }),
    }
}

impl<S: Session + Unpin> Future for Task<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Open(conn) => {
                    let span = conn.span.take();
                    let polled = {
                        let _entered = span.as_deref().map(tracing::Span::enter);
                        conn.poll(cx)
                    };
                    conn.span = span;
                    let end = std::task::ready!(polled);
                    let State::Open(conn) = std::mem::replace(&mut this.state, State::Done) else {
                        unreachable!("the state was open");
                    };
                    let Connection {
                        transport,
                        id,
                        tx,
                        mut session,
                        span,
                        ..
                    } = conn;
                    {
                        let _entered = span.as_deref().map(tracing::Span::enter);
                        session.closed();
                    }
                    transport.remove(id);
                    drop(session);
                    let teardown = teardown(tx, end);
                    this.state = State::Closing(match span {
                        Some(span) => Box::pin(tracing::Instrument::instrument(teardown, *span)),
                        None => Box::pin(teardown),
                    });
                }
                State::Closing(teardown) => {
                    std::task::ready!(teardown.as_mut().poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(());
                }
                State::Done => return Poll::Ready(()),
            }
        }
    }
}

/// Sends the close frame the end calls for, waits (bounded) for the peer's, and lets go.
async fn teardown(tx: ConnTx, end: End) {
    match end {
        End::Gone => {}
        End::Answer(frame) => {
            tx.push_last(frame);
            let _ = tokio::time::timeout(CLOSE_GRACE, std::future::poll_fn(|cx| tx.poll_flush(cx)))
                .await;
        }
        End::Close(frame) => {
            tx.push_last(frame);
            let flushed =
                tokio::time::timeout(CLOSE_GRACE, std::future::poll_fn(|cx| tx.poll_flush(cx)))
                    .await;
            if matches!(flushed, Ok(Ok(()))) {
                let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, peer_close(&tx)).await;
            }
        }
    }
    tx.finish();
}

/// Reads and drops input until the peer's close frame or EOF.
async fn peer_close(tx: &ConnTx) {
    let Some(stream) = tx.stream() else { return };
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        buf.reserve(READ_CHUNK);
        match stream.try_read_buf(&mut buf) {
            Ok(0) => return,
            Ok(_) => loop {
                match decoder.decode(&mut buf, usize::MAX >> 1) {
                    Ok(Some(Incoming::Close(_))) | Err(_) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                }
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

fn close_frame(closing: Closing) -> Frame {
    match closing {
        Closing::TooSlow => Frame::close(CloseCode::Again, "too slow: resubscribe with since"),
        Closing::Shutdown => Frame::close(CloseCode::Away, "server shutting down"),
        Closing::Silent => Frame::close(CloseCode::Policy, "heartbeat timeout"),
    }
}

impl<S: Session> Connection<S> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        self.tx.register(cx);
        let mut reads = 0;
        loop {
            if let Some(closing) = self.tx.closing() {
                return Poll::Ready(End::Close(close_frame(closing)));
            }
            if self.tx.is_dead() {
                return Poll::Ready(End::Gone);
            }
            if let Poll::Ready(Err(_)) = self.tx.poll_flush(cx) {
                return Poll::Ready(End::Gone);
            }
            let _ = self.session.poll_work(cx);
            if !self.session.accepts_input() {
                return Poll::Pending;
            }
            // Whole messages already read go first.
            match self
                .decoder
                .decode(&mut self.buf, self.transport.max_message)
            {
                Ok(Some(message)) => {
                    if let Some(end) = self.handle(message) {
                        return Poll::Ready(end);
                    }
                    continue;
                }
                Ok(None) => {}
                Err(DecodeError::TooLarge) => {
                    return Poll::Ready(End::Close(Frame::close(
                        CloseCode::Size,
                        "frame too large",
                    )));
                }
                Err(DecodeError::Protocol(reason)) => {
                    tracing::debug!(%reason, "protocol error");
                    return Poll::Ready(End::Close(Frame::close(
                        CloseCode::Protocol,
                        "protocol error",
                    )));
                }
            }
            if self.buf.is_empty() && self.buf.capacity() > 0 {
                // Between frames an idle connection holds no buffer.
                self.buf = BytesMut::new();
            }
            if reads == READS_PER_TURN {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            reads += 1;
            let Some(stream) = self.tx.stream() else {
                return Poll::Pending;
            };
            match stream.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(End::Gone),
                Poll::Ready(Ok(())) => {}
            }
            self.buf.reserve(READ_CHUNK);
            match stream.try_read_buf(&mut self.buf) {
                Ok(0) => return Poll::Ready(End::Gone),
                Ok(_) => self.tx.seen(clock()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Poll::Ready(End::Gone),
            }
        }
    }

    /// Acts on one client message; Some when the connection ends.
    fn handle(&mut self, message: Incoming) -> Option<End> {
        match message {
            Incoming::Text(text) => {
                // The decoder checked UTF-8.
                if let Ok(text) = std::str::from_utf8(&text) {
                    self.session.text(text);
                }
            }
            Incoming::Unsupported => self.session.binary(),
            Incoming::Ping(payload) => {
                self.tx.push_control(Frame::pong(&payload));
            }
            Incoming::Pong => {}
            Incoming::Close(reason) => {
                let code = reason.map_or(CloseCode::Normal, |r| r.code);
                return Some(End::Answer(Frame::close(code, "")));
            }
        }
        None
    }
}
