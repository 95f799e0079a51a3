//! Redis and MongoDB outages, and the graceful drain.

use std::time::Duration;

use serde_json::json;
use test_harness::{MongoServer, RedisServer};

use crate::helpers::*;

async fn next_comment_text(client: &mut Client) -> String {
    let frame = client.until("comment").await;
    frame["payload"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_keeps_local_delivery_and_recovers_the_gap() {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("redis starts");
    let mut backends = Backends::shared();
    backends.redis = Some(redis.url());
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    a.wait_ready(200).await;
    b.wait_ready(200).await;
    let mut poster = a.client(Some(&user_token("JD"))).await;
    poster.subscribe("r").await;
    let mut local = a.client(None).await;
    local.subscribe("r").await;
    let mut remote = b.client(None).await;
    remote.subscribe("r").await;
    poster.post("r", "before").await;
    assert_eq!(next_comment_text(&mut local).await, "before");
    assert_eq!(next_comment_text(&mut remote).await, "before");

    let redis = tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        redis.stop();
        redis
    })
    .await
    .expect("redis stops");
    let body = a.wait_ready(503).await;
    assert_eq!(body["failing"], json!(["redis"]));
    b.wait_ready(503).await;

    poster.post("r", "during").await;
    assert_eq!(
        next_comment_text(&mut local).await,
        "during",
        "local clients keep working"
    );

    let _redis = tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        redis.start_again();
        redis
    })
    .await
    .expect("redis restarts");
    a.wait_ready(200).await;
    b.wait_ready(200).await;
    assert_eq!(
        next_comment_text(&mut remote).await,
        "during",
        "gap recovered after reconnect"
    );

    let mut poster_b = b.client(Some(&user_token("BadComedian"))).await;
    poster_b.subscribe("r").await;
    poster_b.post("r", "after").await;
    assert_eq!(
        next_comment_text(&mut local).await,
        "after",
        "cross-instance delivery resumes"
    );
    assert_eq!(next_comment_text(&mut remote).await, "after");
    local.silent_for(Duration::from_millis(200)).await;
    remote.silent_for(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_outage_refuses_posts_then_recovers() {
    let mongo = tokio::task::spawn_blocking(MongoServer::start_persistent)
        .await
        .expect("mongo starts");
    let url = format!(
        "{}&serverSelectionTimeoutMS=500&connectTimeoutMS=500",
        test_harness::mongo_url_with_db(&mongo.url(), "library")
    );
    let backends = Backends {
        redis: None,
        mongo: Some(url),
        prefix: test_harness::unique_prefix(),
        data_dir: None,
        demo_dir: None,
    };
    let app = spawn_app(&backends).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("m").await;
    jd.post("m", "stored").await;

    let mongo = tokio::task::spawn_blocking(move || {
        let mut mongo = mongo;
        mongo.stop();
        mongo
    })
    .await
    .expect("mongo stops");
    let refused = jd
        .request("post", json!({"room": "m", "text": "lost?"}))
        .await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["payload"]["code"], "unavailable");
    let body = app.wait_ready(503).await;
    assert_eq!(body["failing"], json!(["mongo"]));
    let history = jd
        .request("history", json!({"room": "m", "before": 10}))
        .await;
    assert_eq!(history["payload"]["code"], "unavailable");
    let resp = reqwest::get(app.http("/rooms/m/comments"))
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 503);

    let _mongo = tokio::task::spawn_blocking(move || {
        let mut mongo = mongo;
        mongo.start_again();
        mongo
    })
    .await
    .expect("mongo restarts");
    app.wait_ready(200).await;
    let started = std::time::Instant::now();
    let ack = loop {
        let reply = jd
            .request(
                "post",
                json!({"room": "m", "text": "after", "clientId": "after-1"}),
            )
            .await;
        if reply["type"] == "ack" {
            break reply;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no recovery: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        ack["payload"]["comment"]["seq"], 2,
        "the refused post took no seq"
    );
    let backlog = jd.request("subscribe", json!({"room": "m"})).await;
    assert_eq!(seqs(&backlog["payload"]["comments"]), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websockets_with_1001() {
    let mut app = spawn_app(&Backends::mongo_only()).await;
    let mut first = app.client(None).await;
    first.subscribe("index").await;
    let mut second = app.client(Some(&user_token("JD"))).await;
    let readers = tokio::spawn(async move { (first.ended().await, second.ended().await) });
    app.stop().await.expect("drains cleanly");
    let (a, b) = readers.await.expect("readers");
    for ended in [a, b] {
        match ended {
            Ended::Closed(code) => assert_eq!(code, Some(1001)),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
}
