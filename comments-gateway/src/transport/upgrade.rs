//! The upgrade: actix-http hands over the request and the socket (with anything it read past the
//! request); the acceptor admits or refuses it with an HTTP answer, the handshake's 101 goes
//! out, and the socket becomes the connection's for good.

use std::sync::Arc;

use actix_codec::Framed;
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{ConnectionType, Method, Request, RequestHead, Response, h1, ws};
use actix_web::rt::net::TcpStream;
use futures_util::SinkExt;
use shared_proto::ErrorCode;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::socket::ConnTx;
use super::{ConnId, Session, Transport, connection};

/// The path WebSocket clients upgrade on.
pub const WS_PATH: &str = "/ws";

/// Decides who may connect, and opens the session of an admitted connection.
pub trait Acceptor: Send + Sync + 'static {
    /// What an admitted request carries into its session (the user, a connection-cap slot).
    type Ticket;
    /// The protocol session over a connection.
    type Session: Session + Unpin;

    /// Checks an upgrade request before the handshake; Err is the HTTP answer (401, 403, 429,
    /// 503). The same check answers a plain `GET /ws` on the HTTP side.
    fn admit(&self, head: &RequestHead) -> Result<Self::Ticket, Response<BoxBody>>;

    /// Starts the session of an upgraded connection (its first frame, the welcome, included).
    fn open(&self, ticket: Self::Ticket, id: ConnId, tx: ConnTx) -> Self::Session;

    /// The span of the upgrade request and then of the connection (no secrets in it).
    fn span(&self, head: &RequestHead, id: ConnId) -> tracing::Span;
}

/// The upgrade service's state: the acceptor, the transport and the tracker of connection tasks.
pub struct Upgrader<A> {
    acceptor: A,
    transport: Arc<Transport>,
    tracker: TaskTracker,
}

impl<A: Acceptor> Upgrader<A> {
    /// Upgrades through `acceptor` into `transport`; connection tasks join `tracker`.
    pub fn new(acceptor: A, transport: Arc<Transport>, tracker: TaskTracker) -> Self {
        Self {
            acceptor,
            transport,
            tracker,
        }
    }

    /// Serves one upgrade request: an HTTP refusal, or the 101 and a running connection.
    pub async fn upgrade(&self, req: Request, framed: Framed<TcpStream, h1::Codec>) {
        let id = self.transport.next_id();
        let span = self.acceptor.span(req.head(), id);
        self.serve(req, framed, id, span.clone())
            .instrument(span)
            .await;
    }

    async fn serve(
        &self,
        req: Request,
        mut framed: Framed<TcpStream, h1::Codec>,
        id: ConnId,
        span: tracing::Span,
    ) {
        let head = req.head();
        if head.uri.path() != WS_PATH {
            let message = format!("no route for {} {}", head.method, head.uri.path());
            refuse(framed, error(ErrorCode::NotFound, message)).await;
            return;
        }
        if head.method != Method::GET {
            let message = format!("method {} is not allowed on {WS_PATH}", head.method);
            refuse(framed, error(ErrorCode::MethodNotAllowed, message)).await;
            return;
        }
        let ticket = match self.acceptor.admit(head) {
            Ok(ticket) => ticket,
            Err(response) => {
                refuse(framed, response).await;
                return;
            }
        };
        let switching = match ws::handshake(head).map(|mut b| b.message_body(())) {
            Ok(Ok(response)) => response,
            Ok(Err(_)) | Err(_) => {
                let message = match ws::verify_handshake(head) {
                    Err(e) => format!("expected a WebSocket upgrade: {e}"),
                    Ok(()) => "expected a WebSocket upgrade".to_owned(),
                };
                refuse(framed, error(ErrorCode::BadRequest, message)).await;
                return;
            }
        };
        if framed
            .send((switching, BodySize::None).into())
            .await
            .is_err()
        {
            return;
        }
        // The HTTP layer's buffers go; bytes it read past the request are the first frames.
        let parts = framed.into_parts();
        let read = parts.read_buf;
        let tx = ConnTx::new(parts.io, self.transport.queue_max);
        tracing::info!(status = 101, "WebSocket upgrade");
        let session = self.acceptor.open(ticket, id, tx.clone());
        let task = connection::run(self.transport.clone(), id, tx, read, session, span);
        actix_web::rt::spawn(self.tracker.track_future(task));
    }
}

fn error(code: ErrorCode, message: String) -> Response<BoxBody> {
    service_kit::http_errors::error_response(code, message).into()
}

/// Answers with `response` and closes the connection.
async fn refuse(mut framed: Framed<TcpStream, h1::Codec>, response: Response<BoxBody>) {
    tracing::info!(
        status = response.status().as_u16(),
        "WebSocket upgrade refused"
    );
    let (mut head, body) = response.into_parts();
    head.head_mut().set_connection_type(ConnectionType::Close);
    let body = body.try_into_bytes().unwrap_or_default();
    // Head and body in one write: some clients read only what came with the head.
    let sent = async {
        framed
            .feed((head, BodySize::Sized(body.len() as u64)).into())
            .await?;
        framed.feed(h1::Message::Chunk(Some(body))).await?;
        framed.send(h1::Message::Chunk(None)).await
    };
    if tokio::time::timeout(super::connection::CLOSE_GRACE, sent)
        .await
        .is_err()
    {
        tracing::debug!("refused upgrade: the client does not read");
    }
}
