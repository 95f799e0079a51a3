//! Integration tests of comments-gateway against real redis-server and SecantusDB.

mod backlogs;
mod chaos;
mod cluster;
mod cross_instance;
mod discussions;
mod discussions_cross;
mod embedded;
mod faults;
mod guards;
mod helpers;
mod holes;
mod http;
mod openapi;
mod procs;
mod protocol;
mod tls;
mod wire_schemas;
