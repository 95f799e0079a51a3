//! `/healthz`, `/readyz`, `/metrics`.

use crate::helpers::{Backend, spawn_app};

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = spawn_app(Backend::redis()).await;
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");

    app.incr("1").await;
    app.get("/counter/a.b").await;
    let res = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.expect("text");
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/counter/{bookId}/incr""#), "{text}");
    assert!(text.contains(r#"status="400""#), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("counter_backend_errors_total"), "{text}");
    app.stop().await;
}
