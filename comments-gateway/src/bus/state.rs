//! What the one-Redis bus and the Redis Cluster bus share: the set of rooms the hub wants
//! followed, the publisher connection, the bounded outbox of events that could not be sent, and
//! the up flag.
//!
//! The hub's follows and unfollows only edit the *wanted* set (under a std mutex, in the order
//! the hub decided them) and wake the driver; the driver reconciles its subscriptions with that
//! set, so a follow and an unfollow sent around a page reload can never leave a room with local
//! members unsubscribed, and no command queue grows.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use shared_proto::RoomId;
use shared_proto::channels::{BusEvent, Channels};
use tokio::sync::{Notify, oneshot};

use crate::metrics::GatewayMetrics;

/// Most events kept for republishing; older ones are left to the receivers' store catch-up.
pub const OUTBOX_MAX: usize = 10_000;
/// Deadline of one publish.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(1);

/// The rooms the hub follows, and the follows waiting for their subscription.
#[derive(Default)]
pub struct Wanted {
    pub rooms: HashSet<RoomId>,
    pub waiters: HashMap<RoomId, Vec<oneshot::Sender<()>>>,
    /// The driver is connected and will confirm follows.
    pub up: bool,
}

impl Wanted {
    /// Confirms the follows of the rooms that are `subscribed`.
    pub fn confirm(&mut self, subscribed: &HashSet<RoomId>) {
        let confirmed: Vec<RoomId> = self
            .waiters
            .keys()
            .filter(|r| subscribed.contains(*r))
            .cloned()
            .collect();
        for room in confirmed {
            self.release(&room);
        }
    }

    /// Lets the follows of `room` go on without their subscription (the catch-up after it
    /// is in place covers what they miss).
    pub fn release(&mut self, room: &RoomId) {
        for waiter in self.waiters.remove(room).unwrap_or_default() {
            let _ = waiter.send(());
        }
    }
}

/// The state a bus handle and its driver share; `C` is the publisher connection.
pub struct BusState<C> {
    wanted: Mutex<Wanted>,
    /// Woken when the wanted set changed.
    pub changed: Notify,
    publisher: Mutex<Option<C>>,
    outbox: Mutex<VecDeque<(String, String)>>,
    pub channels: Channels,
    up: AtomicBool,
    metrics: GatewayMetrics,
}

impl<C: Clone + Send + 'static> BusState<C> {
    /// A bus that is down until its driver connects.
    pub fn new(channels: Channels, metrics: GatewayMetrics) -> Self {
        metrics.redis_up.set(0);
        Self {
            wanted: Mutex::new(Wanted::default()),
            changed: Notify::new(),
            publisher: Mutex::new(None),
            outbox: Mutex::new(VecDeque::new()),
            channels,
            up: AtomicBool::new(false),
            metrics,
        }
    }

    pub fn wanted(&self) -> MutexGuard<'_, Wanted> {
        self.wanted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts following `room` (see [`super::Bus::follow`]).
    pub fn follow(&self, room: &RoomId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut wanted = self.wanted();
        wanted.rooms.insert(room.clone());
        if wanted.up {
            wanted.waiters.entry(room.clone()).or_default().push(tx);
        } else {
            let _ = tx.send(());
        }
        drop(wanted);
        self.changed.notify_one();
        rx
    }

    /// Stops following `room`.
    pub fn unfollow(&self, room: &RoomId) {
        let mut wanted = self.wanted();
        wanted.rooms.remove(room);
        wanted.waiters.remove(room);
        drop(wanted);
        self.changed.notify_one();
    }

    /// The driver connected (with `conn` to publish on) or lost its connection.
    pub fn set_up(&self, up: bool, conn: Option<C>) {
        *self.publisher.lock().unwrap_or_else(|p| p.into_inner()) = conn;
        self.up.store(up, Ordering::Release);
        self.metrics.redis_up.set(i64::from(up));
    }

    /// The driver lost its connection: follows stop waiting, publishes go to the outbox.
    pub fn went_down(&self) {
        let mut wanted = self.wanted();
        wanted.up = false;
        let rooms: Vec<RoomId> = wanted.waiters.keys().cloned().collect();
        for room in rooms {
            wanted.release(&room);
        }
        drop(wanted);
        self.set_up(false, None);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Keeps an event that could not be sent, dropping the oldest beyond [`OUTBOX_MAX`].
    pub fn keep_unsent(&self, channel: String, payload: String) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if outbox.len() >= OUTBOX_MAX {
            outbox.pop_front();
        }
        outbox.push_back((channel, payload));
    }

    /// Takes every kept event, oldest first.
    pub fn take_unsent(&self) -> Vec<(String, String)> {
        self.outbox
            .lock()
            .map(|mut o| o.drain(..).collect())
            .unwrap_or_default()
    }

    /// The channel `event` goes to: its room's, or the notice channel.
    pub fn channel_of(&self, event: &BusEvent) -> String {
        match event {
            BusEvent::Notice { .. } => self.channels.notice(),
            other => match other.room() {
                Some(room) => self.channels.room(room),
                None => self.channels.notice(),
            },
        }
    }

    /// Publishes `event` with `send` on the publisher connection; keeps it in the outbox when
    /// there is no connection or `send` fails.
    pub fn publish<F, Fut>(self: &Arc<Self>, event: BusEvent, send: F) -> BoxFuture<'static, bool>
    where
        F: FnOnce(C, String, String) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let state = self.clone();
        Box::pin(async move {
            let channel = state.channel_of(&event);
            let Ok(payload) = serde_json::to_string(&event) else {
                return false;
            };
            let conn = state
                .publisher
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let sent = match conn {
                Some(conn) => match send(conn, channel.clone(), payload.clone()).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, %channel, "publish failed; kept for a retry");
                        false
                    }
                },
                None => false,
            };
            if !sent {
                state.keep_unsent(channel, payload);
            }
            sent
        })
    }
}

/// The event in a message's payload, unless this instance published it or it is malformed.
pub fn foreign_event(payload: &[u8], origin: &str) -> Option<BusEvent> {
    match serde_json::from_slice::<BusEvent>(payload) {
        Ok(event) if event.origin() != origin => Some(event),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a malformed bus event");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> BusEvent {
        BusEvent::Notice {
            origin: "me".into(),
            text: "hi".into(),
            room: None,
        }
    }

    fn state() -> BusState<()> {
        BusState::new(
            Channels::default(),
            GatewayMetrics::new(&prometheus::Registry::new()),
        )
    }

    #[test]
    fn the_wanted_set_follows_the_last_decision_whatever_the_interleaving() {
        // A page reload: the old socket's unfollow and the new socket's follow of the same
        // room. Whatever order the hub decided them in is the order they land in.
        let state = state();
        let room = RoomId::parse("r").expect("room");
        state.follow(&room);
        state.unfollow(&room);
        state.follow(&room);
        assert!(state.wanted().rooms.contains(&room));
        state.unfollow(&room);
        assert!(state.wanted().rooms.is_empty());
    }

    #[tokio::test]
    async fn follows_resolve_at_once_while_down_and_leave_no_waiter() {
        let state = state();
        let room = RoomId::parse("r").expect("room");
        let confirmed = state.follow(&room);
        tokio::time::timeout(Duration::from_secs(1), confirmed)
            .await
            .expect("resolves while down")
            .expect("sent");
        state.unfollow(&room);
        assert!(state.wanted().waiters.is_empty());
        assert!(!state.is_up());
    }

    #[tokio::test]
    async fn follows_wait_while_up_until_confirmed_or_the_bus_goes_down() {
        let state = state();
        state.wanted().up = true;
        let (a, b) = (
            RoomId::parse("a").expect("room"),
            RoomId::parse("b").expect("room"),
        );
        let mut first = state.follow(&a);
        let second = state.follow(&b);
        assert!(first.try_recv().is_err(), "waits for its subscription");
        state.wanted().confirm(&HashSet::from([a.clone()]));
        first.await.expect("confirmed");
        state.went_down();
        second.await.expect("released when the bus goes down");
        assert!(state.wanted().waiters.is_empty());
    }

    #[test]
    fn unsent_events_are_kept_boundedly_oldest_dropped_first() {
        let state = state();
        for n in 0..OUTBOX_MAX + 5 {
            state.keep_unsent("c".into(), n.to_string());
        }
        let unsent = state.take_unsent();
        assert_eq!(unsent.len(), OUTBOX_MAX);
        assert_eq!(unsent.first().map(|(_, p)| p.as_str()), Some("5"));
        assert!(state.take_unsent().is_empty());
    }

    #[tokio::test]
    async fn a_publish_without_a_connection_is_kept_and_one_that_fails_too() {
        let state = Arc::new(state());
        let event = notice();
        let sent = state
            .publish(event.clone(), |_, _, _| async { Ok(()) })
            .await;
        assert!(!sent, "no connection yet");
        state.set_up(true, Some(()));
        let sent = state
            .publish(event.clone(), |_, _, _| async { anyhow::bail!("refused") })
            .await;
        assert!(!sent);
        assert!(state.publish(event, |_, _, _| async { Ok(()) }).await);
        assert_eq!(state.take_unsent().len(), 2);
    }

    #[test]
    fn own_and_malformed_events_are_not_foreign() {
        let event = notice();
        let bytes = serde_json::to_vec(&event).expect("json");
        assert!(foreign_event(&bytes, "me").is_none());
        assert!(foreign_event(&bytes, "other").is_some());
        assert!(foreign_event(b"{not json", "other").is_none());
    }
}
