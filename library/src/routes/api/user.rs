//! `/api/v1/user/*`: sign-up, sign-in, sign-out, profiles, gateway tokens.

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, web};
use shared_proto::library_api::{LoginRequest, MessageBody, SignupRequest, UserEnvelope};

use crate::auth;
use crate::books::AppState;
use crate::domain::{NewUser, UserRecord};
use crate::error::{ApiResult, Error};
use crate::store::CreateUserError;

/// Registers the user routes.
pub fn config(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| {
        web::resource(path).default_service(web::to(service_kit::http_errors::method_not_allowed))
    };
    cfg.service(resource("/user/signup").route(web::post().to(signup)))
        .service(resource("/user/login").route(web::post().to(login)))
        .service(resource("/user/logout").route(web::post().to(logout)))
        .service(resource("/user/profile/{username}").route(web::get().to(profile)))
        .service(resource("/user/token").route(web::get().to(token)))
        .service(resource("/user/me").route(web::get().to(me)));
}

/// Creates an account from validated fields (shared with the sign-up page).
pub async fn register(state: &AppState, new: NewUser) -> Result<UserRecord, Error> {
    let hash = state.hashing.hash(new.password.clone()).await?;
    let record = UserRecord {
        username: new.username.to_string(),
        fullname: new.fullname,
        email: new.email,
        password_hash: hash,
        role: shared_proto::Role::User,
        created: shared_proto::timestamp::now_rfc3339(),
    };
    match state.store.create_user(record.clone()).await {
        Ok(()) => {
            tracing::info!(username = %record.username, "user signed up");
            Ok(record)
        }
        Err(CreateUserError::Taken) => Err(Error::BadRequest(format!(
            "username {} is taken",
            record.username
        ))),
        Err(CreateUserError::Store(e)) => Err(e),
    }
}

/// Checks credentials from `client` (shared with the sign-in page): refused with
/// `RateLimited` before anything is checked while the throttle says so; a failure counts.
pub async fn authenticate(
    state: &AppState,
    client: &str,
    username: &str,
    password: &str,
) -> Result<UserRecord, Error> {
    // Check, verify and count in one hashing slot: parallel guesses cannot all pass the check
    // before the first failure is counted (at most one per slot and instance slips through).
    let slot = state.hashing.slot().await?;
    state
        .throttle
        .check_login(&state.store, username, client)
        .await?;
    let user = if username.is_empty() || username.len() > 64 {
        None
    } else {
        state.store.find_user(username).await?
    };
    let ok = slot
        .verify(
            password.to_owned(),
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await;
    match user {
        Some(user) if ok => Ok(user),
        _ => {
            state
                .throttle
                .login_failed(&state.store, username, client)
                .await?;
            Err(Error::Unauthorized("wrong username or password".into()))
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/user/signup",
    tag = "users",
    request_body = shared_proto::library_api::SignupRequest,
    responses(
        (status = 201, description = "Account created", body = shared_proto::library_api::MessageBody),
        (status = 400, description = "Taken username or bad fields (password at least 8 characters)", body = shared_proto::ErrorBody),
        (status = 403, description = "Cross-site request", body = shared_proto::ErrorBody),
        (status = 429, description = "Too many sign-ups from this address (Retry-After)", body = shared_proto::ErrorBody),
    )
)]
async fn signup(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<SignupRequest>,
) -> ApiResult<HttpResponse> {
    let client = state.throttle.client(&req);
    state.throttle.signup_attempt(&state.store, &client).await?;
    let body = body.into_inner();
    let new = NewUser::parse(&body.username, &body.fullname, &body.email, &body.password)?;
    let user = register(&state, new).await?;
    Ok(HttpResponse::Created().json(MessageBody {
        message: format!("user {} created", user.username),
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/user/login",
    tag = "users",
    request_body = shared_proto::library_api::LoginRequest,
    responses(
        (status = 201, description = "Signed in; sets the session cookie", body = shared_proto::library_api::UserEnvelope),
        (status = 401, description = "Wrong username or password", body = shared_proto::ErrorBody),
        (status = 403, description = "Cross-site request", body = shared_proto::ErrorBody),
        (status = 429, description = "Too many failed logins (Retry-After)", body = shared_proto::ErrorBody),
    )
)]
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    body: web::Json<LoginRequest>,
) -> ApiResult<HttpResponse> {
    let client = state.throttle.client(&req);
    let user = authenticate(&state, &client, &body.username, &body.password).await?;
    auth::sign_in(
        &state.store,
        state.settings.session_max_age_secs,
        &session,
        &user,
    )
    .await?;
    Ok(HttpResponse::Created().json(UserEnvelope {
        user: user.public(),
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/user/logout",
    tag = "users",
    responses(
        (status = 200, description = "Signed out; the session is ended", body = shared_proto::library_api::MessageBody),
        (status = 403, description = "Cross-site request", body = shared_proto::ErrorBody),
    )
)]
async fn logout(state: web::Data<AppState>, session: Session) -> ApiResult<HttpResponse> {
    auth::sign_out(&state.store, &session).await?;
    Ok(HttpResponse::Ok().json(MessageBody {
        message: "signed out".into(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/user/profile/{username}",
    tag = "users",
    params(("username" = String, Path, description = "Username")),
    responses(
        (status = 200, description = "The user", body = shared_proto::library_api::UserEnvelope),
        (status = 404, description = "No such user", body = shared_proto::ErrorBody),
    )
)]
async fn profile(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult<HttpResponse> {
    let username = path.into_inner();
    let user = state
        .store
        .find_user(&username)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no user {username}")))?;
    Ok(HttpResponse::Ok().json(UserEnvelope {
        user: user.public(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/user/me",
    tag = "users",
    security(("session" = [])),
    responses(
        (status = 200, description = "The signed-in user", body = shared_proto::library_api::UserEnvelope),
        (status = 401, description = "Signed out", body = shared_proto::ErrorBody),
    )
)]
async fn me(state: web::Data<AppState>, session: Session) -> ApiResult<HttpResponse> {
    let who = auth::require_user(&session)?;
    let user = state
        .store
        .find_user(&who.username)
        .await?
        .ok_or_else(|| Error::Unauthorized("the account no longer exists".into()))?;
    Ok(HttpResponse::Ok().json(UserEnvelope {
        user: user.public(),
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/user/token",
    tag = "users",
    security(("session" = [])),
    responses(
        (status = 200, description = "A token for the comments gateway's /ws?token=", body = shared_proto::library_api::TokenResponse),
        (status = 401, description = "Signed out, or the account no longer exists", body = shared_proto::ErrorBody),
    )
)]
async fn token(state: web::Data<AppState>, session: Session) -> ApiResult<HttpResponse> {
    let who = auth::require_user(&session)?;
    let user = state
        .store
        .find_user(&who.username)
        .await?
        .ok_or_else(|| Error::Unauthorized("the account no longer exists".into()))?;
    let settings = &state.settings;
    let token = auth::mint_token(&user, settings.token_secret(), settings.token_ttl_secs)?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(token))
}
