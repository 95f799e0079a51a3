//! `/view/user/...`: sign in, sign up, my page, profiles, sign out.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::web;
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

async fn login_form(session: Session) -> Page {
    let base = PageBase::with_form(&session);
    let ctx = base.context("Sign in", json!({ "username": "", "error": null }));
    Ok(templates::page(StatusCode::OK, "login.html", &ctx))
}

async fn login(state: web::Data<AppState>, session: Session, form: web::Form<LoginForm>) -> Page {
    auth::check_csrf(&session, Some(&form.csrf_token))?;
    match authenticate(&state, form.username.trim(), &form.password).await {
        Ok(user) => {
            auth::sign_in(&session, &user)?;
            Ok(see_other("/view/user/me"))
        }
        Err(Error::Unauthorized(message)) => {
            let base = PageBase::with_form(&session);
            let ctx = base.context(
                "Sign in",
                json!({ "username": form.username, "error": message }),
            );
            Ok(templates::page(
                StatusCode::UNAUTHORIZED,
                "login.html",
                &ctx,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn signup_form(session: Session) -> Page {
    let base = PageBase::with_form(&session);
    let ctx = base.context("Sign up", json!({ "form": {}, "error": null }));
    Ok(templates::page(StatusCode::OK, "signup.html", &ctx))
}

async fn signup(state: web::Data<AppState>, session: Session, form: web::Form<SignupForm>) -> Page {
    auth::check_csrf(&session, Some(&form.csrf_token))?;
    let result = async {
        let new = NewUser::parse(&form.username, &form.fullname, &form.email, &form.password)?;
        register(&state, new).await
    }
    .await;
    match result {
        Ok(user) => {
            auth::sign_in(&session, &user)?;
            Ok(see_other("/view/user/me"))
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

async fn me(state: web::Data<AppState>, session: Session) -> Page {
    let Some(who) = auth::current_user(&session) else {
        return Ok(see_other("/view/user/login"));
    };
    let Some(user) = state.store.find_user(&who.username).await? else {
        auth::sign_out(&session);
        return Ok(see_other("/view/user/login"));
    };
    let base = PageBase::new(&session);
    let ctx = base.context(
        &user.fullname,
        json!({ "profile": user.public(), "own": true, "role": user.role.as_str() }),
    );
    Ok(templates::page(StatusCode::OK, "profile.html", &ctx))
}

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

async fn logout(session: Session, form: web::Form<super::book::CsrfForm>) -> Page {
    if auth::current_user(&session).is_some() {
        auth::check_csrf(&session, Some(&form.csrf_token))?;
    }
    auth::sign_out(&session);
    Ok(see_other("/view"))
}
