//! Integration tests of comments-gateway against real redis-server and SecantusDB.

mod cross_instance;
mod embedded;
mod faults;
mod guards;
mod helpers;
mod holes;
mod procs;
mod http;
mod protocol;
