use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Backend, Options, spawn_app, spawn_with};

#[tokio::test]
async fn healthz_readyz_and_metrics_answer() {
    let app = spawn_app(Backend::Embedded).await;
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("http_requests_total"), "{text}");
}

#[tokio::test]
async fn readyz_on_mongo_is_ok() {
    let app = spawn_app(Backend::Mongo).await;
    assert_eq!(app.get("/readyz").await.status().as_u16(), 200);
}

#[tokio::test]
async fn readyz_names_mongo_when_it_is_down_and_ignores_counter_and_gateway() {
    let mut mongo = test_harness::MongoServer::start();
    let url = test_harness::mongo_url_with_db(&mongo.url(), &test_harness::unique_db());
    let url = format!("{url}&serverSelectionTimeoutMS=500");
    let mut options = Options::new(Backend::Mongo);
    options.mongo_url = Some(url);
    options.counter_url = Some(crate::helpers::closed_url());
    options.gateway_url = Some(crate::helpers::closed_url());
    let app = spawn_with(options).await;
    assert_eq!(
        app.get("/readyz").await.status().as_u16(),
        200,
        "counter/gateway down do not matter"
    );

    mongo.stop();
    let response = tokio::time::timeout(Duration::from_secs(5), app.get("/readyz"))
        .await
        .expect("readyz answers quickly");
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["failing"], serde_json::json!(["mongo"]));
}

#[tokio::test]
async fn unknown_api_routes_are_json_404_and_wrong_methods_json_405() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app.get("/api/v1/nope").await;
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");

    let response = app
        .client
        .delete(app.url("/api/v1/book"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let response = app
        .client
        .patch(app.url("/api/v1/user/token"))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status().as_u16(), 405);
}

#[tokio::test]
async fn unknown_pages_get_the_html_404_page() {
    let app = spawn_app(Backend::Embedded).await;
    for path in [
        "/nope",
        "/view/nope",
        "/view/book/999",
        "/view/book/abc",
        "/view/user/profile/ghost",
        "/static/nope.css",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        let body = response.text().await.expect("body");
        assert!(body.contains("404"), "{path}");
    }
}
