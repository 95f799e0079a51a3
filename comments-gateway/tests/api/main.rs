//! Integration tests of comments-gateway against real redis-server and SecantusDB.

mod cross_instance;
mod embedded;
mod faults;
mod helpers;
mod http;
mod protocol;
