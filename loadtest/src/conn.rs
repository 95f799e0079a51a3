//! One WebSocket connection: connect (from a chosen 127.0.0.x source address), read `welcome`,
//! subscribe, then either hold (idle mode) or receive comments and post (run mode).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use shared_proto::CommentText;
use shared_proto::ids::RoomId;
use shared_proto::ws::{ClientFrame, ClientMessage, Post, Ref, RoomOnly, Subscribe};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::stats::{Bitset, Shared};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where and how one connection connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// The `ws://host:port/path` URL (query added here).
    pub url: Arc<str>,
    /// The resolved server address.
    pub addr: SocketAddr,
}

/// Wall-clock microseconds since the Unix epoch: comparable across the load processes of one machine.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Small client buffers: tungstenite's defaults (128 KiB read + 128 KiB write per connection)
/// would make the load tool, not the server, the memory hog at 19,000 connections.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
}

/// Opens the TCP connection from `source` (if given) and performs the WebSocket handshake.
pub async fn connect(
    target: &Target,
    token: Option<&str>,
    source: Option<IpAddr>,
) -> anyhow::Result<Ws> {
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding source address {ip}"))?;
    }
    let stream = socket
        .connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    stream.set_nodelay(true)?;
    let url = match token {
        Some(t) => format!("{}?token={t}", target.url),
        None => target.url.to_string(),
    };
    let (ws, _response) = tokio_tungstenite::client_async_with_config(
        url,
        MaybeTlsStream::Plain(stream),
        Some(client_config()),
    )
    .await
    .context("WebSocket handshake")?;
    Ok(ws)
}

// ------------------------------------------------------------------ cheap server-frame peek

/// A server frame, read without allocating: only the fields the load tool needs.
#[derive(Deserialize)]
pub struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    #[serde(rename = "ref", default)]
    pub reference: Option<RefPeek>,
    #[serde(default, borrow)]
    pub payload: Option<PayloadPeek<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum RefPeek {
    Number(i64),
    Text(serde::de::IgnoredAny),
}

#[derive(Deserialize, Default)]
pub struct PayloadPeek<'a> {
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default, borrow)]
    pub text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub comment: Option<CommentPeek<'a>>,
}

#[derive(Deserialize)]
pub struct CommentPeek<'a> {
    #[serde(default)]
    pub seq: u64,
    #[serde(borrow)]
    pub text: Cow<'a, str>,
}

/// The text a poster sends: `lt:<run>:<post index>:<send time us>:<padding>`.
pub fn post_text(run: u32, index: u64, sent_us: u64, pad_to: usize) -> String {
    let mut text = format!("lt:{run}:{index}:{sent_us}:");
    while text.len() < pad_to {
        text.push('x');
    }
    text
}

/// Parses a text made by [`post_text`] for this run: `(post index, send time us)`.
pub fn parse_text(text: &str, run: u32) -> Option<(u64, u64)> {
    let mut parts = text.split(':');
    if parts.next()? != "lt" || parts.next()?.parse::<u32>().ok()? != run {
        return None;
    }
    let index = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((index, sent))
}

/// Reads `welcome`, subscribes to `room` (backlog `limit: 1`), waits for `subscribed`.
pub async fn welcome_and_subscribe(
    ws: &mut Ws,
    room: &RoomId,
    timeout: Duration,
) -> anyhow::Result<()> {
    let work = async {
        let first = next_text(ws).await?;
        let peek: Peek<'_> = serde_json::from_str(&first).context("decoding the first frame")?;
        if peek.kind != "welcome" {
            bail!("first frame is {} not welcome", peek.kind);
        }
        let frame = ClientFrame::new(ClientMessage::Subscribe(Subscribe {
            room: room.clone(),
            since: None,
            limit: Some(1),
        }))
        .with_ref("sub");
        ws.send(Message::text(frame.encode())).await?;
        loop {
            let text = next_text(ws).await?;
            let peek: Peek<'_> = serde_json::from_str(&text).context("decoding a frame")?;
            match peek.kind.as_ref() {
                "subscribed" => return Ok(()),
                "error" => {
                    let p = peek.payload.unwrap_or_default();
                    bail!(
                        "subscribe refused: {} {}",
                        p.code.unwrap_or_default(),
                        p.message.unwrap_or_default()
                    )
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("timed out waiting for welcome/subscribed"))?
}

async fn next_text(ws: &mut Ws) -> anyhow::Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                bail!(
                    "closed by server: {:?}",
                    frame.map(|f| (u16::from(f.code), f.reason.to_string()))
                )
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// Holds an idle connection: keeps reading (tungstenite answers the server's pings) until `stop`.
pub async fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>, closed: Arc<AtomicU64>) {
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
}

// ------------------------------------------------------------------ run mode

/// What one connection saw during a run.
pub struct ConnOutcome {
    /// Index of the connection.
    pub index: usize,
    /// Its room's index.
    pub room: usize,
    /// Posts of this run received (one bit per post index).
    pub got: Bitset,
    /// Comment frames of this run received (duplicates included).
    pub comments: u64,
    /// Comments received a second time.
    pub duplicates: u64,
    /// Comments whose `seq` was below one already received.
    pub out_of_order: u64,
    /// Why the server ended the connection early, if it did.
    pub closed: Option<String>,
    /// Highest `seq` received.
    pub last_seq: u64,
}

/// Run-mode connection loop: receive comments (latency, duplicates, order), and post when told.
#[allow(clippy::too_many_arguments)]
pub async fn run_connection(
    mut ws: Ws,
    index: usize,
    room_index: usize,
    room: RoomId,
    mut posts: Option<mpsc::Receiver<u64>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    typing_every: Option<Duration>,
) -> ConnOutcome {
    let mut typing_tick = typing_every.map(|every| {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    let mut out = ConnOutcome {
        index,
        room: room_index,
        got: Bitset::new(shared.total_posts as usize),
        comments: 0,
        duplicates: 0,
        out_of_order: 0,
        closed: None,
        last_seq: 0,
    };
    let mut last_seq: u64 = 0;
    let shard = index % shared.latency.len();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(frame))) => {
                        out.closed = Some(format!(
                            "close {}",
                            frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default()
                        ));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        out.closed = Some(format!("error {e}"));
                        break;
                    }
                    None => {
                        out.closed = Some("eof".into());
                        break;
                    }
                };
                let now = now_us();
                let Ok(peek) = serde_json::from_str::<Peek<'_>>(text.as_str()) else {
                    shared.count_error("undecodable_frame");
                    continue;
                };
                match peek.kind.as_ref() {
                    "comment" => {
                        let Some(p) = peek.payload else { continue };
                        let (Some(seq), Some(text)) = (p.seq, p.text) else { continue };
                        let Some((post, sent)) = parse_text(&text, shared.run_id) else { continue };
                        out.comments += 1;
                        if out.got.set(post as usize) {
                            out.duplicates += 1;
                            continue;
                        }
                        if seq < last_seq {
                            out.out_of_order += 1;
                        }
                        last_seq = last_seq.max(seq);
                        shared.unique_delivered.fetch_add(1, Ordering::Relaxed);
                        shared.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                        shared.record_latency(shard, now.saturating_sub(sent));
                    }
                    "ack" => {
                        let Some(comment) = peek.payload.and_then(|p| p.comment) else { continue };
                        if let Some((post, sent)) = parse_text(&comment.text, shared.run_id) {
                            shared.on_ack(post, comment.seq, now.saturating_sub(sent));
                        }
                    }
                    "error" => {
                        let code = peek.payload.and_then(|p| p.code).unwrap_or(Cow::Borrowed("unknown"));
                        shared.count_error(&code);
                        if let Some(RefPeek::Number(post)) = peek.reference {
                            shared.on_refused(post as u64);
                        }
                    }
                    "typing" => {
                        shared.typing_received.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            _ = async {
                match typing_tick.as_mut() {
                    Some(tick) => {
                        tick.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            } => {
                let frame = ClientFrame::new(ClientMessage::Typing(RoomOnly { room: room.clone() }));
                if let Err(e) = ws.send(Message::text(frame.encode())).await {
                    out.closed = Some(format!("send error {e}"));
                    break;
                }
                shared.typing_sent.fetch_add(1, Ordering::Relaxed);
            }
            post = async {
                match posts.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let Some(post) = post else {
                    posts = None;
                    continue;
                };
                let text = post_text(shared.run_id, post, now_us(), shared.text_len);
                let Ok(text) = CommentText::parse(&text) else { continue };
                let frame = ClientFrame::new(ClientMessage::Post(Post {
                    room: room.clone(),
                    text,
                    client_id: None,
                    reply_to: None,
                }))
                .with_ref(Ref::Number(post as i64));
                if let Err(e) = ws.send(Message::text(frame.encode())).await {
                    out.closed = Some(format!("send error {e}"));
                    break;
                }
                shared.posts_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
    out.last_seq = last_seq;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let t = post_text(7, 42, 1_700_000_000_000_000, 64);
        assert_eq!(t.len(), 64);
        assert_eq!(parse_text(&t, 7), Some((42, 1_700_000_000_000_000)));
        assert_eq!(parse_text(&t, 8), None);
        assert_eq!(parse_text("hello", 7), None);
    }

    #[test]
    fn peeks_contract_frames() {
        let c = r#"{"type":"comment","payload":{"id":"a","seq":3,"room":"r","author":{"id":"u","name":"n"},"text":"lt:1:2:3:","createdAt":"x"}}"#;
        let p: Peek<'_> = serde_json::from_str(c).expect("peek");
        assert_eq!(p.kind, "comment");
        let pl = p.payload.expect("payload");
        assert_eq!(pl.seq, Some(3));
        assert_eq!(pl.text.as_deref(), Some("lt:1:2:3:"));
        let e =
            r#"{"type":"error","ref":5,"payload":{"code":"rate_limited","message":"slow down"}}"#;
        let p: Peek<'_> = serde_json::from_str(e).expect("peek");
        assert!(matches!(p.reference, Some(RefPeek::Number(5))));
        let a = r#"{"type":"ack","ref":5,"payload":{"comment":{"id":"a","seq":3,"room":"r","author":{"id":"u","name":"n"},"text":"lt:1:2:3:","createdAt":"x"}}}"#;
        let p: Peek<'_> = serde_json::from_str(a).expect("peek");
        assert_eq!(
            p.payload
                .and_then(|p| p.comment)
                .map(|c| c.text.into_owned()),
            Some("lt:1:2:3:".to_owned())
        );
        let s = r#"{"type":"subscribed","ref":"sub","payload":{"room":"r","comments":[{"id":"a","seq":3,"room":"r","author":{"id":"u","name":"n"},"text":"q","createdAt":"x"}],"truncated":false}}"#;
        let p: Peek<'_> = serde_json::from_str(s).expect("peek");
        assert_eq!(p.kind, "subscribed");
    }
}
