//! The book library: server-rendered pages, the JSON API (`/api/v1`), accounts with cookie
//! sessions, book uploads, view counts through `counter` and the comments read from the
//! gateway. `main.rs` and the all-in-one launcher use [`Settings`] and [`Application`].

pub mod auth;
pub mod books;
pub mod clients;
pub mod cross_site;
pub mod domain;
pub mod error;
pub mod files;
pub mod openapi;
pub mod routes;
pub mod session_guard;
pub mod settings;
pub mod startup;
pub mod store;
pub mod templates;
pub mod throttle;
pub mod uploads;

pub use settings::Settings;
pub use startup::Application;
