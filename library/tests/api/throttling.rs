//! Sign-in and sign-up throttling with the contract's numbers: 5 failed logins per username
//! and address, 50 per address, 100 per username (15 minutes), 20 sign-ups per address (an
//! hour); 429 `rate_limited` with `Retry-After`, nothing checked or stored, counted across
//! instances; client addresses from `X-Forwarded-For` only behind `TRUSTED_PROXIES`.

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Options, TestApp, bare_client, extract_csrf, new_client, password_of, spawn_with,
};

/// A throttled app; `trusted`: 127.0.0.1 is a trusted proxy (tests pick addresses with XFF).
async fn throttled(backend: Backend, trusted: bool) -> TestApp {
    let mut options = Options::new(backend);
    options.throttle = true;
    if trusted {
        options.trusted_proxies = "127.0.0.1, ::1".into();
    }
    spawn_with(options).await
}

/// POST /api/v1/user/login from `address` (an `X-Forwarded-For`, if any): the status, the
/// `Retry-After` seconds and the body.
async fn login_from(
    app: &TestApp,
    address: Option<&str>,
    username: &str,
    password: &str,
) -> (u16, Option<u64>, Value) {
    let mut request = bare_client()
        .post(app.url("/api/v1/user/login"))
        .json(&json!({"username": username, "password": password}));
    if let Some(address) = address {
        request = request.header("X-Forwarded-For", address);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

fn assert_rate_limited(answer: &(u16, Option<u64>, Value), max_wait: u64, what: &str) {
    let (status, retry_after, body) = answer;
    assert_eq!(*status, 429, "{what}: {body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{what}");
    let wait = retry_after.unwrap_or_else(|| panic!("{what}: no Retry-After"));
    assert!((1..=max_wait).contains(&wait), "{what}: Retry-After {wait}");
}

async fn five_failures_lock_one_username_at_one_address(backend: Backend) {
    let app = throttled(backend, true).await;
    app.signup("neo").await;
    app.signup("trinity").await;
    let here = Some("203.0.113.5");

    // Arrange: five wrong passwords.
    for i in 0..5 {
        let (status, _, _) = login_from(&app, here, "neo", "wrong-password").await;
        assert_eq!(status, 401, "failure {i}");
    }

    // Act + Assert: the right password is refused now, and nothing signs in.
    let answer = login_from(&app, here, "neo", &password_of("neo")).await;
    assert_rate_limited(&answer, 15 * 60, "sixth attempt");
    let page = bare_client()
        .post(app.url("/view/user/login"))
        .form(&[("username", "neo"), ("password", "x"), ("csrf_token", "x")])
        .header("X-Forwarded-For", "203.0.113.5")
        .send()
        .await
        .expect("POST");
    assert_eq!(page.status().as_u16(), 429, "the sign-in page counts too");
    assert!(page.headers().contains_key("retry-after"));

    // Another username from the same address, and the same username from elsewhere, go on.
    let (status, _, _) = login_from(&app, here, "trinity", &password_of("trinity")).await;
    assert_eq!(status, 201);
    let (status, _, _) = login_from(&app, Some("198.51.100.7"), "neo", &password_of("neo")).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn five_failures_lock_one_username_at_one_address_embedded() {
    five_failures_lock_one_username_at_one_address(Backend::Embedded).await;
}

#[tokio::test]
async fn five_failures_lock_one_username_at_one_address_mongo() {
    five_failures_lock_one_username_at_one_address(Backend::Mongo).await;
}

#[tokio::test]
async fn parallel_guesses_do_not_slip_past_the_limit() {
    let app = throttled(Backend::Embedded, false).await;
    app.signup("neo").await;
    // 30 wrong guesses at once: the check, the verification and the count share a hashing
    // slot, so at most one guess per slot (one per core) passes a stale check.
    let guesses = (0..30).map(|_| login_from(&app, None, "neo", "wrong-password"));
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|(status, _, _)| *status == 401)
        .count();
    let refused = answers
        .iter()
        .filter(|(status, _, _)| *status == 429)
        .count();
    assert_eq!(checked + refused, 30, "only 401 and 429");
    let slots = std::thread::available_parallelism().map_or(1, usize::from);
    assert!(
        (5..5 + slots).contains(&checked),
        "{checked} guesses were checked ({slots} slots)"
    );
    let answer = login_from(&app, None, "neo", &password_of("neo")).await;
    assert_rate_limited(&answer, 15 * 60, "after the burst");
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = throttled(Backend::Embedded, false).await;
    app.signup("neo").await;
    // Each failure claims another address; the peer (127.0.0.1) is what counts.
    for i in 0..5 {
        let address = format!("198.51.100.{i}");
        let (status, _, _) = login_from(&app, Some(&address), "neo", "wrong-password").await;
        assert_eq!(status, 401);
    }
    let answer = login_from(&app, Some("192.0.2.99"), "neo", &password_of("neo")).await;
    assert_rate_limited(&answer, 15 * 60, "spoofed X-Forwarded-For");
}

#[tokio::test]
async fn fifty_failures_from_one_address_lock_that_address() {
    let app = throttled(Backend::Embedded, true).await;
    app.signup("neo").await;
    let here = Some("203.0.113.50");
    // 50 failures spread over ten unknown usernames (5 each: none is locked by the pair limit
    // before the address limit is reached).
    for i in 0..50 {
        let name = format!("ghost{}", i / 5);
        let (status, _, _) = login_from(&app, here, &name, "wrong-password").await;
        assert_eq!(status, 401, "failure {i}");
    }
    let answer = login_from(&app, here, "neo", &password_of("neo")).await;
    assert_rate_limited(&answer, 15 * 60, "51st attempt from the address");
    let (status, _, _) = login_from(&app, Some("203.0.113.51"), "neo", &password_of("neo")).await;
    assert_eq!(status, 201, "another address");
}

#[tokio::test]
async fn a_hundred_failures_for_one_username_lock_it_everywhere() {
    let app = throttled(Backend::Embedded, true).await;
    app.signup("neo").await;
    app.signup("trinity").await;
    // 20 addresses, 5 failures each: no address and no pair is over its own limit.
    for a in 0..20 {
        let address = format!("198.51.100.{a}");
        for _ in 0..5 {
            let (status, _, _) = login_from(&app, Some(&address), "neo", "wrong-password").await;
            assert_eq!(status, 401, "address {address}");
        }
    }
    let answer = login_from(&app, Some("192.0.2.1"), "neo", &password_of("neo")).await;
    assert_rate_limited(&answer, 15 * 60, "101st failure for the username");
    let (status, _, _) =
        login_from(&app, Some("192.0.2.1"), "trinity", &password_of("trinity")).await;
    assert_eq!(status, 201, "other usernames go on");
}

#[tokio::test]
async fn twenty_signups_per_address_then_429_and_nothing_stored() {
    let app = throttled(Backend::Embedded, true).await;
    let signup = |address: &'static str, username: String, password: &'static str| {
        let request = bare_client()
            .post(app.url("/api/v1/user/signup"))
            .header("X-Forwarded-For", address)
            .json(&json!({"username": username, "fullname": "F", "email": "f@example.com", "password": password}));
        async move { request.send().await.expect("POST") }
    };
    // Every attempt counts, refused ones (too short a password) included.
    assert_eq!(
        signup("203.0.113.9", "first".into(), "long-enough")
            .await
            .status()
            .as_u16(),
        201
    );
    for i in 1..20 {
        let response = signup("203.0.113.9", format!("user{i}"), "short").await;
        assert_eq!(response.status().as_u16(), 400, "attempt {i}");
    }
    let response = signup("203.0.113.9", "late".into(), "long-enough").await;
    assert_eq!(response.status().as_u16(), 429);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=3600).contains(&wait), "{wait}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        app.get("/api/v1/user/profile/late").await.status().as_u16(),
        404,
        "nothing stored"
    );

    // The sign-up page is the same counter: 429 with the form.
    let token = {
        let page = new_client();
        let html = page
            .get(app.url("/view/user/signup"))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        (page, extract_csrf(&html).expect("csrf"))
    };
    let response = token
        .0
        .post(app.url("/view/user/signup"))
        .header("X-Forwarded-For", "203.0.113.9")
        .form(&[
            ("username", "pagelate"),
            ("fullname", "P"),
            ("email", "p@example.com"),
            ("password", "long-enough"),
            ("csrf_token", token.1.as_str()),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert!(
        response
            .text()
            .await
            .expect("html")
            .contains("too many attempts")
    );
    assert_eq!(
        app.get("/api/v1/user/profile/pagelate")
            .await
            .status()
            .as_u16(),
        404
    );

    // Another address signs up.
    assert_eq!(
        signup("203.0.113.10", "other".into(), "long-enough")
            .await
            .status()
            .as_u16(),
        201
    );
}

#[tokio::test]
async fn the_sign_in_page_shows_the_form_with_429() {
    let app = throttled(Backend::Embedded, false).await;
    app.signup("neo").await;
    let token = app.csrf_from("/view/user/login").await;
    let post = |password: &str| {
        app.client.post(app.url("/view/user/login")).form(&[
            ("username", "neo"),
            ("password", password),
            ("csrf_token", token.as_str()),
        ])
    };
    for _ in 0..5 {
        let response = post("wrong-password").send().await.expect("POST");
        assert_eq!(response.status().as_u16(), 401);
    }
    let response = post(&password_of("neo")).send().await.expect("POST");
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let html = response.text().await.expect("html");
    assert!(html.contains("too many attempts"), "{html}");
    assert!(html.contains("<form"), "the form again");
    assert_eq!(
        app.get("/api/v1/user/token").await.status().as_u16(),
        401,
        "not signed in"
    );
}

#[tokio::test]
async fn instances_on_one_mongodb_count_together() {
    let first = throttled(Backend::Mongo, false).await;
    let mut options = Options::new(Backend::Mongo);
    options.throttle = true;
    options.mongo_url = first.mongo_url.clone();
    let second = spawn_with(options).await;
    first.signup("neo").await;

    for app in [&first, &second, &first, &second, &first] {
        let (status, _, _) = login_from(app, None, "neo", "wrong-password").await;
        assert_eq!(status, 401);
    }
    for app in [&first, &second] {
        let answer = login_from(app, None, "neo", &password_of("neo")).await;
        assert_rate_limited(&answer, 15 * 60, "either instance");
    }
}

#[tokio::test]
async fn auth_throttle_off_counts_nothing() {
    let app = crate::helpers::spawn_app(Backend::Embedded).await;
    app.signup("neo").await;
    for _ in 0..8 {
        let (status, _, _) = login_from(&app, None, "neo", "wrong-password").await;
        assert_eq!(status, 401);
    }
    let (status, _, _) = login_from(&app, None, "neo", &password_of("neo")).await;
    assert_eq!(status, 201);
}
