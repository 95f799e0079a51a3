//! Sessions end for real: sign-out (a replayed cookie no longer works, on any instance),
//! `SESSION_MAX_AGE_SECS`, and `/user/token` minted from the stored user.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mongodb::bson::doc;
use serde_json::{Value, json};
use shared_proto::{Claims, Role};

use crate::helpers::{Backend, Options, TestApp, bare_client, password_of, spawn_app, spawn_with};

/// GET /api/v1/user/token with `cookie`: the status and the claims when 200.
async fn token_with(app: &TestApp, cookie: &str) -> (u16, Option<Claims>) {
    let response = bare_client()
        .get(app.url("/api/v1/user/token"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    let body: Value = response.json().await.expect("json");
    let claims = jsonwebtoken::decode::<Claims>(
        body["token"].as_str().expect("token"),
        &DecodingKey::from_secret(library::settings::DEV_TOKEN_SECRET.as_bytes()),
        &Validation::new(Algorithm::HS256),
    )
    .expect("valid token")
    .claims;
    (status, Some(claims))
}

/// POST /api/v1/book with `cookie`: the status.
async fn create_with(app: &TestApp, cookie: &str, title: &str) -> u16 {
    bare_client()
        .post(app.url("/api/v1/book"))
        .header("Cookie", cookie)
        .json(&json!({"title": title}))
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16()
}

async fn titles(app: &TestApp) -> Vec<String> {
    let books: Vec<Value> = app.get("/api/v1/book").await.json().await.expect("json");
    books
        .iter()
        .filter_map(|b| b["title"].as_str().map(str::to_owned))
        .collect()
}

async fn logout_ends_the_session_for_a_replayed_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("neo").await;
    let cookie = app.login_cookie("neo", &password_of("neo")).await;
    assert_eq!(token_with(&app, &cookie).await.0, 200);

    // Act: sign out with that cookie.
    let response = bare_client()
        .post(app.url("/api/v1/user/logout"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);

    // Assert: the old cookie, replayed, is signed out: no token, no writes.
    assert_eq!(token_with(&app, &cookie).await.0, 401);
    assert_eq!(create_with(&app, &cookie, "After logout").await, 401);
    assert!(!titles(&app).await.contains(&"After logout".to_owned()));
    let (status, html) = {
        let response = bare_client()
            .get(app.url("/view/user/me"))
            .header("Cookie", &cookie)
            .send()
            .await
            .expect("GET");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    };
    assert_eq!(
        status, 303,
        "my page sends a signed-out visitor to sign in: {html}"
    );
}

#[tokio::test]
async fn logout_ends_the_session_for_a_replayed_cookie_embedded() {
    logout_ends_the_session_for_a_replayed_cookie(Backend::Embedded).await;
}

#[tokio::test]
async fn logout_ends_the_session_for_a_replayed_cookie_mongo() {
    logout_ends_the_session_for_a_replayed_cookie(Backend::Mongo).await;
}

#[tokio::test]
async fn logout_on_one_instance_ends_the_session_on_another() {
    let first = spawn_app(Backend::Mongo).await;
    let mut options = Options::new(Backend::Mongo);
    options.mongo_url = first.mongo_url.clone();
    let second = spawn_with(options).await;
    first.signup("neo").await;
    let cookie = first.login_cookie("neo", &password_of("neo")).await;
    assert_eq!(
        token_with(&second, &cookie).await.0,
        200,
        "one session everywhere"
    );
    let response = bare_client()
        .post(second.url("/api/v1/user/logout"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(token_with(&first, &cookie).await.0, 401);
    assert_eq!(create_with(&first, &cookie, "Ghost write").await, 401);
}

async fn sessions_expire_after_the_max_age(backend: Backend) {
    let mut options = Options::new(backend);
    options.session_max_age_secs = 2;
    let app = spawn_with(options).await;
    app.signup("neo").await;
    let cookie = app.login_cookie("neo", &password_of("neo")).await;
    assert_eq!(token_with(&app, &cookie).await.0, 200);
    assert_eq!(create_with(&app, &cookie, "In time").await, 201);

    tokio::time::sleep(Duration::from_millis(2500)).await;

    assert_eq!(token_with(&app, &cookie).await.0, 401);
    assert_eq!(create_with(&app, &cookie, "Too late").await, 401);
    let titles = titles(&app).await;
    assert!(titles.contains(&"In time".to_owned()));
    assert!(!titles.contains(&"Too late".to_owned()));
    // Signing in again starts a new session.
    let cookie = app.login_cookie("neo", &password_of("neo")).await;
    assert_eq!(token_with(&app, &cookie).await.0, 200);
}

#[tokio::test]
async fn sessions_expire_after_the_max_age_embedded() {
    sessions_expire_after_the_max_age(Backend::Embedded).await;
}

#[tokio::test]
async fn sessions_expire_after_the_max_age_mongo() {
    sessions_expire_after_the_max_age(Backend::Mongo).await;
}

#[tokio::test]
async fn token_is_minted_from_the_stored_user() {
    let app = spawn_app(Backend::Mongo).await;
    app.signup("neo").await;
    app.signup("smith").await;
    let neo = app.login_cookie("neo", &password_of("neo")).await;
    let smith = app.login_cookie("smith", &password_of("smith")).await;
    let users = app
        .mongo_db()
        .await
        .collection::<mongodb::bson::Document>("users");

    // A changed role is the new role.
    let (status, claims) = token_with(&app, &neo).await;
    assert_eq!(status, 200);
    assert_eq!(claims.expect("claims").role, Role::User);
    users
        .update_one(
            doc! {"username": "neo"},
            doc! {"$set": {"role": "admin", "fullname": "The One"}},
        )
        .await
        .expect("update");
    let claims = token_with(&app, &neo).await.1.expect("claims");
    assert_eq!(claims.role, Role::Admin);
    assert_eq!(claims.name, "The One");

    // A deleted user gets 401 (and cannot write).
    users
        .delete_one(doc! {"username": "smith"})
        .await
        .expect("delete");
    assert_eq!(token_with(&app, &smith).await.0, 401);
    let body: Value = bare_client()
        .get(app.url("/api/v1/user/token"))
        .header("Cookie", &smith)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn a_forged_or_stale_cookie_is_signed_out() {
    let app = spawn_app(Backend::Embedded).await;
    for cookie in ["library.sid=forged", "library.sid="] {
        assert_eq!(token_with(&app, cookie).await.0, 401, "{cookie}");
        assert_eq!(create_with(&app, cookie, "Forged").await, 401, "{cookie}");
    }
}
