//! Server-rendered pages. Everything works without JavaScript except live comments.

pub mod book;
pub mod catalogue;
pub mod discussion;
pub mod user;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::auth::{self, SessionUser};
use crate::books::AppState;
use crate::error::PageError;
use crate::templates;

/// Registers the page routes (order matters: fixed paths before `{id}`).
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::FormConfig::default()
            .limit(64 * 1024)
            .error_handler(|err, _req| {
                let message = format!("the form could not be read: {err}");
                actix_web::error::InternalError::from_response(
                    message.clone(),
                    templates::error_page(StatusCode::BAD_REQUEST, &message),
                )
                .into()
            }),
    );
    catalogue::config(cfg);
    book::config(cfg);
    user::config(cfg);
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(service_kit::http_errors::method_not_allowed))
}

/// The HTML 404 page for every unknown path outside the API.
pub async fn not_found() -> HttpResponse {
    templates::error_page(StatusCode::NOT_FOUND, "There is no such page.")
}

/// What every page knows: who is signed in, the CSRF token for its forms, its title.
pub struct PageBase {
    /// The signed-in user.
    pub user: Option<SessionUser>,
    /// The session's CSRF token (only minted when the page has a form).
    pub csrf_token: String,
}

impl PageBase {
    /// For pages whose only form is "sign out" (shown when signed in).
    pub fn new(session: &Session) -> Self {
        let user = auth::current_user(session);
        let csrf_token = if user.is_some() {
            auth::csrf_token(session)
        } else {
            String::new()
        };
        Self { user, csrf_token }
    }

    /// For pages with forms for everyone (sign in, sign up).
    pub fn with_form(session: &Session) -> Self {
        Self {
            user: auth::current_user(session),
            csrf_token: auth::csrf_token(session),
        }
    }

    /// The template context: these fields plus `extra`'s.
    pub fn context(&self, title: &str, extra: impl Serialize) -> Value {
        let mut map = match serde_json::to_value(extra) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        map.insert("page_title".into(), json!(title));
        map.insert("user".into(), json!(self.user));
        map.insert("csrf_token".into(), json!(self.csrf_token));
        Value::Object(map)
    }
}

/// 303 See Other to `to`.
pub fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, to))
        .finish()
}

/// The comments section's data for `room`, from the gateway (`None`: unavailable; the readers
/// line is left out when `presence` is `None`).
pub fn comments_context(
    state: &AppState,
    room: &str,
    answer: Option<crate::clients::RoomComments>,
    presence: Option<crate::clients::RoomPresence>,
) -> Value {
    let available = answer.is_some();
    let (comments, more, parents) = answer
        .map(|a| (a.comments, a.more, a.parents))
        .unwrap_or_default();
    let last_seq = comments.iter().map(|c| c.seq).max().unwrap_or(0);
    let presence_text = presence
        .map(|p| discussion::presence_text(&p))
        .unwrap_or_default();
    json!({
        "room": room,
        "gateway_public_url": state.settings.gateway_public_url,
        "comments": discussion::decorate(&comments, &parents),
        "presence_text": presence_text,
        "more": more,
        "comments_available": available,
        "last_seq": last_seq,
    })
}

/// Merges two JSON objects (right wins).
pub fn merge(mut left: Value, right: Value) -> Value {
    if let (Value::Object(l), Value::Object(r)) = (&mut left, right) {
        l.extend(r);
    }
    left
}

/// A page handler's result.
pub type Page = Result<HttpResponse, PageError>;
