//! The listening server: actix-server accepts, actix-http's HTTP/1 service parses requests and
//! serves the actix-web `App` for everything but WebSocket upgrades, which it hands, with the
//! socket, to [`super::upgrade`] (actix-http's public upgrade path), as `HttpServer` would serve
//! the App but with that upgrade service added.

use std::fmt;
use std::sync::Arc;

use actix_http::body::MessageBody;
use actix_http::{HttpService, Request, Response};
use actix_server::Server;
use actix_service::{IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, map_config};
use actix_web::dev::AppConfig;
use actix_web::error::Error;

use super::upgrade::{Acceptor, Upgrader};

/// Serves `factory`'s App on `listener` with `workers` threads (0: one per core), WebSocket
/// upgrades going to the transport. Signals are left to the caller (`ServerHandle::stop`).
pub fn serve<F, I, S, B, A>(
    listener: std::net::TcpListener,
    workers: usize,
    factory: F,
    upgrader: Upgrader<A>,
) -> std::io::Result<Server>
where
    A: Acceptor,
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let upgrader = Arc::new(upgrader);
    let mut builder = Server::build().disable_signals().shutdown_timeout(10);
    if workers > 0 {
        builder = builder.workers(workers);
    }
    builder
        .listen("comments-gateway", listener, move || {
            let app = factory()
                .into_factory()
                .map_err(|err| err.into().error_response());
            let upgrader = upgrader.clone();
            HttpService::build()
                // Frames are small and often several go out back to back: without it a frame
                // written while the previous one is unacknowledged waits for the delayed ACK.
                .tcp_nodelay(true)
                .upgrade(actix_service::fn_service(move |(req, framed)| {
                    let upgrader = upgrader.clone();
                    async move {
                        upgrader.upgrade(req, framed).await;
                        Ok::<_, actix_http::Error>(())
                    }
                }))
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        })
        .map(|builder| builder.run())
}
