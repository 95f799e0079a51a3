//! `/view/user/...`: sign in, sign up, my page, profiles, sign out.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Deserialize;
use serde_json::json;

use super::{Page, PageBase, resource, see_other};
use crate::auth;
use crate::books::AppState;
use crate::domain::NewUser;
use crate::error::{Error, PageError};
use crate::routes::api::user::{authenticate, register};
use crate::templates;

/// Registers the account pages.
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/view/user/login")
            .route(web::get().to(login_form))
            .route(web::post().to(login)),
    )
    .service(
        resource("/view/user/signup")
            .route(web::get().to(signup_form))
            .route(web::post().to(signup)),
    )
    .service(resource("/view/user/me").route(web::get().to(me)))
    .service(resource("/view/user/profile/{username}").route(web::get().to(profile)))
    .service(resource("/view/user/logout").route(web::post().to(logout)));
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
}

/// The sign-up form.
#[derive(Debug, Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    fullname: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
}

#[utoipa::path(
    get,
    path = "/view/user/login",
    tag = "pages",
    operation_id = "page_login_form",
    summary = "The sign-in form",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
    )
)]
async fn login_form(session: Session) -> Page {
    let base = PageBase::with_form(&session);
    let ctx = base.context("Sign in", json!({ "username": "", "error": null }));
    Ok(templates::page(StatusCode::OK, "login.html", &ctx))
}

#[utoipa::path(
    post,
    path = "/view/user/login",
    tag = "pages",
    operation_id = "page_login",
    summary = "Sign in (form: username, password, csrf_token)",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 303, description = "Redirect (after the action, or to sign in)"),
        (status = 403, description = "Wrong CSRF token, or a cross-site request", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (Retry-After)", content_type = "text/html", body = String),
    )
)]
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<LoginForm>,
) -> Page {
    let client = state.throttle.client(&req);
    let username = form.username.trim();
    // Throttled: refused before the form (or anything else) is checked.
    if let Err(e @ Error::RateLimited { .. }) = state
        .throttle
        .check_login(&state.store, username, &client)
        .await
    {
        return Ok(login_again(&session, &form.username, &e));
    }
    auth::check_csrf(&session, Some(&form.csrf_token))?;
    match authenticate(&state, &client, username, &form.password).await {
        Ok(user) => {
            auth::sign_in(
                &state.store,
                state.settings.session_max_age_secs,
                &session,
                &user,
            )
            .await?;
            Ok(see_other("/view/user/me"))
        }
        Err(e @ (Error::Unauthorized(_) | Error::RateLimited { .. })) => {
            Ok(login_again(&session, &form.username, &e))
        }
        Err(e) => Err(e.into()),
    }
}

/// The sign-in form again with `error`'s message, under its status (401, or 429 with
/// `Retry-After`).
fn login_again(session: &Session, username: &str, error: &Error) -> HttpResponse {
    let base = PageBase::with_form(session);
    let ctx = base.context(
        "Sign in",
        json!({ "username": username, "error": error.to_string() }),
    );
    error.with_retry_after(templates::page(error.status_code(), "login.html", &ctx))
}

#[utoipa::path(
    get,
    path = "/view/user/signup",
    tag = "pages",
    operation_id = "page_signup_form",
    summary = "The sign-up form",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
    )
)]
async fn signup_form(session: Session) -> Page {
    let base = PageBase::with_form(&session);
    let ctx = base.context("Sign up", json!({ "form": {}, "error": null }));
    Ok(templates::page(StatusCode::OK, "signup.html", &ctx))
}

#[utoipa::path(
    post,
    path = "/view/user/signup",
    tag = "pages",
    operation_id = "page_signup",
    summary = "Sign up (form: username, fullname, email, password, csrf_token)",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 303, description = "Redirect (after the action, or to sign in)"),
        (status = 403, description = "Wrong CSRF token, or a cross-site request", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (Retry-After)", content_type = "text/html", body = String),
    )
)]
async fn signup(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<SignupForm>,
) -> Page {
    let client = state.throttle.client(&req);
    let result = async {
        state.throttle.signup_attempt(&state.store, &client).await?;
        auth::check_csrf(&session, Some(&form.csrf_token))?;
        let new = NewUser::parse(&form.username, &form.fullname, &form.email, &form.password)?;
        register(&state, new).await
    }
    .await;
    match result {
        Ok(user) => {
            auth::sign_in(
                &state.store,
                state.settings.session_max_age_secs,
                &session,
                &user,
            )
            .await?;
            Ok(see_other("/view/user/me"))
        }
        Err(e @ Error::RateLimited { .. }) => {
            let base = PageBase::with_form(&session);
            let ctx = base.context(
                "Sign up",
                json!({
                    "form": {"username": form.username, "fullname": form.fullname, "email": form.email},
                    "error": e.to_string(),
                }),
            );
            Ok(e.with_retry_after(templates::page(e.status_code(), "signup.html", &ctx)))
        }
        Err(Error::BadRequest(message)) => {
            let base = PageBase::with_form(&session);
            let ctx = base.context(
                "Sign up",
                json!({
                    "form": {"username": form.username, "fullname": form.fullname, "email": form.email},
                    "error": message,
                }),
            );
            Ok(templates::page(
                StatusCode::BAD_REQUEST,
                "signup.html",
                &ctx,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(
    get,
    path = "/view/user/me",
    tag = "pages",
    operation_id = "page_me",
    summary = "The signed-in user's page",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 303, description = "Redirect (after the action, or to sign in)"),
    )
)]
async fn me(state: web::Data<AppState>, session: Session) -> Page {
    let Some(who) = auth::current_user(&session) else {
        return Ok(see_other("/view/user/login"));
    };
    let Some(user) = state.store.find_user(&who.username).await? else {
        auth::sign_out(&state.store, &session).await?;
        return Ok(see_other("/view/user/login"));
    };
    let base = PageBase::new(&session);
    let ctx = base.context(
        &user.fullname,
        json!({ "profile": user.public(), "own": true, "role": user.role.as_str() }),
    );
    Ok(templates::page(StatusCode::OK, "profile.html", &ctx))
}

#[utoipa::path(
    get,
    path = "/view/user/profile/{username}",
    tag = "pages",
    operation_id = "page_profile",
    summary = "A user's profile",
    params(("username" = String, Path, description = "Username")),
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 404, description = "HTML 404 page", content_type = "text/html", body = String),
    )
)]
async fn profile(state: web::Data<AppState>, session: Session, path: web::Path<String>) -> Page {
    let username = path.into_inner();
    let user = state
        .store
        .find_user(&username)
        .await?
        .ok_or_else(|| PageError(Error::NotFound(format!("There is no user {username}."))))?;
    let base = PageBase::new(&session);
    let own = base
        .user
        .as_ref()
        .is_some_and(|u| u.username == user.username);
    let ctx = base.context(
        &user.fullname,
        json!({ "profile": user.public(), "own": own, "role": user.role.as_str() }),
    );
    Ok(templates::page(StatusCode::OK, "profile.html", &ctx))
}

#[utoipa::path(
    post,
    path = "/view/user/logout",
    tag = "pages",
    operation_id = "page_logout",
    summary = "Sign out (form: csrf_token)",
    responses(
        (status = 200, description = "HTML page", content_type = "text/html", body = String),
        (status = 303, description = "Redirect (after the action, or to sign in)"),
        (status = 403, description = "Wrong CSRF token, or a cross-site request", content_type = "text/html", body = String),
    )
)]
async fn logout(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<super::book::CsrfForm>,
) -> Page {
    if auth::current_user(&session).is_some() {
        auth::check_csrf(&session, Some(&form.csrf_token))?;
    }
    auth::sign_out(&state.store, &session).await?;
    Ok(see_other("/view"))
}
