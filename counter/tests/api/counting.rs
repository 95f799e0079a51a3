//! The contract's counter calls, on Redis and on the embedded store.

use std::collections::HashSet;

use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app, unique_book};

async fn both_backends() -> Vec<(TestApp, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = spawn_app(Backend::Embedded(dir.path().to_path_buf())).await;
    let redis = spawn_app(Backend::redis()).await;
    let other = tempfile::tempdir().expect("tempdir");
    vec![(redis, other), (embedded, dir)]
}

#[tokio::test]
async fn incr_answers_the_value_after_the_increment() {
    for (app, _dir) in both_backends().await {
        let (status, body) = app.incr("1").await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"bookId": "1", "count": 1}));
        let (_, body) = app.incr("1").await;
        assert_eq!(body, json!({"bookId": "1", "count": 2}));
        app.stop().await;
    }
}

#[tokio::test]
async fn never_counted_book_reads_zero_not_404() {
    for (app, _dir) in both_backends().await {
        let (status, body) = app.get("/counter/never-seen_1").await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"bookId": "never-seen_1", "count": 0}));
        assert!(body["count"].is_u64(), "count is a JSON number");
        app.stop().await;
    }
}

#[tokio::test]
async fn get_reads_what_incr_wrote() {
    for (app, _dir) in both_backends().await {
        for _ in 0..3 {
            app.incr("abc").await;
        }
        let (status, body) = app.get("/counter/abc").await;
        assert_eq!((status, body), (200, json!({"bookId": "abc", "count": 3})));
        app.stop().await;
    }
}

#[tokio::test]
async fn batch_read_gives_every_asked_id() {
    for (app, _dir) in both_backends().await {
        for _ in 0..8 {
            app.incr("1").await;
        }
        for _ in 0..3 {
            app.incr("abc").await;
        }
        let (status, body) = app.get("/counter?ids=1,2,abc").await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"counts": {"1": 8, "2": 0, "abc": 3}}));

        let ids: Vec<String> = (0..500).map(|i| format!("id{i}")).collect();
        let (status, body) = app.get(&format!("/counter?ids={}", ids.join(","))).await;
        assert_eq!(status, 200, "500 ids are allowed");
        assert_eq!(body["counts"].as_object().map(|m| m.len()), Some(500));
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_increments_add_exactly_n() {
    for (app, _dir) in both_backends().await {
        let n = 300;
        let book = unique_book();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let client = app.client.clone();
            let url = app.url(&format!("/counter/{book}/incr"));
            tasks.push(tokio::spawn(async move {
                let res = client.post(url).send().await.expect("request");
                assert_eq!(res.status().as_u16(), 200);
                res.json::<serde_json::Value>().await.expect("json")["count"]
                    .as_u64()
                    .expect("count")
            }));
        }
        let mut seen = HashSet::new();
        for task in tasks {
            assert!(
                seen.insert(task.await.expect("join")),
                "every increment sees its own value"
            );
        }
        assert_eq!(seen, (1..=n).collect::<HashSet<u64>>());
        let (_, body) = app.get(&format!("/counter/{book}")).await;
        assert_eq!(body["count"], n);
        app.stop().await;
    }
}

#[tokio::test]
async fn redis_keys_are_the_bare_book_id_like_the_original_counter() {
    // An existing Redis of the Node counter keeps its counts: keys are the bare bookId.
    let url = test_harness::redis();
    let book = unique_book();
    let client = redis::Client::open(url.as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("SET")
        .arg(&book)
        .arg(41)
        .query_async(&mut conn)
        .await
        .expect("set");

    let app = spawn_app(Backend::Redis {
        url,
        prefix: String::new(),
    })
    .await;
    let (_, body) = app.incr(&book).await;
    assert_eq!(body["count"], 42);
    let stored: i64 = redis::cmd("GET")
        .arg(&book)
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(stored, 42);
    app.stop().await;
}
