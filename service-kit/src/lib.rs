//! Runtime pieces the services share: telemetry, settings loading, JSON error answers,
//! request metrics, health answers and the shutdown signal. Wire types live in `shared-proto`.

pub mod client_addr;
pub mod health;
pub mod http_errors;
pub mod metrics;
pub mod openapi;
pub mod redis_target;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
