//! The chaos suite: gateway processes on a private Redis and SecantusDB, hundreds of clients
//! that subscribe, reload (close, reconnect, resume with `since`), post with a clientId and retry
//! on error, while faults hit on a schedule: SIGSTOP/SIGCONT of MongoDB and of Redis, a Redis
//! restart, SIGKILL + restart of a gateway, SIGTERM + restart of another. Ends with an audit:
//! every acked comment reached every client subscribed across its seq exactly once, in order
//! (live or by the client's own resume); no comment was acked under two seqs; every ping was
//! answered within `CHAOS_PING_MAX_MS` except while the client's own instance was down. Pings
//! are timed by a prober per instance on a thread of its own (it posts too), and by the clients
//! themselves while the test process keeps up with them (see [`CLIENT_LAG_JUDGED_MS`]).
//!
//! Short schedule by default (the README's test command); the long mode is
//! `CHAOS_SECS=1800 scripts/chaos.sh` (see there). Knobs: `CHAOS_SECS`, `CHAOS_CLIENTS`,
//! `CHAOS_POSTERS`, `CHAOS_RATE` (posts/s in all), `CHAOS_ROOMS`, `CHAOS_ROOMS_PER_CLIENT`,
//! `CHAOS_INSTANCES`, `CHAOS_FAULT_EVERY` (s), `CHAOS_PING_MAX_MS`, `CHAOS_GATEWAY_BIN`,
//! `CHAOS_FAULTS` (the kinds in turn, comma-separated: `mongo-stop`, `redis-stop`,
//! `redis-restart`, `gw-kill`, `gw-term`; default all five; without the last two the gateways
//! live the whole run, so their RSS growth is measured).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::user_token;
use crate::procs::{self, Proc};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone)]
struct Config {
    secs: u64,
    clients: usize,
    posters: usize,
    rate: f64,
    rooms: usize,
    rooms_per_client: usize,
    instances: usize,
    fault_every: u64,
    ping_max: Duration,
    /// Fault kinds in turn (indices into [`FAULT_KINDS`]).
    faults: Vec<usize>,
}

/// The clients' ping waits are judged only while the test process's own 100 ms timer was
/// never later than this.
const CLIENT_LAG_JUDGED_MS: u64 = 500;

/// The fault kinds, by their `CHAOS_FAULTS` names.
const FAULT_KINDS: [&str; 5] = [
    "mongo-stop",
    "redis-stop",
    "redis-restart",
    "gw-kill",
    "gw-term",
];

impl Config {
    fn from_env() -> Self {
        let secs = env_or("CHAOS_SECS", 60u64);
        let long = secs >= 600;
        Self {
            secs,
            clients: env_or("CHAOS_CLIENTS", if long { 2000 } else { 200 }),
            posters: env_or("CHAOS_POSTERS", if long { 40 } else { 12 }),
            rate: env_or("CHAOS_RATE", if long { 20.0 } else { 6.0 }),
            rooms: env_or("CHAOS_ROOMS", 4usize).max(1),
            rooms_per_client: env_or("CHAOS_ROOMS_PER_CLIENT", 2usize).max(1),
            instances: env_or("CHAOS_INSTANCES", if long { 2 } else { 3 }).max(2),
            fault_every: env_or("CHAOS_FAULT_EVERY", if long { 60 } else { 8 }).max(2),
            ping_max: Duration::from_millis(env_or("CHAOS_PING_MAX_MS", 1000)),
            faults: fault_kinds(&std::env::var("CHAOS_FAULTS").unwrap_or_default()),
        }
    }
}

/// `CHAOS_FAULTS` as kind indices; empty or unknown names mean all kinds.
fn fault_kinds(names: &str) -> Vec<usize> {
    let kinds: Vec<usize> = names
        .split(',')
        .filter_map(|name| FAULT_KINDS.iter().position(|k| *k == name.trim()))
        .collect();
    if kinds.is_empty() {
        (0..FAULT_KINDS.len()).collect()
    } else {
        kinds
    }
}

/// Times an instance could not answer (from the fault until it listens again).
#[derive(Default)]
struct Downtime {
    windows: Mutex<Vec<(usize, Instant, Option<Instant>)>>,
}

impl Downtime {
    fn begin(&self, instance: usize) {
        self.lock().push((instance, Instant::now(), None));
    }

    fn end(&self, instance: usize) {
        let now = Instant::now();
        for w in self.lock().iter_mut() {
            if w.0 == instance && w.2.is_none() {
                w.2 = Some(now);
            }
        }
    }

    /// True when `instance` was down at some point in `[from, to]` (plus a grace for the
    /// client to notice).
    fn excuses(&self, instance: usize, from: Instant, to: Instant) -> bool {
        let grace = Duration::from_secs(3);
        self.lock().iter().any(|&(i, start, end)| {
            i == instance && start <= to && end.is_none_or(|e| e + grace >= from)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(usize, Instant, Option<Instant>)>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What every client shares with the conductor.
struct Shared {
    config: Config,
    ports: Vec<u16>,
    downtime: Downtime,
    stop_posting: AtomicBool,
    finish: AtomicBool,
    /// clientId -> (room, seq, id) of its ack.
    acked: Mutex<HashMap<String, (String, u64, String)>>,
    violations: Mutex<Vec<String>>,
    posts_sent: AtomicU64,
    post_errors: AtomicU64,
    reloads: AtomicU64,
    reconnects: AtomicU64,
    pings: AtomicU64,
    /// Longest ping answer not excused by the client's own instance being down, in ms.
    longest_ping_ms: AtomicU64,
    pending_posts: AtomicU64,
    /// Subscribes answered with an error (the client subscribes again).
    sub_errors: AtomicU64,
    /// Refreshes (`subscribe` with `limit` after a resume, as the browser does) answered.
    refreshes: AtomicU64,
    /// Longest lateness of a 100 ms timer in the test process (its own scheduling stalls).
    client_lag_ms: AtomicU64,
    /// Longest ping wait as the client saw it, the test process's own stalls included.
    longest_ping_raw_ms: AtomicU64,
    /// When the test process itself did not run its tasks (a timer over 200 ms late).
    stalls: Mutex<std::collections::VecDeque<(Instant, Instant)>>,
    /// Longest ping answer a prober saw outside its instance's downtime, in ms.
    probe_longest_ms: AtomicU64,
    /// Pings the probers got answered.
    probe_pings: AtomicU64,
    /// Posts the probers got acked (in their own rooms, outside the audit).
    probe_acks: AtomicU64,
}

impl Shared {
    /// A ping sent at `sent` was answered now (or its connection ended): its wait counts
    /// unless the client's own instance was down, less the time the test process itself was
    /// stalled meanwhile (2,000 clients share it on a loaded box: that part says nothing about
    /// the gateway).
    fn note_ping(&self, instance: usize, sent: Instant) {
        let now = Instant::now();
        let waited = now - sent;
        let ms = waited.as_millis() as u64;
        if ms <= self.longest_ping_ms.load(Ordering::Relaxed).max(50)
            || self.downtime.excuses(instance, sent, now)
        {
            return;
        }
        self.longest_ping_raw_ms.fetch_max(ms, Ordering::Relaxed);
        let own: Duration = self
            .stalls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(s, e)| *s < now && *e > sent)
            .map(|(s, e)| (*e).min(now) - (*s).max(sent))
            .sum();
        self.longest_ping_ms.fetch_max(
            waited.saturating_sub(own).as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    fn violation(&self, text: String) {
        let mut v = self.violations.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() < 1000 {
            v.push(text);
        }
    }

    fn ack(&self, client_id: &str, room: &str, seq: u64, id: &str) {
        let mut acked = self.acked.lock().unwrap_or_else(|p| p.into_inner());
        match acked.get(client_id) {
            Some((_, s, i)) if *s != seq || i != id => {
                let text = format!("clientId {client_id} acked as seq {s} and as seq {seq}");
                drop(acked);
                self.violation(text);
            }
            Some(_) => {}
            None => {
                acked.insert(client_id.to_owned(), (room.to_owned(), seq, id.to_owned()));
            }
        }
    }
}

/// One client's view of its rooms.
#[derive(Default)]
struct View {
    /// First seq the client is responsible for, per room (exclusive).
    start: HashMap<String, u64>,
    /// Last seq seen, per room.
    last: HashMap<String, u64>,
    /// Every comment seen, per room, in arrival order.
    seen: HashMap<String, Vec<(u64, String)>>,
    /// Rooms subscribed (backlog in) on the client's current connection.
    live: std::collections::HashSet<String>,
}

impl View {
    /// Takes comments of `room` (live or backlog); false on a duplicate or reordering.
    fn take(&mut self, room: &str, seq: u64, id: &str) -> bool {
        let last = self.last.entry(room.to_owned()).or_insert(0);
        if seq <= *last {
            return false;
        }
        *last = seq;
        self.seen
            .entry(room.to_owned())
            .or_default()
            .push((seq, id.to_owned()));
        true
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Ws, frame: Value) -> bool {
    ws.send(Message::text(frame.to_string())).await.is_ok()
}

fn pseudo_random(seed: u64) -> u64 {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^ (x >> 33)
}

async fn run_client(index: usize, shared: Arc<Shared>, view: Arc<Mutex<View>>) {
    let config = &shared.config;
    let rooms: Vec<String> = (0..config.rooms_per_client.min(config.rooms))
        .map(|k| format!("c{}", (index + k) % config.rooms))
        .collect();
    let poster = index < config.posters;
    let user = format!("u{index}");
    let token = user_token(&user);
    let post_every = Duration::from_secs_f64(config.posters as f64 / config.rate.max(0.01));
    let mut instance = index % shared.ports.len();
    let mut round = 0u64;
    let mut post_no = 0u64;
    // (clientId, room) of the post waiting for its ack, and when it was last sent.
    let mut pending: Option<(String, String, Option<Instant>)> = None;
    let mut next_post = Instant::now() + post_every.mul_f64((index as f64 * 0.37) % 1.0);
    loop {
        if shared.finish.load(Ordering::Acquire) {
            return;
        }
        round += 1;
        let url = format!("ws://127.0.0.1:{}/ws?token={token}", shared.ports[instance]);
        let ws = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(&url),
        )
        .await;
        let mut ws = match ws {
            Ok(Ok((ws, _))) => ws,
            _ => {
                instance = (instance + 1) % shared.ports.len();
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        let reload_in = Duration::from_secs(10 + pseudo_random(index as u64 * 31 + round) % 30);
        let reload_at = Instant::now() + reload_in;
        // Subscribe every room: first time the latest one, afterwards from the last seen.
        let mut ready: HashMap<String, bool> = HashMap::new();
        let mut ok = true;
        for room in &rooms {
            let since = view
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last
                .get(room)
                .copied();
            let payload = match since {
                Some(since) => json!({"room": room, "since": since}),
                None => json!({"room": room, "limit": 1}),
            };
            ok &= send(
                &mut ws,
                json!({"type": "subscribe", "ref": format!("sub:{room}"), "payload": payload}),
            )
            .await;
            ready.insert(room.clone(), false);
        }
        if pending.as_ref().is_some_and(|p| p.2.is_some()) {
            // Sent on the previous connection: send again once subscribed.
            if let Some(p) = pending.as_mut() {
                p.2 = None;
            }
        }
        let mut ping_no = 0u64;
        let mut ping_out: Option<(String, Instant)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut deliberate = false;
        // Subscribes refused with an error, sent again (like a real client) at the given time.
        let mut resubscribe: Vec<(String, Instant)> = Vec::new();
        while ok {
            tokio::select! {
                msg = ws.next() => {
                    let text = match msg {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => continue,
                    };
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    let reference = frame["ref"].as_str().unwrap_or("").to_owned();
                    match frame["type"].as_str().unwrap_or("") {
                        "subscribed" if reference.starts_with("refresh:") => {
                            // Like the browser's refresh (`limit` after a `since` resume): the
                            // shown comments' state; any newer than the last seen are new here
                            // (the live stream goes on after them).
                            let room = frame["payload"]["room"].as_str().unwrap_or("").to_owned();
                            let comments = frame["payload"]["comments"].as_array().cloned().unwrap_or_default();
                            let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
                            for c in &comments {
                                let seq = c["seq"].as_u64().unwrap_or(0);
                                if seq > v.last.get(&room).copied().unwrap_or(0) {
                                    v.take(&room, seq, c["id"].as_str().unwrap_or(""));
                                }
                            }
                            shared.refreshes.fetch_add(1, Ordering::Relaxed);
                        }
                        "subscribed" => {
                            let room = frame["payload"]["room"].as_str().unwrap_or("").to_owned();
                            let comments = frame["payload"]["comments"].as_array().cloned().unwrap_or_default();
                            let truncated = frame["payload"]["truncated"].as_bool().unwrap_or(false);
                            let (first, since) = {
                            let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
                            let first = !v.start.contains_key(&room);
                            if first {
                                let start = comments.last().and_then(|c| c["seq"].as_u64()).unwrap_or(0);
                                v.start.insert(room.clone(), start);
                                v.last.insert(room.clone(), start);
                            } else {
                                for c in &comments {
                                    let seq = c["seq"].as_u64().unwrap_or(0);
                                    let id = c["id"].as_str().unwrap_or("");
                                    if !v.take(&room, seq, id) {
                                        shared.violation(format!("client {index} room {room}: backlog seq {seq} again or out of order"));
                                    }
                                }
                            }
                            let since = v.last.get(&room).copied().unwrap_or(0);
                            (first, since)
                            };
                            if truncated && !first {
                                ok &= send(&mut ws, json!({"type": "subscribe", "ref": format!("sub:{room}"), "payload": {"room": room, "since": since}})).await;
                            } else {
                                view.lock().unwrap_or_else(|p| p.into_inner()).live.insert(room.clone());
                                if !first {
                                    ok &= send(&mut ws, json!({"type": "subscribe", "ref": format!("refresh:{room}"), "payload": {"room": room, "limit": 50}})).await;
                                }
                                ready.insert(room, true);
                            }
                        }
                        "comment" => {
                            let room = frame["payload"]["room"].as_str().unwrap_or("");
                            let seq = frame["payload"]["seq"].as_u64().unwrap_or(0);
                            let id = frame["payload"]["id"].as_str().unwrap_or("");
                            let fresh = view.lock().unwrap_or_else(|p| p.into_inner()).take(room, seq, id);
                            if !fresh {
                                shared.violation(format!("client {index} room {room}: live seq {seq} twice or out of order"));
                            }
                        }
                        "pong" => {
                            if let Some((r, sent)) = &ping_out && *r == reference {
                                shared.note_ping(instance, *sent);
                                shared.pings.fetch_add(1, Ordering::Relaxed);
                                ping_out = None;
                            }
                        }
                        "ack" => {
                            if let Some(client_id) = reference.strip_prefix("post:") {
                                let c = &frame["payload"]["comment"];
                                let room = c["room"].as_str().unwrap_or("");
                                shared.ack(client_id, room, c["seq"].as_u64().unwrap_or(0), c["id"].as_str().unwrap_or(""));
                                if pending.as_ref().is_some_and(|p| p.0 == client_id) {
                                    pending = None;
                                    shared.pending_posts.fetch_sub(1, Ordering::AcqRel);
                                }
                            }
                        }
                        "error" => {
                            if reference.starts_with("post:") {
                                shared.post_errors.fetch_add(1, Ordering::Relaxed);
                                if let Some(p) = pending.as_mut() {
                                    // Retry with the same clientId a little later.
                                    p.2 = Some(Instant::now() - Duration::from_secs(7));
                                }
                            } else if let Some(room) = reference.strip_prefix("sub:") {
                                // Never a sleep here: the client keeps reading (and pinging).
                                shared.sub_errors.fetch_add(1, Ordering::Relaxed);
                                resubscribe.push((room.to_owned(), Instant::now() + Duration::from_millis(300)));
                            } else if reference.starts_with("refresh:") {
                                shared.sub_errors.fetch_add(1, Ordering::Relaxed);
                            } else if frame["payload"]["code"] != "unavailable" {
                                shared.violation(format!("client {index}: unexpected {frame}"));
                            }
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if shared.finish.load(Ordering::Acquire) {
                        deliberate = true;
                        break;
                    }
                    let due: Vec<String> = resubscribe
                        .iter()
                        .filter(|(_, at)| *at <= now)
                        .map(|(room, _)| room.clone())
                        .collect();
                    resubscribe.retain(|(_, at)| *at > now);
                    for room in due {
                        let since = view.lock().unwrap_or_else(|p| p.into_inner()).last.get(&room).copied();
                        let payload = match since {
                            Some(since) => json!({"room": room, "since": since}),
                            None => json!({"room": room, "limit": 1}),
                        };
                        ok &= send(&mut ws, json!({"type": "subscribe", "ref": format!("sub:{room}"), "payload": payload})).await;
                    }
                    if ping_out.is_none() {
                        ping_no += 1;
                        let r = format!("ping:{ping_no}");
                        ok &= send(&mut ws, json!({"type": "ping", "ref": r, "payload": {}})).await;
                        ping_out = Some((r, now));
                    }
                    if poster && pending.is_none() && !shared.stop_posting.load(Ordering::Acquire) && now >= next_post {
                        post_no += 1;
                        next_post = now + post_every;
                        pending = Some((format!("{user}-{post_no}"), rooms[0].clone(), None));
                        shared.pending_posts.fetch_add(1, Ordering::AcqRel);
                    }
                    let room_ready = pending.as_ref().is_some_and(|p| ready.get(&p.1).copied().unwrap_or(false));
                    if let Some(p) = pending.as_mut()
                        && room_ready
                        && p.2.is_none_or(|sent| sent.elapsed() > Duration::from_secs(8))
                    {
                        p.2 = Some(now);
                        shared.posts_sent.fetch_add(1, Ordering::Relaxed);
                        let frame = json!({"type": "post", "ref": format!("post:{}", p.0),
                            "payload": {"room": p.1, "text": format!("chaos {}", p.0), "clientId": p.0}});
                        ok &= send(&mut ws, frame).await;
                    }
                    if now >= reload_at && !shared.stop_posting.load(Ordering::Acquire) {
                        deliberate = true;
                        shared.reloads.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        if !deliberate {
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
            if let Some((_, sent)) = &ping_out {
                shared.note_ping(instance, *sent);
            }
            instance = (instance + 1) % shared.ports.len();
        } else {
            instance = pseudo_random(index as u64 ^ round) as usize % shared.ports.len();
        }
        if !shared.finish.load(Ordering::Acquire) {
            view.lock().unwrap_or_else(|p| p.into_inner()).live.clear();
        }
        let _ = ws.close(None).await;
        if let Some(p) = pending.as_mut() {
            p.2 = None;
        }
    }
}

/// One prober connection per instance on a thread of its own (its own single-threaded
/// runtime), so its pings time the gateway and not the test process: the 2,000 clients share
/// one runtime on the same cores as the gateways, and on a small box their tasks wait for
/// each other for seconds. A prober subscribes to a room of its own, posts there every 2 s (so
/// store work of its connection is in flight when the store hangs) and pings every 250 ms.
fn spawn_probers(shared: Arc<Shared>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let probes: Vec<_> = (0..shared.ports.len())
                .map(|instance| tokio::spawn(run_prober(instance, shared.clone())))
                .collect();
            for probe in probes {
                let _ = probe.await;
            }
        });
    })
}

async fn run_prober(instance: usize, shared: Arc<Shared>) {
    let room = format!("p{instance}");
    let token = user_token(&format!("probe{instance}"));
    let mut post_no = 0u64;
    while !shared.finish.load(Ordering::Acquire) {
        let url = format!("ws://127.0.0.1:{}/ws?token={token}", shared.ports[instance]);
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(&url),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut ok = send(
            &mut ws,
            json!({"type": "subscribe", "ref": "sub", "payload": {"room": room, "limit": 1}}),
        )
        .await;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut ping_out: Option<(String, Instant)> = None;
        let mut ping_no = 0u64;
        let mut next_post = Instant::now() + Duration::from_secs(2);
        while ok && !shared.finish.load(Ordering::Acquire) {
            tokio::select! {
                msg = ws.next() => {
                    let text = match msg {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => continue,
                    };
                    let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                    let reference = frame["ref"].as_str().unwrap_or("");
                    match frame["type"].as_str().unwrap_or("") {
                        "pong" => {
                            if let Some((r, sent)) = &ping_out && r == reference {
                                note_probe(&shared, instance, *sent);
                                shared.probe_pings.fetch_add(1, Ordering::Relaxed);
                                ping_out = None;
                            }
                        }
                        "ack" => {
                            shared.probe_acks.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if let Some((_, sent)) = &ping_out
                        && now - *sent > Duration::from_secs(10)
                    {
                        // Unanswered for 10 s: count it and start over on a new connection.
                        note_probe(&shared, instance, *sent);
                        break;
                    }
                    if ping_out.is_none() {
                        ping_no += 1;
                        let r = format!("ping:{ping_no}");
                        ok &= send(&mut ws, json!({"type": "ping", "ref": r, "payload": {}})).await;
                        ping_out = Some((r, now));
                    }
                    if now >= next_post {
                        post_no += 1;
                        next_post = now + Duration::from_secs(2);
                        let id = format!("probe{instance}-{post_no}");
                        ok &= send(&mut ws, json!({"type": "post", "ref": format!("post:{id}"),
                            "payload": {"room": room, "text": format!("probe {id}"), "clientId": id}})).await;
                    }
                }
            }
        }
        if let Some((_, sent)) = &ping_out
            && !shared.finish.load(Ordering::Acquire)
        {
            note_probe(&shared, instance, *sent);
        }
        let _ = ws.close(None).await;
    }
}

/// A prober's ping sent at `sent` ended now: its wait counts unless its instance was down.
fn note_probe(shared: &Shared, instance: usize, sent: Instant) {
    let now = Instant::now();
    if !shared.downtime.excuses(instance, sent, now) {
        shared
            .probe_longest_ms
            .fetch_max((now - sent).as_millis() as u64, Ordering::Relaxed);
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    redis_port: u16,
    redis: Proc,
    mongo: Proc,
    gateways: Vec<Proc>,
    envs: Vec<(&'static str, String)>,
}

impl Cluster {
    fn start(ports: &[u16]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let redis_port = procs::port();
        let mongo_port = procs::port();
        let redis = procs::redis(redis_port, dir.path());
        let mongo = procs::mongo(mongo_port, dir.path());
        let envs = vec![
            ("REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
            (
                "MONGO_URL",
                format!(
                    "mongodb://127.0.0.1:{mongo_port}/chaos?directConnection=true&serverSelectionTimeoutMS=2000"
                ),
            ),
            ("HEARTBEAT_MS", "5000".to_owned()),
        ];
        let mut cluster = Cluster {
            dir,
            redis_port,
            redis,
            mongo,
            gateways: Vec::new(),
            envs,
        };
        for (i, &port) in ports.iter().enumerate() {
            let gw = cluster.gateway(i, port);
            cluster.gateways.push(gw);
        }
        for &port in ports {
            assert!(
                procs::wait_port(port, Duration::from_secs(60)),
                "gateway up"
            );
        }
        cluster
    }

    fn gateway(&self, i: usize, port: u16) -> Proc {
        let mut envs = self.envs.clone();
        envs.push(("INSTANCE_ID", format!("chaos-{i}")));
        procs::gateway(port, &envs, self.dir.path(), &format!("gw{i}"))
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

/// The fault schedule, one every `fault_every` seconds, cycling through the kinds.
async fn inject_faults(
    cluster: Arc<Mutex<Cluster>>,
    shared: Arc<Shared>,
    until: Instant,
) -> Vec<String> {
    let mut done = Vec::new();
    let every = Duration::from_secs(shared.config.fault_every);
    let n = shared.ports.len();
    let mut kind = 0usize;
    loop {
        tokio::time::sleep(every).await;
        if Instant::now() + Duration::from_secs(3) >= until {
            return done;
        }
        let started = Instant::now();
        let c = cluster.clone();
        let s = shared.clone();
        let k = shared.config.faults[kind % shared.config.faults.len()];
        let what = tokio::task::spawn_blocking(move || {
            let stall = Duration::from_secs(4);
            let long_stall = Duration::from_secs(6);
            match k {
                0 => {
                    let cl = c.lock().unwrap_or_else(|p| p.into_inner());
                    // Longer than the post deadline: posts get `unavailable` and are retried.
                    cl.mongo.signal("STOP");
                    std::thread::sleep(long_stall);
                    cl.mongo.signal("CONT");
                    "MongoDB SIGSTOP 6 s".to_owned()
                }
                1 => {
                    let cl = c.lock().unwrap_or_else(|p| p.into_inner());
                    cl.redis.signal("STOP");
                    std::thread::sleep(stall);
                    cl.redis.signal("CONT");
                    "Redis SIGSTOP 4 s".to_owned()
                }
                2 => {
                    let mut cl = c.lock().unwrap_or_else(|p| p.into_inner());
                    cl.redis.kill();
                    std::thread::sleep(Duration::from_secs(1));
                    let port = cl.redis_port;
                    let dir = cl.logs();
                    cl.redis = procs::redis(port, &dir);
                    "Redis restart (SIGKILL, 1 s down)".to_owned()
                }
                3 | 4 => {
                    let kill = k == 3;
                    // SIGKILL hits instance 1, SIGTERM another one (2, or 0 with two).
                    let i = match (kill, n) {
                        (true, _) => 1 % n,
                        (false, 2) => 0,
                        (false, _) => 2,
                    };
                    s.downtime.begin(i);
                    let port = s.ports[i];
                    let mut cl = c.lock().unwrap_or_else(|p| p.into_inner());
                    if kill {
                        cl.gateways[i].kill();
                    } else {
                        cl.gateways[i].signal("TERM");
                        if !cl.gateways[i].wait_gone(Duration::from_secs(30)) {
                            cl.gateways[i].kill();
                        }
                    }
                    let gw = cl.gateway(i, port);
                    cl.gateways[i] = gw;
                    drop(cl);
                    procs::wait_port(port, Duration::from_secs(60));
                    s.downtime.end(i);
                    format!(
                        "gateway {i} {} and restarted",
                        if kill { "SIGKILL" } else { "SIGTERM" }
                    )
                }
                _ => String::new(),
            }
        })
        .await
        .unwrap_or_else(|_| "fault task panicked".to_owned());
        done.push(format!(
            "t={:>4}s {what} ({:.1} s)",
            shared_elapsed(&shared),
            started.elapsed().as_secs_f64()
        ));
        kind += 1;
    }
}

static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn shared_elapsed(_: &Shared) -> u64 {
    T0.get().map(|t| t.elapsed().as_secs()).unwrap_or(0)
}

/// Resident memory of each gateway instance: (its pid, KiB).
type RssSample = Vec<(u32, u64)>;

async fn rss_now(cluster: &Arc<Mutex<Cluster>>) -> RssSample {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        let cluster = cluster.lock().unwrap_or_else(|p| p.into_inner());
        cluster
            .gateways
            .iter()
            .map(|g| (g.pid, g.rss_kib().unwrap_or(0)))
            .collect()
    })
    .await
    .unwrap_or_default()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn rss_line(sample: &RssSample) -> String {
    sample
        .iter()
        .enumerate()
        .map(|(i, (_, kib))| format!("gw{i} {}", mib(*kib)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Growth of each instance from `from` to `to`; an instance restarted in between (another
/// pid) has no growth to show.
fn rss_growth(from: &RssSample, to: &RssSample) -> String {
    from.iter()
        .zip(to)
        .enumerate()
        .map(|(i, ((pid_a, a), (pid_b, b)))| {
            if pid_a != pid_b {
                format!("gw{i} restarted since")
            } else {
                let pct = (*b as f64 - *a as f64) * 100.0 / (*a).max(1) as f64;
                format!("gw{i} {} -> {} ({pct:+.1}%)", mib(*a), mib(*b))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Backlogs answered from memory and from the store, per the gateway's metrics.
async fn backlog_figures(port: u16) -> String {
    let text = match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        Ok(resp) => resp.text().await.unwrap_or_default(),
        Err(_) => return "no metrics".to_owned(),
    };
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "backlogs from memory {}, from the store {}, slow-client closes {}",
        value("gateway_backlogs_from_memory_total"),
        value("gateway_backlogs_from_store_total"),
        value("gateway_slow_client_closes_total")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_acked_comment_reaches_every_subscriber_once_in_order() {
    let config = Config::from_env();
    T0.get_or_init(Instant::now);
    let ports: Vec<u16> = (0..config.instances).map(|_| procs::port()).collect();
    let cluster = tokio::task::spawn_blocking({
        let ports = ports.clone();
        move || Cluster::start(&ports)
    })
    .await
    .expect("cluster starts");
    let cluster = Arc::new(Mutex::new(cluster));
    let shared = Arc::new(Shared {
        config: config.clone(),
        ports: ports.clone(),
        downtime: Downtime::default(),
        stop_posting: AtomicBool::new(false),
        finish: AtomicBool::new(false),
        acked: Mutex::new(HashMap::new()),
        violations: Mutex::new(Vec::new()),
        posts_sent: AtomicU64::new(0),
        post_errors: AtomicU64::new(0),
        reloads: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        pings: AtomicU64::new(0),
        longest_ping_ms: AtomicU64::new(0),
        pending_posts: AtomicU64::new(0),
        sub_errors: AtomicU64::new(0),
        refreshes: AtomicU64::new(0),
        client_lag_ms: AtomicU64::new(0),
        longest_ping_raw_ms: AtomicU64::new(0),
        stalls: Mutex::new(std::collections::VecDeque::new()),
        probe_longest_ms: AtomicU64::new(0),
        probe_pings: AtomicU64::new(0),
        probe_acks: AtomicU64::new(0),
    });
    let probers = spawn_probers(shared.clone());
    // How late the test process itself runs its tasks (2,000 clients share it): a ping it
    // answers late may be its own stall, not the gateway's.
    tokio::spawn({
        let shared = shared.clone();
        async move {
            let period = Duration::from_millis(100);
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(period).await;
                let now = Instant::now();
                let late = (now - last).saturating_sub(period);
                shared
                    .client_lag_ms
                    .fetch_max(late.as_millis() as u64, Ordering::Relaxed);
                if late > Duration::from_millis(200) {
                    let mut stalls = shared.stalls.lock().unwrap_or_else(|p| p.into_inner());
                    stalls.push_back((last + period, now));
                    if stalls.len() > 100_000 {
                        stalls.pop_front();
                    }
                }
                last = now;
                if shared.finish.load(Ordering::Acquire) {
                    return;
                }
            }
        }
    });
    let views: Vec<Arc<Mutex<View>>> = (0..config.clients)
        .map(|_| Arc::new(Mutex::new(View::default())))
        .collect();
    let mut tasks = Vec::new();
    for (i, view) in views.iter().enumerate() {
        tasks.push(tokio::spawn(run_client(i, shared.clone(), view.clone())));
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(config.secs);
    let faults = tokio::spawn(inject_faults(cluster.clone(), shared.clone(), until));
    let mut rss_at_5min = None;
    let mut reported_minute = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(5)).await;
        // The cluster's lock is held by a fault for seconds (a SIGTERM waits up to 30 s for
        // the drain): never wait for it on a runtime thread the clients need.
        if rss_at_5min.is_none() && started.elapsed() >= Duration::from_secs(300) {
            rss_at_5min = Some(rss_now(&cluster).await);
        }
        let minute = started.elapsed().as_secs() / 60;
        if config.secs >= 600 && minute > reported_minute {
            reported_minute = minute;
            let acked = shared.acked.lock().unwrap_or_else(|p| p.into_inner()).len();
            let rss = rss_line(&rss_now(&cluster).await);
            let violations = shared
                .violations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len();
            println!(
                "t={}s acked {acked}; post errors {}; subscribes refused {}; violations {violations}; RSS {rss}; client lag max {} ms; longest ping {} ms",
                started.elapsed().as_secs(),
                shared.post_errors.load(Ordering::Relaxed),
                shared.sub_errors.load(Ordering::Relaxed),
                shared.client_lag_ms.load(Ordering::Relaxed),
                shared.longest_ping_ms.load(Ordering::Relaxed),
            );
        }
    }
    // Under full load, as the 5-minute sample was.
    let rss_end = rss_now(&cluster).await;
    let faults = faults.await.expect("faults");
    // Settle: posts in flight get their acks, then every client catches up live.
    shared.stop_posting.store(true, Ordering::Release);
    let settle = Instant::now();
    while shared.pending_posts.load(Ordering::Acquire) > 0
        && settle.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unfinished_posts = shared.pending_posts.load(Ordering::Acquire);
    let acked: HashMap<String, (String, u64, String)> = shared
        .acked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut top: HashMap<String, u64> = HashMap::new();
    for (room, seq, _) in acked.values() {
        let t = top.entry(room.clone()).or_insert(0);
        *t = (*t).max(*seq);
    }
    let caught_up = || {
        views.iter().all(|v| {
            let v = v.lock().unwrap_or_else(|p| p.into_inner());
            v.start.keys().all(|room| {
                v.live.contains(room)
                    && v.last.get(room).copied().unwrap_or(0) >= top.get(room).copied().unwrap_or(0)
            })
        })
    };
    // Resubscribes queued behind a fault of the last minute (a store read waits up to 60 s
    // for its turn) need that long at 2,000 clients.
    let catch_up_max = Duration::from_secs(if config.secs >= 600 { 120 } else { 30 });
    let catch_up = Instant::now();
    while !caught_up() && catch_up.elapsed() < catch_up_max {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let catch_up_took = catch_up.elapsed();
    // Who is not live in a room at the end (never got its resubscribe through).
    let not_live: usize = views
        .iter()
        .map(|v| {
            let v = v.lock().unwrap_or_else(|p| p.into_inner());
            v.start
                .keys()
                .filter(|room| !v.live.contains(*room))
                .count()
        })
        .sum();
    shared.finish.store(true, Ordering::Release);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let _ = tokio::task::spawn_blocking(move || probers.join()).await;
    let mut backlog_sources = Vec::new();
    for port in &ports {
        backlog_sources.push(backlog_figures(*port).await);
    }

    // Audit.
    let mut problems: Vec<String> = shared
        .violations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut by_seq: HashMap<(String, u64), String> = HashMap::new();
    for (client_id, (room, seq, id)) in &acked {
        if let Some(other) = by_seq.insert((room.clone(), *seq), id.clone())
            && other != *id
        {
            problems.push(format!(
                "{room} seq {seq} acked for two comments ({client_id})"
            ));
        }
    }
    let mut deliveries = 0usize;
    let mut missing = 0usize;
    // Of them, in rooms the client was not subscribed to at the end.
    let mut missing_not_live = 0usize;
    for (c, view) in views.iter().enumerate() {
        let v = view.lock().unwrap_or_else(|p| p.into_inner());
        for (room, start) in &v.start {
            let seen: HashMap<u64, &str> = v
                .seen
                .get(room)
                .map(|s| s.iter().map(|(seq, id)| (*seq, id.as_str())).collect())
                .unwrap_or_default();
            deliveries += seen.len();
            for ((r, seq), id) in &by_seq {
                if r != room || seq <= start {
                    continue;
                }
                match seen.get(seq) {
                    Some(got) if got == id => {}
                    Some(got) => problems.push(format!(
                        "client {c} {room} seq {seq}: got {got}, acked {id}"
                    )),
                    None => {
                        missing += 1;
                        missing_not_live += usize::from(!v.live.contains(room));
                        if missing <= 20 {
                            problems.push(format!("client {c} {room} seq {seq}: never delivered"));
                        }
                    }
                }
            }
        }
    }
    let longest = shared.longest_ping_ms.load(Ordering::Relaxed);
    println!("== chaos figures ({} s of faults)", config.secs);
    println!(
        "clients {} on {} instances, {} rooms ({} per client), {} posters at {}/s in all",
        config.clients,
        config.instances,
        config.rooms,
        config.rooms_per_client,
        config.posters,
        config.rate
    );
    println!(
        "posts acked {}, post frames sent {} (retries included), post errors {}, unfinished {}",
        acked.len(),
        shared.posts_sent.load(Ordering::Relaxed),
        shared.post_errors.load(Ordering::Relaxed),
        unfinished_posts
    );
    println!(
        "deliveries checked {deliveries}, missing {missing} ({missing_not_live} in rooms not live at the end), reloads {}, reconnects after faults {}, pings {}",
        shared.reloads.load(Ordering::Relaxed),
        shared.reconnects.load(Ordering::Relaxed),
        shared.pings.load(Ordering::Relaxed)
    );
    println!(
        "subscribes refused (the client subscribed again) {}, refreshes {}, client-rooms not live at the end {not_live} (after waiting {:.1} s for all to be live and caught up)",
        shared.sub_errors.load(Ordering::Relaxed),
        shared.refreshes.load(Ordering::Relaxed),
        catch_up_took.as_secs_f64()
    );
    println!(
        "longest ping answer outside the client's own instance downtime: {longest} ms without the test process's own stalls, {} ms as seen",
        shared.longest_ping_raw_ms.load(Ordering::Relaxed)
    );
    let lag = shared.client_lag_ms.load(Ordering::Relaxed);
    println!("longest scheduling lag of the test process itself: {lag} ms");
    let probe_longest = shared.probe_longest_ms.load(Ordering::Relaxed);
    println!(
        "probers (one per instance, own thread, posting every 2 s): {} pings, longest answer outside their instance's downtime {probe_longest} ms; {} posts acked",
        shared.probe_pings.load(Ordering::Relaxed),
        shared.probe_acks.load(Ordering::Relaxed)
    );
    for (i, figures) in backlog_sources.iter().enumerate() {
        println!("gw{i} (since its last start): {figures}");
    }
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for f in &faults {
        let kind = f
            .split_once("s ")
            .map(|(_, k)| k.split(" (").next().unwrap_or(k).to_owned())
            .unwrap_or_default();
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    println!(
        "faults by kind: {}",
        kinds
            .iter()
            .map(|(k, n)| format!("{n} x {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("faults ({}):", faults.len());
    for f in &faults {
        println!("  {f}");
    }
    if let Some(rss) = &rss_at_5min {
        println!("RSS at 5 min: {}", rss_line(rss));
    }
    println!("RSS at the end of the load: {}", rss_line(&rss_end));
    if let Some(rss) = &rss_at_5min {
        println!(
            "RSS growth from 5 min to the end of the load: {}",
            rss_growth(rss, &rss_end)
        );
    }
    if !problems.is_empty() {
        let cl = cluster.lock().unwrap_or_else(|p| p.into_inner());
        for (i, g) in cl.gateways.iter().enumerate() {
            let out = g.output();
            let tail: Vec<&str> = out.lines().rev().take(15).collect();
            println!(
                "-- gw{i} log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    assert!(
        problems.is_empty(),
        "audit failed:\n{}",
        problems.join("\n")
    );
    assert!(!acked.is_empty(), "nothing was posted");
    assert_eq!(unfinished_posts, 0, "posts never acked");
    let ping_max = config.ping_max.as_millis() as u64;
    assert!(
        probe_longest <= ping_max,
        "a prober's ping waited {probe_longest} ms"
    );
    assert!(
        shared.probe_pings.load(Ordering::Relaxed) > 0,
        "no prober ping was answered"
    );
    // The clients' own pings are held to the same bound while the test process kept up with
    // them; when it ran seconds late itself, their waits time it, not the gateway.
    if lag <= CLIENT_LAG_JUDGED_MS {
        assert!(longest <= ping_max, "a client's ping waited {longest} ms");
    } else {
        println!(
            "clients' pings not judged: the test process ran up to {lag} ms late (over {CLIENT_LAG_JUDGED_MS} ms); the probers' are"
        );
    }
    assert!(
        faults.len() >= 5 || config.secs < config.fault_every * 6,
        "faults ran: {faults:?}"
    );
}
