//! `GET /openapi.json`: served, a valid OpenAPI 3.1 document, and in step with the routes the
//! gateway registers.

use comments_gateway::openapi::ApiDoc;
use serde_json::Value;
use utoipa::OpenApi;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_is_a_valid_openapi_31_document() {
    let mut app = spawn_app(&Backends::mongo_only()).await;

    let resp = reqwest::get(app.http("/openapi.json"))
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 200);
    let served: Value = resp.json().await.expect("JSON");

    let generated: Value = serde_json::to_value(ApiDoc::openapi()).expect("serialises");
    assert_eq!(
        served, generated,
        "the served document is the generated one"
    );
    test_harness::openapi::assert_valid_openapi_31(&served);
    let comment = &served["components"]["schemas"]["Comment"]["properties"];
    for field in [
        "id",
        "seq",
        "room",
        "author",
        "text",
        "createdAt",
        "replyTo",
        "editedAt",
        "reactions",
    ] {
        assert!(
            comment.get(field).is_some(),
            "Comment.{field} missing: {comment}"
        );
    }
    assert_eq!(
        served["components"]["securitySchemes"]["admin"]["scheme"],
        "bearer"
    );
    let _ = app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registered_route_is_documented() {
    let mut app = spawn_app(&Backends::mongo_only()).await;
    let doc: Value = reqwest::get(app.http("/openapi.json"))
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");

    test_harness::openapi::assert_routes_documented(
        &reqwest::Client::new(),
        &app.http(""),
        &doc,
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &[],
        &[("room", "openapi-probe"), ("id", "openapi-probe")],
        &[],
    )
    .await;
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
