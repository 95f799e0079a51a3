//! The instance's read slots: at most [`MAX_STORE_READS`] client-driven store reads (backlogs,
//! history, HTTP reads) run at once, so a reload storm after a fault queues here instead of
//! piling onto the store. Waiting readers wait in a task of their own (never in a connection's
//! loop) and in arrival order (the semaphore is fair): a reader keeps its place and gets its
//! answer late, not never.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::GatewayMetrics;

/// Client-driven store reads one instance runs at once.
pub const MAX_STORE_READS: usize = 8;

/// The read slots of one instance.
#[derive(Clone)]
pub struct ReadSlots {
    slots: Arc<Semaphore>,
    metrics: GatewayMetrics,
}

/// One read slot, given back on drop.
pub struct ReadSlot {
    _permit: OwnedSemaphorePermit,
}

impl ReadSlots {
    /// `count` slots (at least one).
    pub fn new(count: usize, metrics: GatewayMetrics) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(count.max(1))),
            metrics,
        }
    }

    /// Waits for a slot, in arrival order, at most `patience`; None when none came in time.
    pub async fn take(&self, patience: Duration) -> Option<ReadSlot> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(ReadSlot { _permit: permit });
        }
        self.metrics.store_reads_waiting.inc();
        let waited = tokio::time::timeout(patience, self.slots.clone().acquire_owned()).await;
        self.metrics.store_reads_waiting.dec();
        match waited {
            Ok(Ok(permit)) => Some(ReadSlot { _permit: permit }),
            _ => None,
        }
    }

    /// Slots free now.
    pub fn free(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> GatewayMetrics {
        GatewayMetrics::new(&prometheus::Registry::new())
    }

    #[tokio::test]
    async fn at_most_the_bound_run_and_waiters_keep_their_place() {
        let m = metrics();
        let slots = ReadSlots::new(2, m.clone());
        let a = slots.take(Duration::from_secs(1)).await.expect("first");
        let b = slots.take(Duration::from_secs(1)).await.expect("second");
        assert_eq!(slots.free(), 0);
        // Three more wait, in order.
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..3 {
            let slots = slots.clone();
            let order = order.clone();
            waiters.push(tokio::spawn(async move {
                let slot = slots
                    .take(Duration::from_secs(60))
                    .await
                    .expect("late, not never");
                order.lock().expect("lock").push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(slot);
            }));
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert_eq!(m.store_reads_waiting.get(), 3);
        assert!(
            order.lock().expect("lock").is_empty(),
            "nobody past the bound"
        );
        drop(a);
        drop(b);
        for w in waiters {
            w.await.expect("waiter");
        }
        assert_eq!(*order.lock().expect("lock"), [0, 1, 2], "arrival order");
        assert_eq!(m.store_reads_waiting.get(), 0);
        assert_eq!(slots.free(), 2);
    }

    #[tokio::test]
    async fn a_waiter_without_a_slot_in_time_gets_none() {
        let slots = ReadSlots::new(1, metrics());
        let _held = slots.take(Duration::from_secs(1)).await.expect("slot");
        assert!(slots.take(Duration::from_millis(50)).await.is_none());
    }
}
