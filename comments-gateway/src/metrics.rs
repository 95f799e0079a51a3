//! The gateway's own Prometheus metrics, registered in the app's registry.

use prometheus::{IntCounter, IntGauge, Opts, Registry};

/// Counters and gauges for connections, rooms, traffic, drops and store health.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// Rooms with local subscribers.
    pub rooms: IntGauge,
    /// Client frames received.
    pub messages_in: IntCounter,
    /// Frames queued to clients.
    pub messages_out: IntCounter,
    /// Connections closed with 1013 because their queue overflowed.
    pub slow_client_closes: IntCounter,
    /// Comments stored by this instance.
    pub comments_posted: IntCounter,
    /// Comments recovered from the store to fill a gap in the live stream.
    pub gap_fills: IntCounter,
    /// Subscribe backlogs answered from a room's recent-comments ring (no store read).
    pub backlogs_from_memory: IntCounter,
    /// Subscribe backlogs read from the store.
    pub backlogs_from_store: IntCounter,
    /// Client-driven store reads waiting for one of the instance's read slots.
    pub store_reads_waiting: IntGauge,
    /// Redis reachable (1) or not (0); 1 when running without Redis.
    pub redis_up: IntGauge,
    /// MongoDB reachable (1) or not (0); 1 for the embedded store.
    pub mongo_up: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric =
        IntCounter::with_opts(Opts::new(name, help)).unwrap_or_else(|_| std::process::abort());
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric =
        IntGauge::with_opts(Opts::new(name, help)).unwrap_or_else(|_| std::process::abort());
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

impl GatewayMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        Self {
            connections: gauge(
                registry,
                "gateway_connections",
                "Open WebSocket connections",
            ),
            rooms: gauge(registry, "gateway_rooms", "Rooms with local subscribers"),
            messages_in: counter(
                registry,
                "gateway_messages_in_total",
                "Client frames received",
            ),
            messages_out: counter(
                registry,
                "gateway_messages_out_total",
                "Frames queued to clients",
            ),
            slow_client_closes: counter(
                registry,
                "gateway_slow_client_closes_total",
                "Connections closed with 1013 because their outbound queue overflowed",
            ),
            comments_posted: counter(
                registry,
                "gateway_comments_posted_total",
                "Comments stored by this instance",
            ),
            gap_fills: counter(
                registry,
                "gateway_gap_fills_total",
                "Comments recovered from the store to fill a gap",
            ),
            backlogs_from_memory: counter(
                registry,
                "gateway_backlogs_from_memory_total",
                "Subscribe backlogs answered from a room's recent comments in memory",
            ),
            backlogs_from_store: counter(
                registry,
                "gateway_backlogs_from_store_total",
                "Subscribe backlogs read from the store",
            ),
            store_reads_waiting: gauge(
                registry,
                "gateway_store_reads_waiting",
                "Client-driven store reads waiting for a read slot",
            ),
            redis_up: gauge(
                registry,
                "gateway_redis_up",
                "Redis reachable (1) or not (0)",
            ),
            mongo_up: gauge(
                registry,
                "gateway_mongo_up",
                "MongoDB reachable (1) or not (0)",
            ),
        }
    }
}
