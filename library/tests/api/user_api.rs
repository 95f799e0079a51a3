use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use shared_proto::Claims;

use crate::helpers::{Backend, Options, new_client, spawn_app, spawn_with};

async fn account_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;

    // Arrange: a new account.
    let response = app
        .post_json(
            "/api/v1/user/signup",
            &json!({"username": "neo", "fullname": "Thomas Anderson", "email": "neo@example.com", "password": "red-pill"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.expect("json");
    assert!(body["message"].is_string());

    // Act: sign in.
    let response = app
        .post_json(
            "/api/v1/user/login",
            &json!({"username": "neo", "password": "red-pill"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("library.sid="))
        .expect("session cookie")
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["user"]["username"], "neo");
    assert_eq!(body["user"]["fullname"], "Thomas Anderson");
    assert_eq!(body["user"]["email"], "neo@example.com");
    assert!(
        body["user"]["created"]
            .as_str()
            .is_some_and(|c| c.ends_with('Z'))
    );
    assert!(body["user"].get("passwordHash").is_none());

    // The token for the gateway.
    let response = app.get("/api/v1/user/token").await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    let token = body["token"].as_str().expect("token");
    assert!(body["expiresAt"].as_str().is_some_and(|e| e.ends_with('Z')));
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(library::settings::DEV_TOKEN_SECRET.as_bytes()),
        &Validation::new(Algorithm::HS256),
    )
    .expect("valid HS256 token")
    .claims;
    assert_eq!(claims.sub.as_str(), "neo");
    assert_eq!(claims.name, "Thomas Anderson");
    assert_eq!(claims.role, shared_proto::Role::User);

    // Profiles are public.
    let response = new_client()
        .get(app.url("/api/v1/user/profile/neo"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["user"]["username"], "neo");
    assert_eq!(
        app.get("/api/v1/user/profile/nobody")
            .await
            .status()
            .as_u16(),
        404
    );

    // Sign out: the token is gone.
    let response = app
        .client
        .post(app.url("/api/v1/user/logout"))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(app.get("/api/v1/user/token").await.status().as_u16(), 401);
}

#[tokio::test]
async fn account_lifecycle_embedded() {
    account_lifecycle(Backend::Embedded).await;
}

#[tokio::test]
async fn account_lifecycle_mongo() {
    account_lifecycle(Backend::Mongo).await;
}

async fn signup_rejects_taken_and_bad_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signup("trinity").await;
    let taken = app
        .post_json(
            "/api/v1/user/signup",
            &json!({"username": "trinity", "fullname": "T", "email": "t@example.com", "password": "long-enough"}),
        )
        .await;
    assert_eq!(taken.status().as_u16(), 400);
    let body: Value = taken.json().await.expect("json");
    assert_eq!(body["error"]["code"], "bad_request");

    for bad in [
        json!({"username": "a b", "fullname": "T", "email": "t@example.com", "password": "x"}),
        json!({"username": "ok", "fullname": "", "email": "t@example.com", "password": "x"}),
        json!({"username": "ok", "fullname": "T", "email": "nope", "password": "x"}),
        json!({"username": "ok", "fullname": "T", "email": "t@example.com", "password": ""}),
        json!({"username": "ok", "fullname": "T", "email": "t@example.com", "password": "seven77"}),
        json!({"username": "ok", "fullname": "T"}),
        json!("not an object"),
    ] {
        let response = app.post_json("/api/v1/user/signup", &bad).await;
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
}

#[tokio::test]
async fn signup_rejects_taken_and_bad_fields_embedded() {
    signup_rejects_taken_and_bad_fields(Backend::Embedded).await;
}

#[tokio::test]
async fn signup_rejects_taken_and_bad_fields_mongo() {
    signup_rejects_taken_and_bad_fields(Backend::Mongo).await;
}

#[tokio::test]
async fn wrong_credentials_are_401_and_token_needs_sign_in() {
    let app = spawn_app(Backend::Embedded).await;
    app.signup("morpheus").await;
    for body in [
        json!({"username": "morpheus", "password": "wrong"}),
        json!({"username": "ghost", "password": "pw-ghost"}),
    ] {
        let response = app.post_json("/api/v1/user/login", &body).await;
        assert_eq!(response.status().as_u16(), 401, "{body}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let response = app.get("/api/v1/user/token").await;
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn demo_users_sign_in_with_their_username_and_admin_is_admin() {
    let mut options = Options::new(Backend::Embedded);
    options.demo = true;
    let app = spawn_with(options).await;
    for name in ["JD", "BadComedian"] {
        let response = new_client()
            .post(app.url("/api/v1/user/login"))
            .json(&json!({"username": name, "password": name}))
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 201, "{name}");
    }
    let response = app
        .post_json(
            "/api/v1/user/login",
            &json!({"username": "Admin", "password": "Admin"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = app
        .get("/api/v1/user/token")
        .await
        .json()
        .await
        .expect("json");
    let claims = jsonwebtoken::decode::<Claims>(
        body["token"].as_str().expect("token"),
        &DecodingKey::from_secret(library::settings::DEV_TOKEN_SECRET.as_bytes()),
        &Validation::new(Algorithm::HS256),
    )
    .expect("valid")
    .claims;
    assert_eq!(claims.role, shared_proto::Role::Admin);
}
