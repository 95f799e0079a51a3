//! Real servers for integration tests.
//!
//! `redis()` and `mongo()` give the URL of a private server for this test run: the one the
//! test script started (`TEST_REDIS_URL`, `TEST_MONGO_URL`), or else one this process starts on
//! a free port and stops when it exits. Tests isolate themselves with [`unique_prefix`] and
//! [`unique_db`]. Fault tests start a [`RedisServer`] or [`MongoServer`] of their own and stop
//! and restart it at will. Tests on a Redis Cluster start a [`RedisCluster`] of their own
//! (`RedisCluster::start(3)`, `.seed_nodes()`, `.restart_node(i)`, `.node_ports()`). TLS
//! clients are tested against a [`TlsRedisServer`] (`rediss://`, its own CA file).

mod cluster;
pub mod openapi;
mod process;
mod servers;
mod tls;

pub use cluster::RedisCluster;
pub use process::free_port;
pub use servers::{MongoServer, RedisServer, mongo, mongo_url_with_db, redis};
pub use tls::TlsRedisServer;

/// A key prefix no other test uses, e.g. `t-1f0c...:`.
pub fn unique_prefix() -> String {
    format!("t-{}:", uuid::Uuid::new_v4().simple())
}

/// A database name no other test uses.
pub fn unique_db() -> String {
    format!("test_{}", uuid::Uuid::new_v4().simple())
}
