//! `counter`: an HTTP API counting book views, on Redis or an embedded store.
//!
//! The binary is a thin wrapper around [`Application`]; tests and the all-in-one launcher
//! build the same application.

pub mod error;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;

pub use settings::Settings;
pub use startup::Application;
