//! Prometheus metrics: one registry per application (so several apps can share a process),
//! request counts by route and status, and a latency histogram.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// A registry plus the HTTP request metrics every service records.
#[derive(Clone)]
pub struct Metrics {
    /// The application's registry; services register their own metrics here too.
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    /// A fresh registry for `service` with the HTTP metrics registered.
    pub fn new(service: &str) -> Self {
        let registry = Registry::new_custom(
            None,
            Some([("service".to_owned(), service.to_owned())].into()),
        )
        .unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .unwrap_or_else(|_| unreachable_hist());
        let _ = registry.register(Box::new(requests.clone()));
        let _ = registry.register(Box::new(latency.clone()));
        Self {
            registry,
            requests,
            latency,
        }
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Records one request.
    pub fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, status_label(status)])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }
}

fn status_label(status: u16) -> &'static str {
    // Static labels avoid an allocation per request for the common codes.
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        302 => "302",
        303 => "303",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

// The metric definitions above are constants; these only satisfy the types without panicking.
fn unreachable_metric() -> IntCounterVec {
    IntCounterVec::new(Opts::new("invalid_metric", "invalid"), &["x"])
        .unwrap_or_else(|_| std::process::abort())
}
fn unreachable_hist() -> HistogramVec {
    HistogramVec::new(HistogramOpts::new("invalid_hist", "invalid"), &["x"])
        .unwrap_or_else(|_| std::process::abort())
}

/// Middleware (for `middleware::from_fn`) recording every request in the app's [`Metrics`].
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        metrics.observe(
            &route,
            &method,
            res.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(res)
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((
        status = 200,
        description = "Prometheus text exposition format",
        content_type = "text/plain; version=0.0.4",
        body = String
    ))
)]
pub async fn metrics_endpoint(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
