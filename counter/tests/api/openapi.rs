//! `GET /openapi.json`: served, a valid OpenAPI 3.1 document, and in step with the routes the
//! counter registers.

use counter::openapi::ApiDoc;
use serde_json::Value;
use utoipa::OpenApi;

use crate::helpers::{Backend, spawn_app};

/// Source paths that are not routes of their own.
const EXCLUDED: &[(&str, &str)] = &[
    (
        "/counter/",
        "an empty bookId: answers 400 bad_request to any method",
    ),
    (
        "/counter//incr",
        "an empty bookId: answers 400 bad_request to any method",
    ),
];

#[tokio::test]
async fn openapi_json_is_a_valid_openapi_31_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(Backend::Embedded(dir.path().to_owned())).await;

    let (status, served) = app.get("/openapi.json").await;

    assert_eq!(status, 200, "{served}");
    let generated: Value =
        serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    assert_eq!(
        served, generated,
        "the served document is the generated one"
    );
    test_harness::openapi::assert_valid_openapi_31(&served);
    assert_eq!(
        served["paths"]["/counter/{bookId}/incr"]["post"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/CountResponse"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_registered_route_is_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(Backend::Embedded(dir.path().to_owned())).await;
    let (_, doc) = app.get("/openapi.json").await;

    test_harness::openapi::assert_routes_documented(
        &app.client,
        &app.address,
        &doc,
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &[],
        &[("bookId", "openapi-probe")],
        EXCLUDED,
    )
    .await;
    app.stop().await;
}
