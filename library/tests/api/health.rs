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

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_returns_ok() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let settings = library::Settings {
        host: "127.0.0.1".into(),
        port: 0,
        data_dir: tmp.path().to_path_buf(),
        demo_dir: crate::helpers::demo_dir(),
        counter_url: crate::helpers::hanging_url(),
        gateway_url: crate::helpers::closed_url(),
        workers: 1,
        app_env: service_kit::secrets::AppEnv::Development,
        ..library::Settings::default()
    };
    let app = library::Application::build(settings).await.expect("builds");
    let port = app.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("GET");
    assert_eq!(health.status().as_u16(), 200);
    let _ = health.text().await;

    // A book page waiting ~300 ms on a hanging counter is in flight when the stop comes.
    let in_flight = tokio::spawn(async move {
        reqwest::get(format!("http://127.0.0.1:{port}/view/book/1"))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop.send(());
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("stops in time")
        .expect("task");
    assert!(result.is_ok(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let in_flight = in_flight.await.expect("task");
    assert_eq!(in_flight, 200, "the in-flight page view finished");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no longer listening"
    );
}
