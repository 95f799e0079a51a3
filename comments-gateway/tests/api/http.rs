//! HTTP reads, health, readiness, metrics and JSON errors.

use serde_json::{Value, json};

use crate::helpers::*;

async fn get(url: String) -> (u16, Value) {
    let resp = reqwest::get(url).await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_comments_pages_and_bad_parameters() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("1").await;
    for i in 1..=4 {
        jd.post("1", &format!("c{i}")).await;
    }
    let (status, body) = get(app.http("/rooms/1/comments")).await;
    assert_eq!(status, 200);
    assert_eq!(seqs(&body["comments"]), vec![1, 2, 3, 4]);
    assert_eq!(body["more"], false);
    assert_eq!(
        body["comments"][0]["author"],
        json!({"id": "JD", "name": "JD Fullname"})
    );

    let (_, body) = get(app.http("/rooms/1/comments?limit=2")).await;
    assert_eq!(
        (seqs(&body["comments"]), body["more"].clone()),
        (vec![3, 4], json!(true))
    );
    let (_, body) = get(app.http("/rooms/1/comments?before=3&limit=1")).await;
    assert_eq!(
        (seqs(&body["comments"]), body["more"].clone()),
        (vec![2], json!(true))
    );
    let (_, body) = get(app.http("/rooms/empty/comments")).await;
    assert_eq!(body, json!({"comments": [], "more": false}));

    for bad in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "before=-1",
        "before=x",
        "limit=",
    ] {
        let (status, body) = get(app.http(&format!("/rooms/1/comments?{bad}"))).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
    let (status, _) = get(app.http("/rooms/a.b/comments")).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_json_errors() {
    let app = spawn_app(&Backends::shared()).await;
    let (status, _) = get(app.http("/healthz")).await;
    assert_eq!(status, 200);
    app.wait_ready(200).await;

    let _client = app.client(None).await;
    let metrics = reqwest::get(app.http("/metrics"))
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    for name in [
        "gateway_connections{service=\"comments-gateway\"} 1",
        "gateway_rooms{",
        "gateway_messages_in_total{",
        "gateway_messages_out_total{",
        "gateway_slow_client_closes_total{",
        "gateway_redis_up{service=\"comments-gateway\"} 1",
        "gateway_mongo_up{service=\"comments-gateway\"} 1",
    ] {
        assert!(metrics.contains(name), "{name} missing in\n{metrics}");
    }

    let (status, body) = get(app.http("/nope")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let resp = reqwest::Client::new()
        .delete(app.http("/rooms/1/comments"))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 405);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}
