//! `GET /openapi.json`: served, a valid OpenAPI 3.1 document, and in step with the routes the
//! library registers (JSON API and pages).

use library::openapi::ApiDoc;
use serde_json::Value;
use utoipa::OpenApi;

use crate::helpers::{Backend, spawn_app};

/// Source paths that are not routes of their own.
const EXCLUDED: &[(&str, &str)] = &[
    ("/view/", "trailing-slash alias of /view"),
    ("/view/book/", "trailing-slash alias of /view/book"),
];

#[tokio::test]
async fn openapi_json_is_a_valid_openapi_31_document() {
    let app = spawn_app(Backend::Embedded).await;

    let res = app.get("/openapi.json").await;

    assert_eq!(res.status().as_u16(), 200);
    let served: Value = res.json().await.expect("JSON");
    let generated: Value =
        serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    assert_eq!(
        served, generated,
        "the served document is the generated one"
    );
    test_harness::openapi::assert_valid_openapi_31(&served);
    let book = &served["components"]["schemas"]["Book"]["properties"];
    for field in ["id", "title", "fileNameCover", "fileOriginalBook", "views"] {
        assert!(book.get(field).is_some(), "Book.{field} missing: {book}");
    }
    assert_eq!(
        served["components"]["securitySchemes"]["session"]["in"],
        "cookie"
    );
}

#[tokio::test]
async fn every_registered_route_is_documented() {
    let app = spawn_app(Backend::Embedded).await;
    let doc: Value = app.get("/openapi.json").await.json().await.expect("JSON");

    test_harness::openapi::assert_routes_documented(
        &app.client,
        &app.address,
        &doc,
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &[("routes/api", "/api/v1")],
        &[("id", "1"), ("username", "JD")],
        EXCLUDED,
    )
    .await;
}
