//! Cookie-authenticated state changes that a browser marks as cross-site get 403 and change
//! nothing; same-origin calls and calls without those headers (scripts) work.

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Options, TestApp, bare_client, extract_csrf, password_of, spawn_app, spawn_with,
};

async fn signed_in(app: &TestApp) -> String {
    app.signup("neo").await;
    app.login_cookie("neo", &password_of("neo")).await
}

async fn titles(app: &TestApp) -> Vec<String> {
    let books: Vec<Value> = app.get("/api/v1/book").await.json().await.expect("json");
    books
        .iter()
        .filter_map(|b| b["title"].as_str().map(str::to_owned))
        .collect()
}

/// POST /api/v1/book with the cookie and `headers`: the status and the body.
async fn create(
    app: &TestApp,
    cookie: &str,
    title: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = bare_client()
        .post(app.url("/api/v1/book"))
        .header("Cookie", cookie)
        .json(&json!({"title": title}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn cross_site_writes_are_refused_and_change_nothing() {
    let app = spawn_app(Backend::Embedded).await;
    let cookie = signed_in(&app).await;
    let (status, book) = create(&app, &cookie, "Kept", &[]).await;
    assert_eq!(status, 201);
    let id = book["id"].as_u64().expect("id");

    let foreign: [&[(&str, &str)]; 6] = [
        &[("Origin", "http://evil.example")],
        &[("Origin", "http://127.0.0.1:1")],
        &[("Origin", "null")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Sec-Fetch-Site", "same-site")],
        &[
            ("Origin", app.address.as_str()),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    ];
    for headers in foreign {
        let (status, body) = create(&app, &cookie, "Forged", headers).await;
        assert_eq!(status, 403, "{headers:?}");
        assert_eq!(body["error"]["code"], "forbidden", "{headers:?}");

        let mut delete = bare_client()
            .delete(app.url(&format!("/api/v1/book/{id}")))
            .header("Cookie", &cookie);
        let mut logout = bare_client()
            .post(app.url("/api/v1/user/logout"))
            .header("Cookie", &cookie);
        for (name, value) in headers {
            delete = delete.header(*name, *value);
            logout = logout.header(*name, *value);
        }
        assert_eq!(delete.send().await.expect("DELETE").status().as_u16(), 403);
        assert_eq!(logout.send().await.expect("POST").status().as_u16(), 403);
    }
    assert_eq!(
        titles(&app).await,
        vec!["Kept".to_owned()],
        "nothing changed"
    );

    // Still signed in (the cross-site logout did nothing).
    let token = bare_client()
        .get(app.url("/api/v1/user/token"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(token.status().as_u16(), 200);

    // The page form (delete) from another site, with the right CSRF token: 403, as a page.
    let html = bare_client()
        .get(app.url(&format!("/view/book/{id}")))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("html");
    let csrf = extract_csrf(&html).expect("csrf token on the book page");
    let delete_page = |origin: &str| {
        bare_client()
            .post(app.url(&format!("/view/book/delete/{id}")))
            .header("Cookie", &cookie)
            .header("Origin", origin)
            .form(&[("csrf_token", csrf.as_str())])
    };
    let response = delete_page("https://evil.example")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 403);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert_eq!(titles(&app).await, vec!["Kept".to_owned()]);
    // The same form from the library's own page goes through.
    let response = delete_page(&app.address).send().await.expect("POST");
    assert_eq!(response.status().as_u16(), 303);
    assert!(titles(&app).await.is_empty());
}

#[tokio::test]
async fn same_origin_and_header_less_writes_work() {
    let app = spawn_app(Backend::Embedded).await;
    let cookie = signed_in(&app).await;
    let same_origin: [&[(&str, &str)]; 4] = [
        &[],
        &[("Origin", app.address.as_str())],
        &[
            ("Origin", app.address.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        &[("Sec-Fetch-Site", "none")],
    ];
    for (i, headers) in same_origin.into_iter().enumerate() {
        let (status, body) = create(&app, &cookie, &format!("Book {i}"), headers).await;
        assert_eq!(status, 201, "{headers:?}: {body}");
    }
    assert_eq!(titles(&app).await.len(), 4);
    // Reads are never refused.
    let response = bare_client()
        .get(app.url("/api/v1/book"))
        .header("Cookie", &cookie)
        .header("Origin", "http://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn forwarded_host_counts_only_from_a_trusted_proxy() {
    let origin = "https://books.example.org";
    let behind_proxy = [
        ("Origin", origin),
        ("X-Forwarded-Host", "books.example.org"),
    ];

    let mut options = Options::new(Backend::Embedded);
    options.trusted_proxies = "127.0.0.1".into();
    let proxied = spawn_with(options).await;
    let cookie = signed_in(&proxied).await;
    let (status, body) = create(&proxied, &cookie, "Via the proxy", &behind_proxy).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = create(
        &proxied,
        &cookie,
        "Other host",
        &[("Origin", origin), ("X-Forwarded-Host", "evil.example")],
    )
    .await;
    assert_eq!(status, 403);

    let direct = spawn_app(Backend::Embedded).await;
    let cookie = signed_in(&direct).await;
    let (status, _) = create(&direct, &cookie, "Spoofed", &behind_proxy).await;
    assert_eq!(
        status, 403,
        "X-Forwarded-Host from an untrusted peer is ignored"
    );
    assert!(titles(&direct).await.is_empty());
}
