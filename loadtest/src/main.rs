//! `gateway-load`: load tool for the comments-gateway WebSocket protocol (see docs/protocol.md).
//!
//! * `run`: N subscribed connections (spread over rooms and gateway URLs), K of them post at a
//!   fixed total rate R/s for D seconds; reports delivered messages/s, post-to-delivery latency
//!   percentiles, losses, duplicates, out-of-order deliveries, and the server's CPU time per
//!   delivered comment and RSS per connection (read from `/proc/<server pid>`).
//! * `idle`: opens and subscribes as many connections as asked (optionally across several load
//!   processes, each under the 20,000-descriptor limit), holds them and reports the server's RSS
//!   per connection.
//!
//! Post-to-delivery latency: every posted text carries `lt:<run>:<post index>:<send time us>`; the
//! receiver subtracts that wall-clock time from its own (same machine, so the clocks agree).

mod conn;
mod procstat;
mod stats;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use shared_proto::ids::{RoomId, Username};
use shared_proto::{Claims, Role};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::conn::{Target, Ws, now_us};
use crate::procstat::ProcSample;
use crate::stats::{Shared, lock};

#[derive(Parser)]
#[command(
    name = "gateway-load",
    version,
    about = "Load tool for the comments-gateway WebSocket protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Subscribers + posters at a fixed rate: latency, losses, duplicates, server CPU per delivery.
    Run(RunArgs),
    /// Open, subscribe and hold connections: server RSS per idle connection.
    Idle(IdleArgs),
}

#[derive(Args, Clone, Debug)]
struct CommonArgs {
    /// Gateway WebSocket URL(s), comma separated; connections are spread round-robin.
    #[arg(
        long = "url",
        value_delimiter = ',',
        default_value = "ws://127.0.0.1:3003/ws"
    )]
    urls: Vec<String>,
    /// Mint HS256 tokens with this secret (claims shared_proto::Claims). Posting needs it.
    #[arg(long, env = "AUTH_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,
    /// Subscribers connect without a token (posters still get one).
    #[arg(long)]
    anonymous: bool,
    /// Gateway process id(s) whose RSS and CPU time are read from /proc (summed).
    #[arg(long = "server-pid", value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Spread connections over this many source addresses 127.0.0.<base>.. (0: let the kernel
    /// choose). Each source address has its own ephemeral port range.
    #[arg(long, default_value_t = 4)]
    source_ips: u32,
    /// First source address's last octet.
    #[arg(long, default_value_t = 1)]
    source_ip_base: u32,
    /// Number of rooms the connections are spread over.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Room name prefix (default: `lt<run id>`, fresh rooms every run).
    #[arg(long)]
    room_prefix: Option<String>,
    /// Usernames in minted tokens start with this.
    #[arg(long, default_value = "lt")]
    user_prefix: String,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Seconds one connection may take to connect, get `welcome` and `subscribed`.
    #[arg(long, default_value_t = 30.0)]
    setup_timeout: f64,
    /// Tokio worker threads of the load tool.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Scenario label written into the result.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args, Clone, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Subscribed connections in all (posters included).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// How many of the connections post.
    #[arg(long, default_value_t = 10)]
    posters: usize,
    /// Total posts per second, over all posters.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of posting.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds to wait after the last post for outstanding deliveries.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Seconds between subscribing and the first post.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Length of each posted text (padded).
    #[arg(long, default_value_t = 64)]
    text_len: usize,
    /// Sample the server's RSS every this many seconds (memory-growth runs); 0: off.
    #[arg(long, default_value_t = 0.0)]
    sample_every: f64,
    /// Extra connections per second that connect, subscribe and disconnect again during the run
    /// (not counted as receivers): exercises the connection lifecycle for leak checks.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// How many of the (non-posting) connections also send `typing` (signed in, each its own
    /// user): the cost of typing indicators on top of the posts.
    #[arg(long, default_value_t = 0)]
    typing: usize,
    /// Seconds between two `typing` of one typing connection (the server relays at most one per
    /// user and room every 2 s).
    #[arg(long, default_value_t = 1.0)]
    typing_every: f64,
}

#[derive(Args, Clone, Debug)]
struct IdleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Connections to open and hold (in all, over all processes).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Load processes to spread them over (each stays under the descriptor limit).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Seconds to wait after the last subscription before reading the server's RSS.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// Seconds to hold the connections after the reading (answering server pings).
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// Internal: run as a child of a multi-process idle run.
    #[arg(long, hide = true)]
    child: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Run(a) => a.common.threads,
        Command::Idle(a) => a.common.threads,
    };
    let fd_limit = raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run(args, fd_limit).await,
            Command::Idle(args) if args.child => idle_child(args).await,
            Command::Idle(args) => idle(args, fd_limit).await,
        }
    })
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the soft limit now in force.
fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("warning: could not raise RLIMIT_NOFILE: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    }
}

fn run_id() -> u32 {
    ((now_us() / 1000) as u32) ^ (std::process::id() << 16)
}

/// The ephemeral port range; each source address can hold about this many connections to one target.
fn ephemeral_ports() -> u64 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|v| v.parse::<u64>().ok());
            Some(it.next_back()? - it.next()? + 1)
        })
        .unwrap_or(28_232)
}

async fn targets(urls: &[String]) -> anyhow::Result<Vec<Target>> {
    let mut out = Vec::new();
    for url in urls {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| anyhow!("only ws:// URLs are supported: {url}"))?;
        let authority = rest.split('/').next().unwrap_or(rest);
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("resolving {authority}"))?
            .find(|a| a.is_ipv4())
            .ok_or_else(|| anyhow!("no IPv4 address for {authority}"))?;
        if !addr.ip().is_loopback() {
            bail!("refusing non-loopback target {addr}: benchmarks stay on 127.0.0.0/8");
        }
        out.push(Target {
            url: Arc::from(url.as_str()),
            addr,
        });
    }
    if out.is_empty() {
        bail!("no --url given");
    }
    Ok(out)
}

fn source_ip(common: &CommonArgs, i: usize) -> Option<IpAddr> {
    if common.source_ips == 0 {
        return None;
    }
    let octet = common.source_ip_base + (i as u32 % common.source_ips);
    Some(IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        octet.clamp(1, 254) as u8,
    )))
}

fn mint(secret: &str, user: &str) -> anyhow::Result<String> {
    let now = now_us() / 1_000_000;
    let claims = Claims {
        sub: Username::parse(user)?,
        name: format!("Load {user}"),
        role: Role::User,
        exp: now + 24 * 3600,
        iat: Some(now),
    };
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

fn rooms(common: &CommonArgs, run: u32) -> anyhow::Result<Vec<RoomId>> {
    let prefix = common
        .room_prefix
        .clone()
        .unwrap_or_else(|| format!("lt{run}"));
    (0..common.rooms.max(1))
        .map(|r| RoomId::parse(format!("{prefix}-{r}")).map_err(Into::into))
        .collect()
}

struct Opened {
    conns: Vec<Option<Ws>>,
    failures: usize,
    first_errors: Vec<String>,
    secs: f64,
}

/// Opens and subscribes `n` connections; connection `i` goes to room `i % rooms`.
async fn open_all(
    common: &CommonArgs,
    targets: &[Target],
    rooms: &[RoomId],
    n: usize,
    token_for: impl Fn(usize) -> Option<String>,
) -> Opened {
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let timeout = Duration::from_secs_f64(common.setup_timeout);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let target = targets[i % targets.len()].clone();
        let room = rooms[i % rooms.len()].clone();
        let token = token_for(i);
        let source = source_ip(common, i);
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let result = async {
                let mut ws =
                    tokio::time::timeout(timeout, conn::connect(&target, token.as_deref(), source))
                        .await
                        .map_err(|_| anyhow!("connect timed out"))??;
                conn::welcome_and_subscribe(&mut ws, &room, timeout).await?;
                anyhow::Ok(ws)
            }
            .await;
            (i, result)
        });
    }
    let mut conns: Vec<Option<Ws>> = (0..n).map(|_| None).collect();
    let mut failures = 0;
    let mut first_errors = Vec::new();
    let mut last_report = Instant::now();
    let mut done = 0usize;
    while let Some(joined) = tasks.join_next().await {
        done += 1;
        match joined {
            Ok((i, Ok(ws))) => conns[i] = Some(ws),
            Ok((_, Err(e))) => {
                failures += 1;
                if first_errors.len() < 5 {
                    first_errors.push(format!("{e:#}"));
                }
            }
            Err(e) => {
                failures += 1;
                if first_errors.len() < 5 {
                    first_errors.push(format!("task: {e}"));
                }
            }
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  .. {done}/{n} set up, {failures} failed");
            last_report = Instant::now();
        }
    }
    Opened {
        conns,
        failures,
        first_errors,
        secs: started.elapsed().as_secs_f64(),
    }
}

fn sample_server(pids: &[u32]) -> Option<ProcSample> {
    match procstat::sample_all(pids) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: cannot read server stats: {e:#}");
            None
        }
    }
}

fn append_json(path: &Option<PathBuf>, value: &impl Serialize) -> anyhow::Result<()> {
    let line = serde_json::to_string(value)?;
    println!("RESULT {line}");
    if let Some(path) = path {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}

fn check_capacity(common: &CommonArgs, n: usize, fd_limit: u64) {
    if n as u64 + 64 > fd_limit {
        eprintln!(
            "warning: {n} connections need more descriptors than this process may open ({fd_limit}); use `idle --processes`"
        );
    }
    let per_source = ephemeral_ports();
    let sources = u64::from(common.source_ips.max(1)) * common.urls.len() as u64;
    if n as u64 > per_source * sources {
        eprintln!(
            "warning: {n} connections over {sources} source/target pairs with {per_source} ephemeral ports each: raise --source-ips"
        );
    }
}

// ------------------------------------------------------------------ run

#[derive(Serialize, Default)]
struct LatencySummary {
    count: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    mean_us: f64,
}

fn summarize(h: &hdrhistogram::Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        mean_us: h.mean(),
    }
}

#[derive(Serialize)]
struct RunReport {
    mode: &'static str,
    label: String,
    urls: Vec<String>,
    connections: usize,
    connected: usize,
    connect_failures: usize,
    setup_secs: f64,
    rooms: usize,
    posters: usize,
    rate: f64,
    duration: f64,
    posts_planned: u64,
    /// Connections that also sent `typing`.
    typers: usize,
    /// `typing` frames sent, and received over all connections.
    typing_sent: u64,
    typing_received: u64,
    posts_sent: u64,
    posts_acked: u64,
    posts_refused: u64,
    posts_unanswered: u64,
    /// Up to 20 post indexes that got neither `ack` nor `error`.
    unanswered_examples: Vec<u64>,
    expected_deliveries: u64,
    delivered_unique: u64,
    delivered_frames: u64,
    delivered_per_sec: f64,
    losses: u64,
    /// Up to 20 losses: `[connection, post index, seq, last seq the connection received]`.
    loss_examples: Vec<[u64; 4]>,
    /// Connections that lost at least one delivery, and how many of them were posters.
    conns_with_losses: u64,
    posters_with_losses: u64,
    duplicates: u64,
    out_of_order: u64,
    conns_with_out_of_order: u64,
    conns_closed_early: u64,
    close_reasons: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    latency: LatencySummary,
    ack_latency: LatencySummary,
    server_rss_before_kib: Option<u64>,
    server_rss_subscribed_kib: Option<u64>,
    server_rss_after_kib: Option<u64>,
    server_rss_per_conn_bytes: Option<f64>,
    server_cpu_us: Option<u64>,
    server_user_us: Option<u64>,
    server_sys_us: Option<u64>,
    server_cpu_us_per_delivery: Option<f64>,
    server_cpu_pct: Option<f64>,
    server_threads: Option<u64>,
    tool_cpu_us: Option<u64>,
    rss_timeline_kib: Vec<(f64, u64)>,
    rss_growth_kib_per_min: Option<f64>,
    churned_connections: u64,
    wall_secs: f64,
}

async fn run(args: RunArgs, fd_limit: u64) -> anyhow::Result<()> {
    let common = &args.common;
    if args.rate <= 0.0 || args.duration <= 0.0 {
        bail!("--rate and --duration must be positive");
    }
    let posters = args.posters.clamp(1, args.connections.max(1));
    check_capacity(common, args.connections, fd_limit);
    let Some(secret) = common.token_secret.clone() else {
        bail!("run mode posts, which needs --token-secret (or AUTH_TOKEN_SECRET)");
    };
    let targets = targets(&common.urls).await?;
    let run_id = run_id();
    let rooms = rooms(common, run_id)?;
    let n = args.connections;
    let mut room_subscribers = vec![0u64; rooms.len()];
    for i in 0..n {
        room_subscribers[i % rooms.len()] += 1;
    }
    let total_posts = (args.rate * args.duration).round() as u64;
    eprintln!(
        "run {run_id}: {n} connections over {} room(s) and {} URL(s), {posters} posters, {} posts/s for {} s ({total_posts} posts)",
        rooms.len(),
        targets.len(),
        args.rate,
        args.duration
    );

    let s0 = sample_server(&common.server_pids);
    let tool0 = procstat::sample("self").ok();
    let user_prefix = common.user_prefix.clone();
    let anonymous = common.anonymous;
    let mut token_error = None;
    let tokens: Vec<Option<String>> = (0..n)
        .map(|i| {
            if anonymous && i >= posters + args.typing {
                return None;
            }
            match mint(&secret, &format!("{user_prefix}-{run_id}-{i}")) {
                Ok(t) => Some(t),
                Err(e) => {
                    token_error = Some(e);
                    None
                }
            }
        })
        .collect();
    if let Some(e) = token_error {
        return Err(e.context("minting tokens"));
    }
    let opened = open_all(common, &targets, &rooms, n, |i| tokens[i].clone()).await;
    let connected = opened.conns.iter().filter(|c| c.is_some()).count();
    eprintln!(
        "  {connected} subscribed in {:.1} s, {} failed {:?}",
        opened.secs, opened.failures, opened.first_errors
    );
    if connected == 0 {
        bail!("no connection could be set up: {:?}", opened.first_errors);
    }
    // Only connections that subscribed count as receivers.
    let mut room_subscribers_ok = vec![0u64; rooms.len()];
    for (i, c) in opened.conns.iter().enumerate() {
        if c.is_some() {
            room_subscribers_ok[i % rooms.len()] += 1;
        }
    }
    let _ = room_subscribers;
    let s1 = sample_server(&common.server_pids);

    let shared = Arc::new(Shared::new(
        run_id,
        total_posts,
        args.text_len.max(32),
        posters as u64,
        room_subscribers_ok,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut poster_tx: Vec<Option<mpsc::Sender<u64>>> = Vec::new();
    let mut handles = Vec::new();
    for (i, ws) in opened.conns.into_iter().enumerate() {
        let rx = if i < posters {
            let (tx, rx) = mpsc::channel(4096);
            poster_tx.push(Some(tx));
            Some(rx)
        } else {
            None
        };
        let Some(ws) = ws else {
            if i < posters {
                poster_tx[i] = None;
            }
            continue;
        };
        let room = rooms[i % rooms.len()].clone();
        handles.push(tokio::spawn(conn::run_connection(
            ws,
            i,
            i % rooms.len(),
            room,
            rx,
            shared.clone(),
            stop_rx.clone(),
            (i >= posters && i < posters + args.typing && args.typing_every > 0.0)
                .then(|| Duration::from_secs_f64(args.typing_every)),
        )));
    }

    // Optional churn: extra connections that subscribe and leave, for leak checks.
    let churned = Arc::new(AtomicU64::new(0));
    let churn_task = (args.churn > 0.0).then(|| {
        let targets = targets.clone();
        let rooms = rooms.clone();
        let common = common.clone();
        let churned = churned.clone();
        let mut stop = stop_rx.clone();
        let every = Duration::from_secs_f64(1.0 / args.churn);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut k = 0usize;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => {}
                }
                k += 1;
                let target = targets[k % targets.len()].clone();
                let room = rooms[k % rooms.len()].clone();
                let source = source_ip(&common, k + 7);
                let churned = churned.clone();
                tokio::spawn(async move {
                    if let Ok(mut ws) = conn::connect(&target, None, source).await
                        && conn::welcome_and_subscribe(&mut ws, &room, Duration::from_secs(10))
                            .await
                            .is_ok()
                    {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let _ = ws.close(None).await;
                        churned.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        })
    });

    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let s2 = sample_server(&common.server_pids);
    let started = Instant::now();
    let start_us = now_us();

    // RSS timeline sampler.
    let timeline = Arc::new(std::sync::Mutex::new(Vec::<(f64, u64)>::new()));
    let sampler = (args.sample_every > 0.0 && !common.server_pids.is_empty()).then(|| {
        let pids = common.server_pids.clone();
        let timeline = timeline.clone();
        let every = Duration::from_secs_f64(args.sample_every);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => {}
                }
                if let Ok(Some(s)) = procstat::sample_all(&pids) {
                    lock(&timeline).push((started.elapsed().as_secs_f64(), s.rss_kib));
                }
            }
        })
    });

    // Scheduler: post i is due at start + i / rate, sent by poster i % K.
    let mut last_progress = Instant::now();
    for i in 0..total_posts {
        let due = started + Duration::from_secs_f64(i as f64 / args.rate);
        tokio::time::sleep_until(due.into()).await;
        let p = shared.poster_of(i) as usize;
        if let Some(Some(tx)) = poster_tx.get(p)
            && tx.send(i).await.is_err()
        {
            shared.count_error("poster_gone");
        }
        if last_progress.elapsed() > Duration::from_secs(5) {
            last_progress = Instant::now();
            let h = shared.merged_latency();
            eprintln!(
                "  .. t={:.0}s sent {} acked {} delivered {}/{} p99 {} us",
                started.elapsed().as_secs_f64(),
                shared.posts_sent.load(Ordering::Relaxed),
                shared.acks.load(Ordering::Relaxed),
                shared.unique_delivered.load(Ordering::Relaxed),
                shared.expected.load(Ordering::Relaxed),
                if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.99)
                }
            );
        }
    }
    drop(poster_tx);
    let posting_secs = started.elapsed().as_secs_f64();

    // Drain: until every post is answered and every expected delivery arrived, or the drain time.
    let drain_end = Instant::now() + Duration::from_secs_f64(args.drain);
    while Instant::now() < drain_end {
        let answered =
            shared.acks.load(Ordering::Relaxed) + shared.refusals.load(Ordering::Relaxed);
        if answered >= total_posts
            && shared.unique_delivered.load(Ordering::Relaxed)
                >= shared.expected.load(Ordering::Relaxed)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s3 = sample_server(&common.server_pids);
    let tool1 = procstat::sample("self").ok();
    let wall = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let mut outcomes = Vec::new();
    for h in handles {
        if let Ok(o) = h.await {
            outcomes.push(o);
        }
    }
    if let Some(t) = churn_task {
        let _ = t.await;
    }
    if let Some(t) = sampler {
        let _ = t.await;
    }

    let unanswered_examples: Vec<u64> = (0..total_posts)
        .filter(|&i| !shared.acked.get(i as usize) && !shared.refused.get(i as usize))
        .take(20)
        .collect();
    // Losses: acknowledged posts of a connection's room that it never received.
    let mut acked_by_room: Vec<Vec<usize>> = vec![Vec::new(); rooms.len()];
    for i in 0..total_posts {
        if shared.acked.get(i as usize) {
            acked_by_room[shared.room_of(i)].push(i as usize);
        }
    }
    let mut losses = 0u64;
    let mut loss_examples: Vec<[u64; 4]> = Vec::new();
    let mut conns_with_losses = 0u64;
    let mut posters_with_losses = 0u64;
    let mut duplicates = 0u64;
    let mut out_of_order = 0u64;
    let mut conns_ooo = 0u64;
    let mut frames = 0u64;
    let mut closed_early = 0u64;
    let mut close_reasons: BTreeMap<String, u64> = BTreeMap::new();
    for o in &outcomes {
        let before = losses;
        for &i in acked_by_room[o.room].iter().filter(|&&i| !o.got.get(i)) {
            losses += 1;
            if loss_examples.len() < 20 {
                let seq = shared
                    .acked_seq
                    .get(i)
                    .map(|s| s.load(Ordering::Relaxed))
                    .unwrap_or(0);
                loss_examples.push([o.index as u64, i as u64, seq, o.last_seq]);
            }
        }
        if losses > before {
            conns_with_losses += 1;
            posters_with_losses += u64::from(o.index < posters);
        }
        duplicates += o.duplicates;
        out_of_order += o.out_of_order;
        conns_ooo += u64::from(o.out_of_order > 0);
        frames += o.comments;
        if let Some(reason) = &o.closed {
            closed_early += 1;
            let key: String = reason.chars().take(60).collect();
            *close_reasons.entry(key).or_default() += 1;
        }
        let _ = o.index;
    }
    let unique = shared.unique_delivered.load(Ordering::Relaxed);
    let last_delivery = shared.last_delivery_us.load(Ordering::Relaxed);
    let delivery_window = (last_delivery.saturating_sub(start_us) as f64 / 1e6).max(posting_secs);
    let delivered_per_sec = unique as f64 / delivery_window.max(1e-9);
    let cpu = match (s2, s3) {
        (Some(a), Some(b)) => Some(b.cpu_us.saturating_sub(a.cpu_us)),
        _ => None,
    };
    let rss_per_conn = match (s0, s1) {
        (Some(a), Some(b)) => {
            Some((b.rss_kib as f64 - a.rss_kib as f64) * 1024.0 / connected as f64)
        }
        _ => None,
    };
    let timeline = lock(&timeline).clone();
    let report = RunReport {
        mode: "run",
        label: common.label.clone(),
        urls: common.urls.clone(),
        connections: n,
        connected,
        connect_failures: opened.failures,
        setup_secs: opened.secs,
        rooms: rooms.len(),
        posters,
        rate: args.rate,
        duration: args.duration,
        posts_planned: total_posts,
        typers: args.typing,
        typing_sent: shared.typing_sent.load(Ordering::Relaxed),
        typing_received: shared.typing_received.load(Ordering::Relaxed),
        posts_sent: shared.posts_sent.load(Ordering::Relaxed),
        posts_acked: shared.acks.load(Ordering::Relaxed),
        posts_refused: shared.refusals.load(Ordering::Relaxed),
        posts_unanswered: total_posts.saturating_sub(
            shared.acks.load(Ordering::Relaxed) + shared.refusals.load(Ordering::Relaxed),
        ),
        unanswered_examples,
        expected_deliveries: shared.expected.load(Ordering::Relaxed),
        delivered_unique: unique,
        delivered_frames: frames,
        delivered_per_sec,
        losses,
        loss_examples,
        conns_with_losses,
        posters_with_losses,
        duplicates,
        out_of_order,
        conns_with_out_of_order: conns_ooo,
        conns_closed_early: closed_early,
        close_reasons,
        errors: lock(&shared.errors).clone(),
        latency: summarize(&shared.merged_latency()),
        ack_latency: summarize(&lock(&shared.ack_latency)),
        server_rss_before_kib: s0.map(|s| s.rss_kib),
        server_rss_subscribed_kib: s1.map(|s| s.rss_kib),
        server_rss_after_kib: s3.map(|s| s.rss_kib),
        server_rss_per_conn_bytes: rss_per_conn,
        server_cpu_us: cpu,
        server_user_us: s2.zip(s3).map(|(a, b)| b.user_us.saturating_sub(a.user_us)),
        server_sys_us: s2.zip(s3).map(|(a, b)| b.sys_us.saturating_sub(a.sys_us)),
        server_cpu_us_per_delivery: cpu.map(|c| c as f64 / frames.max(1) as f64),
        server_cpu_pct: cpu.map(|c| c as f64 / 1e4 / wall),
        server_threads: s3.map(|s| s.threads),
        tool_cpu_us: match (tool0, tool1) {
            (Some(a), Some(b)) => Some(b.cpu_us.saturating_sub(a.cpu_us)),
            _ => None,
        },
        rss_growth_kib_per_min: growth(&timeline),
        rss_timeline_kib: timeline,
        churned_connections: churned.load(Ordering::Relaxed),
        wall_secs: wall,
    };
    print_run(&report);
    append_json(&common.json_out, &report)
}

/// Least-squares slope of RSS over the second half of the timeline, KiB per minute.
fn growth(timeline: &[(f64, u64)]) -> Option<f64> {
    let half = &timeline[timeline.len() / 2..];
    if half.len() < 3 {
        return None;
    }
    let n = half.len() as f64;
    let mx = half.iter().map(|p| p.0).sum::<f64>() / n;
    let my = half.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let sxy: f64 = half.iter().map(|p| (p.0 - mx) * (p.1 as f64 - my)).sum();
    let sxx: f64 = half.iter().map(|p| (p.0 - mx).powi(2)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn print_run(r: &RunReport) {
    eprintln!(
        "== {} ==",
        if r.label.is_empty() { "run" } else { &r.label }
    );
    eprintln!(
        "  posts: planned {} sent {} acked {} refused {} unanswered {}",
        r.posts_planned, r.posts_sent, r.posts_acked, r.posts_refused, r.posts_unanswered
    );
    eprintln!(
        "  deliveries: {} unique of {} expected ({:.0}/s), losses {}, duplicates {}, out-of-order {} on {} conns, closed early {} {:?}",
        r.delivered_unique,
        r.expected_deliveries,
        r.delivered_per_sec,
        r.losses,
        r.duplicates,
        r.out_of_order,
        r.conns_with_out_of_order,
        r.conns_closed_early,
        r.close_reasons
    );
    eprintln!(
        "  post->delivery ms: p50 {} p90 {} p99 {} p99.9 {} max {}; post->ack p50 {} p99 {}",
        ms(r.latency.p50_us),
        ms(r.latency.p90_us),
        ms(r.latency.p99_us),
        ms(r.latency.p999_us),
        ms(r.latency.max_us),
        ms(r.ack_latency.p50_us),
        ms(r.ack_latency.p99_us)
    );
    if let (Some(cpu), Some(per)) = (r.server_cpu_us, r.server_cpu_us_per_delivery) {
        eprintln!(
            "  server: cpu {:.2} s (user {:.2} sys {:.2}; {:.0}% of one core), {:.2} us per delivered comment, RSS {:?} -> {:?} -> {:?} KiB ({:.0} B/conn subscribed)",
            cpu as f64 / 1e6,
            r.server_user_us.unwrap_or(0) as f64 / 1e6,
            r.server_sys_us.unwrap_or(0) as f64 / 1e6,
            r.server_cpu_pct.unwrap_or(0.0),
            per,
            r.server_rss_before_kib,
            r.server_rss_subscribed_kib,
            r.server_rss_after_kib,
            r.server_rss_per_conn_bytes.unwrap_or(0.0)
        );
    }
    if r.typers > 0 {
        eprintln!(
            "  typing: {} connections sent {} typing, {} typing frames delivered",
            r.typers, r.typing_sent, r.typing_received
        );
    }
    if !r.errors.is_empty() {
        eprintln!("  errors: {:?}", r.errors);
    }
    if !r.loss_examples.is_empty() {
        eprintln!(
            "  losses [conn, post, seq, conn's last seq]: {:?}",
            r.loss_examples
        );
    }
}

// ------------------------------------------------------------------ idle

#[derive(Serialize)]
struct IdleReport {
    mode: &'static str,
    label: String,
    urls: Vec<String>,
    processes: usize,
    connections: usize,
    connected: u64,
    connect_failures: u64,
    first_errors: Vec<String>,
    setup_secs: f64,
    server_before: Option<ProcSample>,
    server_after: Option<ProcSample>,
    server_rss_per_conn_bytes: Option<f64>,
    server_cpu_us_setup: Option<u64>,
    closed_during_hold: u64,
}

async fn open_idle(args: &IdleArgs, n: usize) -> anyhow::Result<(Opened, Vec<RoomId>)> {
    let common = &args.common;
    let targets = targets(&common.urls).await?;
    let run = run_id();
    let rooms = rooms(common, run)?;
    let secret = common.token_secret.clone();
    let prefix = format!("{}-{run}", common.user_prefix);
    let opened = open_all(common, &targets, &rooms, n, |i| {
        if common.anonymous {
            return None;
        }
        secret
            .as_deref()
            .and_then(|s| mint(s, &format!("{prefix}-{i}")).ok())
    })
    .await;
    Ok((opened, rooms))
}

fn spawn_holders(
    conns: Vec<Option<Ws>>,
    stop: &watch::Receiver<bool>,
    closed: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    conns
        .into_iter()
        .flatten()
        .map(|ws| tokio::spawn(conn::hold(ws, stop.clone(), closed.clone())))
        .collect()
}

/// Child of a multi-process idle run: open, print `READY ok failed secs`, hold until stdin closes.
async fn idle_child(args: IdleArgs) -> anyhow::Result<()> {
    let (opened, _) = open_idle(&args, args.connections).await?;
    let ok = opened.conns.iter().filter(|c| c.is_some()).count();
    let (stop_tx, stop_rx) = watch::channel(false);
    let closed = Arc::new(AtomicU64::new(0));
    let holders = spawn_holders(opened.conns, &stop_rx, &closed);
    println!(
        "READY {ok} {} {:.3} {}",
        opened.failures,
        opened.secs,
        serde_json::to_string(&opened.first_errors)?
    );
    std::io::stdout().flush()?;
    // Hold until the parent closes our stdin (or the hold time passes, as a safety net).
    let eof = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            line.clear();
        }
    });
    let limit = Duration::from_secs_f64(args.hold + args.settle + 600.0);
    let _ = tokio::time::timeout(limit, eof).await;
    let _ = stop_tx.send(true);
    for h in holders {
        let _ = h.await;
    }
    // The parent may have stopped reading: ignore a broken pipe.
    let _ = writeln!(
        std::io::stdout(),
        "CLOSED {}",
        closed.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn idle(args: IdleArgs, fd_limit: u64) -> anyhow::Result<()> {
    let common = &args.common;
    let processes = args.processes.max(1);
    let per_proc = args.connections.div_ceil(processes);
    check_capacity(common, per_proc, fd_limit);
    let before = sample_server(&common.server_pids);
    let started = Instant::now();
    let closed = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut holders = Vec::new();
    let mut children = Vec::new();
    let (connected, failures, first_errors);
    if processes == 1 {
        let (opened, _) = open_idle(&args, args.connections).await?;
        connected = opened.conns.iter().filter(|c| c.is_some()).count() as u64;
        failures = opened.failures as u64;
        first_errors = opened.first_errors.clone();
        holders = spawn_holders(opened.conns, &stop_rx, &closed);
    } else {
        let exe = std::env::current_exe()?;
        let prefix = common
            .room_prefix
            .clone()
            .unwrap_or_else(|| format!("lt{}", run_id()));
        let mut remaining = args.connections;
        for k in 0..processes {
            let n = per_proc.min(remaining);
            remaining -= n;
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("idle")
                .arg("--child")
                .args(["--url", &common.urls.join(",")])
                .args(["--connections", &n.to_string()])
                .args(["--source-ips", &common.source_ips.to_string()])
                .args([
                    "--source-ip-base",
                    &(common.source_ip_base + k as u32 * common.source_ips.max(1)).to_string(),
                ])
                .args(["--rooms", &common.rooms.to_string()])
                .args(["--room-prefix", &prefix])
                .args(["--user-prefix", &format!("{}{k}", common.user_prefix)])
                .args([
                    "--connect-concurrency",
                    &common.connect_concurrency.to_string(),
                ])
                .args(["--setup-timeout", &common.setup_timeout.to_string()])
                .args(["--threads", "1"])
                .args(["--hold", &args.hold.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
            if common.anonymous {
                cmd.arg("--anonymous");
            }
            match &common.token_secret {
                Some(s) => cmd.env("AUTH_TOKEN_SECRET", s),
                None => cmd.env_remove("AUTH_TOKEN_SECRET"),
            };
            children.push(cmd.spawn().context("spawning a load process")?);
        }
        // Wait for every child's READY line.
        let mut ok = 0u64;
        let mut failed = 0u64;
        let mut errors = Vec::new();
        let mut readers = Vec::new();
        for child in &mut children {
            let Some(stdout) = child.stdout.take() else {
                continue;
            };
            readers.push(tokio::task::spawn_blocking(move || {
                let mut reader = std::io::BufReader::new(stdout);
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if line.starts_with("READY ") {
                        return (line.clone(), reader);
                    }
                    line.clear();
                }
                (String::new(), reader)
            }));
        }
        let mut keep_readers = Vec::new();
        for r in readers {
            let (line, reader) = r.await?;
            keep_readers.push(reader);
            let mut parts = line.splitn(5, ' ');
            let _ = parts.next();
            ok += parts
                .next()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            failed += parts
                .next()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let _ = parts.next();
            if let Some(errs) = parts
                .next()
                .and_then(|v| serde_json::from_str::<Vec<String>>(v.trim()).ok())
            {
                errors.extend(errs);
            }
        }
        drop(keep_readers);
        connected = ok;
        failures = failed;
        errors.truncate(5);
        first_errors = errors;
    }
    let setup_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  {connected} connections subscribed in {setup_secs:.1} s ({failures} failed) {first_errors:?}"
    );
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let after = sample_server(&common.server_pids);
    let report = IdleReport {
        mode: "idle",
        label: common.label.clone(),
        urls: common.urls.clone(),
        processes,
        connections: args.connections,
        connected,
        connect_failures: failures,
        first_errors,
        setup_secs,
        server_before: before,
        server_after: after,
        server_rss_per_conn_bytes: match (before, after) {
            (Some(a), Some(b)) if connected > 0 => {
                Some((b.rss_kib as f64 - a.rss_kib as f64) * 1024.0 / connected as f64)
            }
            _ => None,
        },
        server_cpu_us_setup: match (before, after) {
            (Some(a), Some(b)) => Some(b.cpu_us.saturating_sub(a.cpu_us)),
            _ => None,
        },
        closed_during_hold: 0,
    };
    eprintln!(
        "== {} == idle: {} connected, server RSS {:?} -> {:?} KiB, {:.0} B per connection",
        if report.label.is_empty() {
            "idle"
        } else {
            &report.label
        },
        report.connected,
        before.map(|s| s.rss_kib),
        after.map(|s| s.rss_kib),
        report.server_rss_per_conn_bytes.unwrap_or(0.0)
    );
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let mut report = report;
    let _ = stop_tx.send(true);
    for h in holders {
        let _ = h.await;
    }
    for mut child in children {
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
    }
    report.closed_during_hold = closed.load(Ordering::Relaxed);
    append_json(&common.json_out, &report)
}
