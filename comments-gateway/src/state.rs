//! What request handlers and connections share.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::TokenVerifier;
use crate::bus::SharedBus;
use crate::comments::Comments;
use crate::discussion::Discussions;
use crate::hub::Hub;
use crate::metrics::GatewayMetrics;
use crate::settings::Secret;
use crate::store::Store;
use crate::transport::Transport;
use crate::ws::guard::UpgradeGuard;

/// Everything request handlers and connections share.
pub struct AppState {
    /// Rooms and fan-out.
    pub hub: Hub,
    /// Posting, deleting, reading.
    pub comments: Comments,
    /// Replies, edits, reactions, presence and typing.
    pub discussions: Discussions,
    /// Comments (health checks).
    pub store: Store,
    /// Other instances.
    pub bus: SharedBus,
    /// Gateway metrics.
    pub metrics: GatewayMetrics,
    /// Token checks.
    pub verifier: TokenVerifier,
    /// Admin API token.
    pub admin_token: Option<Secret>,
    /// Origins and per-address connection caps at the upgrade.
    pub guard: UpgradeGuard,
    /// Server ping interval.
    pub heartbeat: Duration,
    /// Outbound queue size per connection.
    pub queue_max: usize,
    /// This instance's name on the bus.
    pub instance: String,
    /// Fires when the server starts draining.
    pub shutdown: CancellationToken,
    /// Connection tasks and their requests.
    pub tracker: TaskTracker,
    /// Sockets: the heartbeat sweep, closes, connection ids.
    pub transport: Arc<Transport>,
    /// MongoDB answered the last health check.
    pub mongo_up: Arc<AtomicBool>,
}
