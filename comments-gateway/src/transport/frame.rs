//! WebSocket frames on the wire: server frames encoded once into finished bytes, and client
//! frames decoded (masked, continuations aggregated) with actix-http's frame parser.

use actix_http::ws::{CloseCode, CloseReason, OpCode, Parser, ProtocolError};
use bytes::{Bytes, BytesMut};

/// A finished server frame: header and unmasked payload. Server frames carry no mask, so one
/// broadcast is encoded once and every subscriber's socket gets a clone of the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame(Bytes);

/// A server ping with an empty payload (the heartbeat).
static PING: [u8; 2] = [0x89, 0x00];

impl Frame {
    /// A text frame carrying `payload` (UTF-8 JSON).
    pub fn text(payload: impl AsRef<[u8]>) -> Self {
        Self::encode(payload.as_ref(), OpCode::Text)
    }

    /// The heartbeat ping.
    pub fn ping() -> Self {
        Self(Bytes::from_static(&PING))
    }

    /// The answer to a client ping.
    pub fn pong(payload: &[u8]) -> Self {
        Self::encode(payload, OpCode::Pong)
    }

    /// A close frame with `code` and a short reason.
    pub fn close(code: CloseCode, description: &str) -> Self {
        let mut dst = BytesMut::with_capacity(4 + description.len());
        Parser::write_close(
            &mut dst,
            Some(CloseReason {
                code,
                description: Some(description.to_owned()),
            }),
            false,
        );
        Self(dst.freeze())
    }

    fn encode(payload: &[u8], op: OpCode) -> Self {
        let mut dst = BytesMut::with_capacity(payload.len() + 10);
        Parser::write_message(&mut dst, payload, op, true, false);
        Self(dst.freeze())
    }

    /// Several finished frames as one write: each connection gets them with one wake-up and
    /// one syscall (a batch counts as one frame against the queue bound).
    pub fn batch<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Self {
        let mut dst = BytesMut::new();
        for frame in frames {
            dst.extend_from_slice(&frame.0);
        }
        Self(dst.freeze())
    }

    /// The bytes to write.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The payload of a text frame (of the first one in a batch; for tests and diagnostics).
    pub fn payload(&self) -> &[u8] {
        let len = self.0.get(1).map_or(0, |b| b & 0x7f);
        let start = match len {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        self.0.get(start..).unwrap_or_default()
    }

    pub(crate) fn from_bytes(bytes: Bytes) -> Self {
        Self(bytes)
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        self.0
    }
}

/// A complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message (continuations joined), valid UTF-8.
    Text(BytesMut),
    /// A binary message, or a text message that is not UTF-8: not part of the protocol.
    Unsupported,
    /// A ping: answer with a pong carrying the same payload.
    Ping(Bytes),
    /// A pong (the answer to the heartbeat).
    Pong,
    /// The client closes.
    Close(Option<CloseReason>),
}

/// Why the connection must close while decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A frame or message over the size limit: 1009.
    TooLarge,
    /// Not WebSocket as RFC 6455 has it: 1002.
    Protocol(String),
}

/// Decoding state of one connection: only a message split over continuation frames is kept.
#[derive(Default)]
pub struct Decoder {
    /// A fragmented message under way: its kind (text or binary) and the payload so far
    /// (boxed: rare, and every idle connection holds a decoder).
    fragments: Option<Box<(OpCode, BytesMut)>>,
}

impl Decoder {
    /// Takes the next complete message out of `buf` (None: more bytes needed).
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max: usize,
    ) -> Result<Option<Incoming>, DecodeError> {
        loop {
            let (fin, op, payload) = match Parser::parse(buf, true, max) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(None),
                Err(ProtocolError::Overflow) => return Err(DecodeError::TooLarge),
                Err(e) => return Err(DecodeError::Protocol(e.to_string())),
            };
            let payload = payload.unwrap_or_default();
            match op {
                OpCode::Text | OpCode::Binary => {
                    if self.fragments.is_some() {
                        return Err(DecodeError::Protocol(
                            "a new message inside a fragmented one".into(),
                        ));
                    }
                    if fin {
                        return Ok(Some(message(op, payload)));
                    }
                    self.fragments = Some(Box::new((op, payload)));
                }
                OpCode::Continue => {
                    let Some(mut fragments) = self.fragments.take() else {
                        return Err(DecodeError::Protocol(
                            "a continuation without a message".into(),
                        ));
                    };
                    let joined = &mut fragments.1;
                    if joined.len() + payload.len() > max {
                        return Err(DecodeError::TooLarge);
                    }
                    joined.extend_from_slice(&payload);
                    if fin {
                        let (kind, joined) = *fragments;
                        return Ok(Some(message(kind, joined)));
                    }
                    self.fragments = Some(fragments);
                }
                OpCode::Ping => return Ok(Some(Incoming::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Incoming::Pong)),
                OpCode::Close => {
                    return match Parser::try_parse_close_payload(&payload) {
                        Ok(reason) => Ok(Some(Incoming::Close(reason))),
                        Err(e) => Err(DecodeError::Protocol(e.to_string())),
                    };
                }
                OpCode::Bad => return Err(DecodeError::Protocol("bad opcode".into())),
            }
        }
    }

    /// True while a fragmented message is under way.
    pub fn is_partial(&self) -> bool {
        self.fragments.is_some()
    }
}

fn message(op: OpCode, payload: BytesMut) -> Incoming {
    if op == OpCode::Text && std::str::from_utf8(&payload).is_ok() {
        Incoming::Text(payload)
    } else {
        Incoming::Unsupported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(op: OpCode, fin: bool, payload: &[u8]) -> BytesMut {
        let mut dst = BytesMut::new();
        Parser::write_message(&mut dst, payload, op, fin, true);
        dst
    }

    #[test]
    fn server_frames_are_unmasked_and_finished() {
        let frame = Frame::text(r#"{"type":"pong"}"#);
        assert_eq!(frame.bytes()[0], 0x81);
        assert_eq!(usize::from(frame.bytes()[1]), 15, "no mask bit, 15 bytes");
        assert_eq!(frame.payload(), br#"{"type":"pong"}"#);
        let long = Frame::text(vec![b'a'; 300]);
        assert_eq!(long.bytes().len(), 304);
        assert_eq!(long.payload().len(), 300);
        assert_eq!(Frame::ping().bytes().as_ref(), &[0x89, 0]);
        let close = Frame::close(CloseCode::Again, "too slow");
        assert_eq!(&close.bytes()[..4], &[0x88, 10, 0x03, 0xf5]);
    }

    #[test]
    fn masked_client_frames_decode_and_partial_ones_wait() {
        let mut decoder = Decoder::default();
        let mut buf = client_frame(OpCode::Text, true, b"hello");
        let whole = buf.split();
        buf.extend_from_slice(&whole[..4]);
        assert_eq!(decoder.decode(&mut buf, 100), Ok(None));
        buf.extend_from_slice(&whole[4..]);
        assert_eq!(
            decoder.decode(&mut buf, 100),
            Ok(Some(Incoming::Text(BytesMut::from(&b"hello"[..]))))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn continuations_join_up_to_the_limit() {
        let mut decoder = Decoder::default();
        let mut buf = client_frame(OpCode::Text, false, b"ab");
        buf.extend_from_slice(&client_frame(OpCode::Continue, false, b"cd"));
        buf.extend_from_slice(&client_frame(OpCode::Ping, true, b"p"));
        buf.extend_from_slice(&client_frame(OpCode::Continue, true, b"ef"));
        assert_eq!(
            decoder.decode(&mut buf, 10),
            Ok(Some(Incoming::Ping(Bytes::from_static(b"p"))))
        );
        assert!(decoder.is_partial());
        assert_eq!(
            decoder.decode(&mut buf, 10),
            Ok(Some(Incoming::Text(BytesMut::from(&b"abcdef"[..]))))
        );
        let mut over = client_frame(OpCode::Text, false, &[b'x'; 8]);
        over.extend_from_slice(&client_frame(OpCode::Continue, true, &[b'x'; 8]));
        assert_eq!(
            Decoder::default().decode(&mut over, 10),
            Err(DecodeError::TooLarge)
        );
    }

    #[test]
    fn oversized_unmasked_binary_and_bad_utf8() {
        let mut big = client_frame(OpCode::Text, true, &[b'x'; 20]);
        assert_eq!(
            Decoder::default().decode(&mut big, 10),
            Err(DecodeError::TooLarge)
        );
        let mut unmasked = BytesMut::new();
        Parser::write_message(&mut unmasked, b"hi", OpCode::Text, true, false);
        assert!(matches!(
            Decoder::default().decode(&mut unmasked, 10),
            Err(DecodeError::Protocol(_))
        ));
        let mut binary = client_frame(OpCode::Binary, true, b"\x00\x01");
        assert_eq!(
            Decoder::default().decode(&mut binary, 10),
            Ok(Some(Incoming::Unsupported))
        );
        let mut latin1 = client_frame(OpCode::Text, true, b"\xff\xfe");
        assert_eq!(
            Decoder::default().decode(&mut latin1, 10),
            Ok(Some(Incoming::Unsupported))
        );
    }
}
