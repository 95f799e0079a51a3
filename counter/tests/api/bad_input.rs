//! Bad input gets a clear 4xx JSON error and changes nothing.

use serde_json::json;

use crate::helpers::{Backend, assert_error, read, spawn_app};

#[tokio::test]
async fn invalid_book_ids_are_400() {
    let app = spawn_app(Backend::redis()).await;
    let long = "a".repeat(65);
    for id in ["a.b", "a%2Fb", "%20", "é", long.as_str(), "a%00b"] {
        let (status, body) = app.incr(id).await;
        assert_eq!(status, 400, "incr {id}");
        assert_error(&body, "bad_request");
        let (status, body) = app.get(&format!("/counter/{id}")).await;
        assert_eq!(status, 400, "get {id}");
        assert_error(&body, "bad_request");
    }
    for path in ["/counter/", "/counter//incr"] {
        let res = app.client.request(
            if path.ends_with("incr") {
                reqwest::Method::POST
            } else {
                reqwest::Method::GET
            },
            app.url(path),
        );
        let (status, body) = read(res.send().await.expect("request")).await;
        assert_eq!(status, 400, "{path}");
        assert_error(&body, "bad_request");
    }
    let (_, body) = app.get(&format!("/counter/{}", "a".repeat(64))).await;
    assert_eq!(body["count"], 0, "64 characters is still valid");
    app.stop().await;
}

#[tokio::test]
async fn bad_id_lists_are_400() {
    let app = spawn_app(Backend::redis()).await;
    let too_many: Vec<String> = (0..501).map(|i| i.to_string()).collect();
    let cases = [
        "/counter".to_owned(),
        "/counter?ids=".to_owned(),
        "/counter?ids=1,,2".to_owned(),
        "/counter?ids=1,".to_owned(),
        "/counter?ids=,".to_owned(),
        "/counter?ids=1,a.b".to_owned(),
        "/counter?ids=a%2Fb".to_owned(),
        format!("/counter?ids={}", "x".repeat(65)),
        format!("/counter?ids={}", too_many.join(",")),
    ];
    for path in cases {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 400, "{path}");
        assert_error(&body, "bad_request");
    }
    app.stop().await;
}

#[tokio::test]
async fn wrong_methods_are_405_with_the_error_body() {
    let app = spawn_app(Backend::redis()).await;
    let cases = [
        (reqwest::Method::GET, "/counter/1/incr"),
        (reqwest::Method::PUT, "/counter/1/incr"),
        (reqwest::Method::DELETE, "/counter/1"),
        (reqwest::Method::POST, "/counter/1"),
        (reqwest::Method::POST, "/counter?ids=1"),
        (reqwest::Method::POST, "/healthz"),
    ];
    for (method, path) in cases {
        let res = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        let (status, body) = read(res).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_error(&body, "method_not_allowed");
    }
    let (_, body) = app.get("/counter/1").await;
    assert_eq!(body["count"], 0, "nothing was counted");
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_404_with_the_error_body() {
    let app = spawn_app(Backend::redis()).await;
    for path in ["/", "/nope", "/counter/1/incr/more", "/counter/1/decr"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_error(&body, "not_found");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_body_where_none_belongs_is_400_and_counts_nothing() {
    let app = spawn_app(Backend::redis()).await;
    let res = app
        .client
        .post(app.url("/counter/1/incr"))
        .json(&json!({"count": 1000}))
        .send()
        .await
        .expect("request");
    let (status, body) = read(res).await;
    assert_eq!(status, 400);
    assert_error(&body, "bad_request");
    let res = app
        .client
        .post(app.url("/counter/1/incr"))
        .body(vec![b'x'; 1 << 20])
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status().as_u16(),
        400,
        "a large body is refused without reading it"
    );
    let (_, body) = app.get("/counter/1").await;
    assert_eq!(body["count"], 0);
    app.stop().await;
}
