//! Without MONGO_URL and REDIS_URL: embedded storage that survives restarts, demo data once.

use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_loads_demo_once_and_persists_across_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let demo = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        demo.path().join("comments.json"),
        json!([
            {"room": "index", "authorId": "JD", "authorName": "John Doe", "text": "Welcome!", "createdAt": "2026-01-01T10:00:00.000Z"},
            {"room": "1", "authorId": "BadComedian", "authorName": "Bad Comedian", "text": "Great book", "createdAt": "2026-01-02T10:00:00Z"},
            {"room": "index", "authorId": "Admin", "authorName": "Admin", "text": "Second", "createdAt": "2026-01-03T10:00:00.000Z"}
        ])
        .to_string(),
    )
    .expect("writes demo");
    let backends = Backends {
        redis: None,
        mongo: None,
        prefix: test_harness::unique_prefix(),
        data_dir: Some(data.path().to_string_lossy().into_owned()),
        demo_dir: Some(demo.path().to_string_lossy().into_owned()),
    };

    let mut first = spawn_app(&backends).await;
    first.wait_ready(200).await;
    let mut jd = first.client(Some(&user_token("JD"))).await;
    let index = jd.subscribe("index").await;
    assert_eq!(seqs(&index["payload"]["comments"]), vec![1, 2]);
    assert_eq!(
        index["payload"]["comments"][0]["createdAt"],
        "2026-01-01T10:00:00.000Z"
    );
    assert_eq!(
        index["payload"]["comments"][0]["author"],
        json!({"id": "JD", "name": "John Doe"})
    );
    let posted = jd.post("index", "kept").await;
    assert_eq!(posted["seq"], 3);
    let reply = jd
        .request(
            "post",
            json!({"room": "index", "text": "kept", "clientId": "c1"}),
        )
        .await;
    let keyed = reply["payload"]["comment"].clone();
    jd.close().await;
    first.stop().await.expect("stops");

    let second = spawn_app(&backends).await;
    let mut jd = second.client(Some(&user_token("JD"))).await;
    let index = jd.subscribe("index").await;
    assert_eq!(
        seqs(&index["payload"]["comments"]),
        vec![1, 2, 3, 4],
        "demo loaded once, posts kept"
    );
    let again = jd
        .request(
            "post",
            json!({"room": "index", "text": "kept", "clientId": "c1"}),
        )
        .await;
    assert_eq!(
        again["payload"]["comment"], keyed,
        "clientId remembered across restarts"
    );
    let book = jd.subscribe("1").await;
    assert_eq!(book["payload"]["comments"][0]["text"], "Great book");
    let resp = reqwest::get(second.http("/rooms/1/comments"))
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 200);
}
