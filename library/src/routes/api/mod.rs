//! The JSON API under `/api/v1`; the session cookie authenticates.

pub mod book;
pub mod user;

use actix_web::web;

/// Registers `/api/v1/...` (call inside the `/api/v1` scope).
pub fn config(cfg: &mut web::ServiceConfig) {
    user::config(cfg);
    book::config(cfg);
}
