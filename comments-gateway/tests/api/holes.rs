//! The holes of issue 8, each shown closed against real servers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared_proto::{Author, ClientId, CommentText, RoomId};

use crate::helpers::*;
use crate::procs;

/// Sends `count` posts, at most 32 unanswered at a time (the gateway bounds requests in
/// flight per connection), and collects their acks (seqs, in ack order).
async fn pipelined_posts(client: &mut Client, room: &str, prefix: &str, count: usize) -> Vec<u64> {
    let mut sent = 0;
    let mut seqs = Vec::new();
    while seqs.len() < count {
        while sent < count && sent - seqs.len() < 32 {
            client
                .send(json!({"type": "post", "ref": format!("{prefix}{sent}"),
                    "payload": {"room": room, "text": format!("{prefix} {sent}")}}))
                .await;
            sent += 1;
        }
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("ack") => seqs.push(frame["payload"]["comment"]["seq"].as_u64().expect("seq")),
            Some("error") => panic!("post refused: {frame}"),
            _ => {}
        }
    }
    seqs
}

/// Every `comment` frame that arrives within `quiet` of the previous one.
async fn comments_until_quiet(client: &mut Client, quiet: Duration) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        match tokio::time::timeout(quiet, client.recv()).await {
            Ok(frame) if frame["type"] == "comment" => {
                seqs.push(frame["payload"]["seq"].as_u64().expect("seq"));
            }
            Ok(_) => {}
            Err(_) => return seqs,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_catch_up_gets_live_comments_once_and_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backends = Backends {
        redis: None,
        mongo: None,
        prefix: test_harness::unique_prefix(),
        data_dir: Some(dir.path().to_string_lossy().into_owned()),
        demo_dir: None,
    };
    let app = spawn_app(&backends).await;
    let mut poster = app.client(Some(&user_token("JD"))).await;
    poster.subscribe("t").await;
    let seqs = pipelined_posts(&mut poster, "t", "old", 520).await;
    assert_eq!(seqs.last(), Some(&520));

    // A reader 520 behind resumes: 500 and `truncated`.
    let mut reader = app.client(None).await;
    let first = reader
        .request("subscribe", json!({"room": "t", "since": 0}))
        .await;
    assert_eq!(first["payload"]["truncated"], true);
    assert_eq!(seqs_of(&first).last(), Some(&500));
    // Live comments meanwhile must not overtake 501..520.
    pipelined_posts(&mut poster, "t", "live", 3).await;
    let early = comments_until_quiet(&mut reader, Duration::from_millis(700)).await;
    assert_eq!(
        early,
        Vec::<u64>::new(),
        "live comments ahead of the backlog"
    );
    // The next backlog has everything, in order, once; then live goes on.
    let second = reader
        .request("subscribe", json!({"room": "t", "since": 500}))
        .await;
    assert_eq!(second["payload"]["truncated"], false);
    assert_eq!(seqs_of(&second), (501..=523).collect::<Vec<u64>>());
    pipelined_posts(&mut poster, "t", "after", 1).await;
    let live = comments_until_quiet(&mut reader, Duration::from_millis(700)).await;
    assert_eq!(live, vec![524]);
}

fn seqs_of(subscribed: &Value) -> Vec<u64> {
    seqs(&subscribed["payload"]["comments"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_answers_unavailable_in_time_while_pings_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = procs::port();
    let mongo = procs::mongo(port, dir.path());
    let backends = Backends {
        redis: None,
        mongo: Some(format!(
            "mongodb://127.0.0.1:{port}/hung?directConnection=true"
        )),
        prefix: test_harness::unique_prefix(),
        data_dir: None,
        demo_dir: None,
    };
    let app = spawn_app(&backends).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("h").await;
    jd.post("h", "before").await;

    mongo.signal("STOP");
    let sent = Instant::now();
    jd.send(json!({"type": "post", "ref": "hung", "payload": {"room": "h", "text": "while hung", "clientId": "hung-1"}}))
        .await;
    // More requests than may wait at once: the surplus is refused at once, not queued.
    for i in 0..80 {
        jd.send(json!({"type": "history", "ref": format!("h{i}"), "payload": {"room": "h", "before": 100}}))
            .await;
    }
    let mut refused_at_once = 0;
    let mut longest_pong = Duration::ZERO;
    let mut ping = 0;
    let answer = 'outer: loop {
        ping += 1;
        let reference = format!("ping{ping}");
        let asked = Instant::now();
        jd.send(json!({"type": "ping", "ref": reference, "payload": {}}))
            .await;
        loop {
            let frame = jd.recv().await;
            if frame["ref"] == reference.as_str() {
                longest_pong = longest_pong.max(asked.elapsed());
                break;
            }
            if frame["payload"]["code"] == "rate_limited" {
                refused_at_once += 1;
            }
            if frame["ref"] == "hung" {
                break 'outer (frame, sent.elapsed());
            }
        }
        assert!(
            sent.elapsed() < Duration::from_secs(15),
            "no answer to the post"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (frame, took) = answer;
    assert_eq!(frame["payload"]["code"], "unavailable", "{frame}");
    assert!(
        took >= Duration::from_secs(4),
        "answered before the deadline: {took:?}"
    );
    assert!(took < Duration::from_secs(9), "answered late: {took:?}");
    assert!(
        longest_pong < Duration::from_secs(1),
        "pings stalled: {longest_pong:?}"
    );
    assert!(ping >= 10, "pings went on: {ping}");
    assert!(
        refused_at_once >= 16,
        "in-flight requests are bounded: {refused_at_once}"
    );

    mongo.signal("CONT");
    let started = Instant::now();
    let ack = loop {
        let reply = jd
            .request(
                "post",
                json!({"room": "h", "text": "while hung", "clientId": "hung-1"}),
            )
            .await;
        if reply["type"] == "ack" {
            break reply;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no recovery: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let id = ack["payload"]["comment"]["id"].clone();
    let backlog = jd.request("subscribe", json!({"room": "h"})).await;
    let copies = backlog["payload"]["comments"]
        .as_array()
        .expect("comments")
        .iter()
        .filter(|c| c["id"] == id)
        .count();
    assert_eq!(copies, 1, "stored once: {backlog}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_finds_its_first_attempt_stored_is_broadcast() {
    let backends = Backends::shared();
    let app = spawn_app(&backends).await;
    let mut reader = app.client(None).await;
    reader.subscribe("retry").await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("retry").await;
    // The first attempt was stored, then its gateway died before the fan-out.
    let mongo =
        comments_gateway::store::MongoStore::connect(backends.mongo.as_deref().expect("mongo"))
            .await
            .expect("connects");
    let store = comments_gateway::store::Store::Mongo(mongo);
    let first = store
        .insert(comments_gateway::store::NewComment {
            room: RoomId::parse("retry").expect("room"),
            author: Author {
                id: "JD".into(),
                name: "JD Fullname".into(),
            },
            text: CommentText::parse("lost in flight").expect("text"),
            client_id: Some(ClientId::parse("lost-1").expect("client id")),
            created_ms: comments_gateway::store::now_millis(),
            reply_to: None,
        })
        .await
        .expect("stored");
    let ack = jd
        .request(
            "post",
            json!({"room": "retry", "text": "lost in flight", "clientId": "lost-1"}),
        )
        .await;
    assert_eq!(ack["payload"]["comment"]["id"], first.comment.id.as_str());
    let delivered = reader.until("comment").await;
    assert_eq!(delivered["payload"]["id"], first.comment.id.as_str());
    reader.silent_for(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_reloads_never_leave_a_room_unfollowed() {
    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let mut settings_b = settings(&backends);
    settings_b.workers = 2;
    let b = spawn_with(settings_b).await;
    let mut current = b.client(None).await;
    current.subscribe("reload").await;
    for _ in 0..40 {
        // The new page subscribes while the old one closes.
        let url = b.ws_url(None);
        let opening = tokio::spawn(async move {
            let mut next = Client::connect(&url).await;
            next.subscribe("reload").await;
            next
        });
        current.close().await;
        current = opening.await.expect("reloaded");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut jd = a.client(Some(&user_token("JD"))).await;
    jd.subscribe("reload").await;
    jd.post("reload", "still followed?").await;
    let frame = current.until("comment").await;
    assert_eq!(frame["payload"]["text"], "still followed?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_room_stores_every_concurrent_post_once() {
    let backends = Backends::shared();
    let app = spawn_app(&backends).await;
    let mut reader = app.client(None).await;
    reader.subscribe("hot").await;
    let mut posters = Vec::new();
    for p in 0..10 {
        let url = app.ws_url(Some(&user_token(&format!("poster{p}"))));
        posters.push(tokio::spawn(async move {
            let mut client = Client::connect(&url).await;
            client.subscribe("hot").await;
            pipelined_posts(&mut client, "hot", &format!("p{p}-"), 20).await
        }));
    }
    let mut all = Vec::new();
    for poster in posters {
        all.extend(poster.await.expect("poster"));
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=200).collect::<Vec<u64>>(),
        "every post acked once, no seq twice"
    );
    let mut delivered = Vec::new();
    while delivered.len() < 200 {
        let frame = reader.until("comment").await;
        delivered.push(frame["payload"]["seq"].as_u64().expect("seq"));
    }
    assert_eq!(delivered, (1..=200).collect::<Vec<u64>>(), "in order, once");
}
