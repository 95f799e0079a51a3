//! Integration tests of the library service: the real Application on port 0 against a real
//! SecantusDB (MongoDB wire protocol) and the embedded store, a real counter, and small stubs
//! only where a fault (or the gateway's read) is simulated.

mod book_api;
mod cross_site;
mod faults;
mod health;
mod helpers;
mod openapi;
mod pages;
mod scale_out;
mod secrets;
mod sessions;
mod storage;
mod streaming;
mod throttling;
mod user_api;
