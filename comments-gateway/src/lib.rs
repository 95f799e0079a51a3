//! comments-gateway: WebSocket comment rooms with durable comments (MongoDB or embedded redb)
//! and fan-out across instances through Redis (or in-process without it).

pub mod access_log;
pub mod auth;
pub mod bus;
pub mod comments;
pub mod discussion;
pub mod error;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod openapi;
pub mod sequencer;
pub mod settings;
pub mod startup;
pub mod state;
pub mod store;
pub mod transport;
pub mod ws;

pub use settings::Settings;
pub use startup::Application;
