//! Redis stopping and coming back mid-test.

use std::time::{Duration, Instant};

use test_harness::RedisServer;

use crate::helpers::{Backend, assert_error, spawn_app};

#[tokio::test]
async fn redis_down_is_503_and_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let app = spawn_app(Backend::Redis {
        url: redis.url(),
        prefix: test_harness::unique_prefix(),
    })
    .await;
    let (status, body) = app.incr("1").await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(1)));

    redis.stop();
    let (status, body) = app.incr("1").await;
    assert_eq!(status, 503, "{body}");
    assert_error(&body, "unavailable");
    let (status, body) = app.get("/counter/1").await;
    assert_eq!(status, 503);
    assert_error(&body, "unavailable");
    let (status, body) = app.get("/counter?ids=1,2").await;
    assert_eq!(status, 503);
    assert_error(&body, "unavailable");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        serde_json::json!({"status": "unavailable", "failing": ["redis"]})
    );
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200, "the process still serves");

    redis.start_again(); // empty: redis-server keeps nothing on disk here
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = app.incr("1").await;
        if status == 200 {
            assert_eq!(body["count"], 1, "a fresh Redis starts from zero");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 10 s: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn starts_while_redis_is_down_and_becomes_ready_when_it_comes() {
    let mut redis = RedisServer::start();
    redis.stop();
    let app = spawn_app(Backend::Redis {
        url: redis.url(),
        prefix: test_harness::unique_prefix(),
    })
    .await;
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 503);
    redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.incr("7").await.0, 200);
    app.stop().await;
}
