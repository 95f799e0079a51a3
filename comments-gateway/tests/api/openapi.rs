//! `GET /openapi.json`: served, a valid OpenAPI 3.1 document, and in step with the routes the
//! gateway registers.

use comments_gateway::openapi::ApiDoc;
use serde_json::Value;
use utoipa::OpenApi;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_documents_every_route() {
    let mut app = spawn_app(&Backends::mongo_only()).await;
    let client = reqwest::Client::new();

    let resp = client
        .get(app.http("/openapi.json"))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 200);
    let served: Value = resp.json().await.expect("JSON");

    let generated: Value = serde_json::to_value(ApiDoc::openapi()).expect("serialises");
    assert_eq!(
        served, generated,
        "the served document is the generated one"
    );
    let paths = served["paths"].as_object().expect("paths");
    for path in [
        "/ws",
        "/rooms/{room}/comments",
        "/rooms/{room}/comments/{id}",
        "/rooms/{room}/presence",
        "/admin/notice",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    assert_eq!(served["openapi"], "3.1.0");
    let _ = app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_reads_may_be_read_from_any_page() {
    let mut app = spawn_app(&Backends::mongo_only()).await;
    for path in [
        "/rooms/1/comments",
        "/rooms/1/comments/nope",
        "/rooms/1/presence",
    ] {
        let resp = reqwest::get(app.http(path)).await.expect("answers");
        assert_eq!(
            resp.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("*"),
            "{path}"
        );
    }
    let _ = app.stop().await;
}
