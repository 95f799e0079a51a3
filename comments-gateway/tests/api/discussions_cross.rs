//! Discussions across instances sharing one Redis and one MongoDB: edits, reactions, typing
//! and presence reach every instance; the readers of an instance killed without a word stop
//! counting within 30 s.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

async fn presence_of(app_port: u16, room: &str) -> Value {
    reqwest::get(format!("http://127.0.0.1:{app_port}/rooms/{room}/presence"))
        .await
        .expect("answers")
        .json()
        .await
        .expect("json")
}

/// Waits (up to `limit`) for a `presence` frame with `readers`; returns how long it took.
async fn until_readers(client: &mut Client, readers: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let frame = client.until("presence").await;
        if frame["payload"]["readers"] == readers {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still {frame}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reactions_typing_and_presence_reach_every_instance() {
    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    let mut jd = a.client(Some(&user_token("JD"))).await;
    jd.keep_presence = true;
    jd.subscribe("x").await;
    until_readers(&mut jd, 1, WAIT).await;
    let mut admin = b.client(Some(&admin_token())).await;
    admin.subscribe("x").await;
    let mut guest = b.client(None).await;
    guest.keep_presence = true;
    guest.subscribe("x").await;

    // Presence: a reader who arrives on b shows on a within 2 s (and b knows a's reader).
    let took = until_readers(&mut jd, 3, WAIT).await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
    until_readers(&mut guest, 3, WAIT).await;
    let on_a = presence_of(a.port, "x").await;
    assert_eq!(on_a["readers"], 3);
    assert_eq!(presence_of(b.port, "x").await, on_a);

    // An edit on a reaches b; a reaction on b reaches a; typing on b reaches a.
    let comment = jd.post("x", "hello").await;
    assert_eq!(guest.until("comment").await["payload"]["id"], comment["id"]);
    let ack = jd
        .request(
            "edit",
            json!({"room": "x", "id": comment["id"], "text": "hello again"}),
        )
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let edited = guest.until("comment_edited").await;
    assert_eq!(edited["payload"]["comment"]["text"], "hello again");
    let reacted = admin
        .request(
            "react",
            json!({"room": "x", "id": comment["id"], "emoji": "🎉", "on": true}),
        )
        .await;
    assert_eq!(
        reacted["payload"]["reactions"],
        json!({"🎉": 1}),
        "{reacted}"
    );
    let live = jd.until("reactions").await;
    assert_eq!(
        live["payload"],
        json!({"room": "x", "id": comment["id"], "reactions": {"🎉": 1}})
    );
    admin
        .send(json!({"type": "typing", "payload": {"room": "x"}}))
        .await;
    let typing = jd.until("typing").await;
    assert_eq!(
        typing["payload"]["user"],
        json!({"id": "Admin", "name": "The Admin"})
    );

    // Leaving on b shows on a.
    guest.close().await;
    until_readers(&mut jd, 2, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reactions_on_two_instances_count_once_and_end_on_the_current_counts() {
    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    let mut author = a.client(Some(&user_token("JD"))).await;
    author.subscribe("race").await;
    let comment = author.post("race", "react").await;
    let mut watchers = Vec::new();
    for app in [&a, &b] {
        let mut watcher = app.client(None).await;
        watcher.subscribe("race").await;
        watchers.push(watcher);
    }
    // Eight users, half on each instance, each says 👍 twice and ❤️ on then off.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = if i % 2 == 0 { &a } else { &b };
        let mut client = app.client(Some(&user_token(&format!("u{i}")))).await;
        client.subscribe("race").await;
        let id = comment["id"].clone();
        tasks.push(tokio::spawn(async move {
            for (emoji, on) in [("👍", true), ("❤️", true), ("👍", true), ("❤️", false)]
            {
                let reply = client
                    .request(
                        "react",
                        json!({"room": "race", "id": id, "emoji": emoji, "on": on}),
                    )
                    .await;
                assert_eq!(reply["type"], "ack", "{reply}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("reactor");
    }
    let final_counts = json!({"👍": 8});
    // A fresh subscribe shows the counts its instance knows; a change still on its way from the
    // other instance follows as a `reactions` message, so what the page ends on is current.
    let backlog = author.subscribe("race").await;
    let shown = backlog["payload"]["comments"][0]["reactions"].clone();
    let mut views = vec![(&mut author, shown)];
    // The last `reactions` each watcher gets carries the current counts.
    for watcher in &mut watchers {
        views.push((watcher, Value::Null));
    }
    for (watcher, shown) in views {
        let mut last = shown;
        loop {
            let quiet =
                tokio::time::timeout(Duration::from_secs(1), watcher.until("reactions")).await;
            match quiet {
                Ok(frame) => last = frame["payload"]["reactions"].clone(),
                Err(_) => break,
            }
        }
        assert_eq!(last, final_counts);
    }
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_gateway_process(backends: &Backends, port: u16) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_comments-gateway"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("APP_ENV", "development")
        .env("MAX_CONNS_PER_IP", "0")
        .env("AUTH_TOKEN_SECRET", SECRET)
        .env("REDIS_URL", backends.redis.clone().expect("redis"))
        .env("MONGO_URL", backends.mongo.clone().expect("mongo"))
        .env("CHANNEL_PREFIX", &backends.prefix)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gateway process starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "gateway did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Process(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_a_killed_instance_stop_counting_within_30_seconds() {
    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let port = test_harness::free_port();
    let mut b = spawn_gateway_process(&backends, port);
    let mut watcher = a.client(Some(&user_token("JD"))).await;
    watcher.keep_presence = true;
    watcher.subscribe("k").await;
    let mut on_b = Vec::new();
    for token in [Some(admin_token()), None, None] {
        let mut client = Client::connect(&format!(
            "ws://127.0.0.1:{port}/ws{}",
            token.map(|t| format!("?token={t}")).unwrap_or_default()
        ))
        .await;
        client.subscribe("k").await;
        on_b.push(client);
    }
    until_readers(&mut watcher, 4, WAIT).await;

    // SIGKILL: no goodbye, no key removal; the TTL has to do it.
    b.0.kill().expect("kill");
    let _ = b.0.wait();
    let killed = Instant::now();
    loop {
        let now = presence_of(a.port, "k").await;
        if now["readers"] == 1 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the dead instance's readers still count: {now}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let frame = watcher.until("presence").await;
    assert_eq!(frame["payload"]["readers"], 1, "{frame}");
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "{:?}",
        killed.elapsed()
    );
    drop(on_b);
}
