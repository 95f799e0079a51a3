//! Integration tests of the counter against real servers (redis-server) and the embedded store.

mod bad_input;
mod binary;
mod cluster;
mod counting;
mod embedded;
mod health;
mod helpers;
mod openapi;
mod redis_faults;
