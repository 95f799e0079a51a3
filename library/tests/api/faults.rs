//! Counter and gateway are optional for the pages: down or hanging, the page still renders
//! within a second (the contract's bound), saying what is unavailable.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Backend, Options, closed_url, hanging_url, spawn_with};

async fn book_page_with(
    counter_url: String,
    gateway_url: Option<String>,
) -> (u16, String, Duration) {
    let mut options = Options::new(Backend::Embedded);
    options.counter_url = Some(counter_url);
    options.gateway_url = gateway_url;
    let app = spawn_with(options).await;
    app.signed_in("JD").await;
    app.create_book("Resilient").await;
    let started = Instant::now();
    let (status, html) = app.get_text("/view/book/1").await;
    (status, html, started.elapsed())
}

#[tokio::test]
async fn counter_down_book_page_renders_with_views_unavailable() {
    let (status, html, took) = book_page_with(closed_url(), None).await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(html.contains("views-unavailable"));
    assert!(html.contains("Book one comment"), "comments still there");
}

#[tokio::test]
async fn counter_hanging_book_page_renders_within_a_second() {
    let (status, html, took) = book_page_with(hanging_url(), None).await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(html.contains("views-unavailable"));
}

#[tokio::test]
async fn gateway_down_or_hanging_book_page_says_comments_are_unavailable() {
    for gateway in [closed_url(), hanging_url()] {
        let (status, html, took) = book_page_with(hanging_url(), Some(gateway)).await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(1), "took {took:?}");
        assert!(html.contains("Comments are unavailable"));
        assert!(html.contains(r#"data-available="false""#));
        assert!(
            html.contains(r#"id="comments""#),
            "the live part can still take over"
        );
    }
}

#[tokio::test]
async fn counter_down_lists_and_api_still_answer_without_views() {
    let mut options = Options::new(Backend::Embedded);
    options.counter_url = Some(hanging_url());
    options.gateway_url = Some(closed_url());
    let app = spawn_with(options).await;
    app.signed_in("JD").await;
    app.create_book("No views").await;
    let started = Instant::now();
    let (status, html) = app.get_text("/view").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(html.contains("views unavailable"));
    let list: Vec<Value> = app.get("/api/v1/book").await.json().await.expect("json");
    assert!(list[0].get("views").is_none());
}
