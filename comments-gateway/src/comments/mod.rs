//! The comments service: posting, deleting and reading comments, whatever the transport.
//!
//! "A comment happened" has one path, [`Comments::happened`]: the hub's per-room sequencer
//! (local connections, in seq order, once) and the bus (other instances). A local post, a
//! retry that finds its first attempt stored (the first attempt may have died before its
//! fan-out), and a post stored after its poster gave up all go through it; other instances'
//! events enter the same sequencer through the bus listener. Updates of a comment (delete, and
//! the edits and reactions of discussions) go through [`crate::hub::Hub::update`], keyed by
//! the comment's seq, so they never reach a connection before the comment.

mod reads;
mod writer;

use std::sync::Arc;

use governor::DefaultKeyedRateLimiter;
use shared_proto::channels::BusEvent;
use shared_proto::ws::{Delete, Post};
use shared_proto::{Author, Claims, Comment, Role, RoomId};

use self::writer::Writers;
use crate::bus::SharedBus;
use crate::error::GatewayError;
use crate::hub::Hub;
use crate::metrics::GatewayMetrics;
use crate::store::{DeleteOutcome, Inserted, NewComment, Page, Slice, Store, now_millis};

pub use self::reads::{MAX_STORE_READS, ReadSlots};
pub use self::writer::{MAX_BATCH, QUEUE_PER_ROOM};

/// How long a client-driven read waits for a read slot (and a subscribe for its room and its
/// backlog, retrying a store that fails) before it answers `unavailable`.
pub const READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Per-user post limiter.
pub type PostLimiter = DefaultKeyedRateLimiter<String>;

struct Inner {
    store: Store,
    hub: Hub,
    bus: SharedBus,
    instance: String,
    metrics: GatewayMetrics,
    limiter: Option<Arc<PostLimiter>>,
    writers: Writers,
    reads: ReadSlots,
}

/// Cloneable handle to the comments service.
#[derive(Clone)]
pub struct Comments {
    inner: Arc<Inner>,
}

impl Comments {
    /// The service over `store`, delivering through `hub` and `bus`.
    pub fn new(
        store: Store,
        hub: Hub,
        bus: SharedBus,
        instance: String,
        metrics: GatewayMetrics,
        limiter: Option<Arc<PostLimiter>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hub,
                bus,
                instance,
                reads: ReadSlots::new(MAX_STORE_READS, metrics.clone()),
                metrics,
                limiter,
                writers: Writers::default(),
            }),
        }
    }

    /// The post limiter (for its periodic clean-up).
    pub fn limiter(&self) -> Option<Arc<PostLimiter>> {
        self.inner.limiter.clone()
    }

    /// Stores a post through the room's writer. Answers within the store deadline: a post not
    /// stored by then is `unavailable` (if it is stored after all, it is still fanned out, and
    /// a retry with the same clientId returns it). The caller acks, then calls
    /// [`Comments::happened`] with the comment, so the author sees the ack first.
    pub async fn post(&self, user: Option<&Claims>, post: Post) -> Result<Inserted, GatewayError> {
        let Some(user) = user else {
            return Err(GatewayError::Unauthorized("sign in to post".into()));
        };
        let reply_to = match &post.reply_to {
            None => None,
            Some(parent) => {
                match crate::discussion::reply_target(&self.inner.store, &post.room, parent).await {
                    Ok(top) => Some(top),
                    // A retry of a reply whose parent went meanwhile still finds its first attempt.
                    Err(GatewayError::NotFound(why)) => {
                        let earlier = match &post.client_id {
                            Some(client_id) => {
                                let id = crate::store::client_key(user.sub.as_str(), client_id);
                                self.inner.store.get(&post.room, &id).await?
                            }
                            None => None,
                        };
                        return match earlier {
                            Some(comment) => Ok(Inserted {
                                comment,
                                fresh: false,
                            }),
                            None => Err(GatewayError::NotFound(why)),
                        };
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if let Some(limiter) = &self.inner.limiter
            && limiter.check_key(&user.sub.to_string()).is_err()
        {
            return Err(GatewayError::RateLimited);
        }
        let new = NewComment {
            room: post.room,
            author: Author {
                id: user.sub.to_string(),
                name: user.name.clone(),
            },
            text: post.text,
            client_id: post.client_id,
            created_ms: now_millis(),
            reply_to,
        };
        let inserted = self.inner.writers.store(self, new).await?;
        if inserted.fresh {
            self.inner.metrics.comments_posted.inc();
        }
        Ok(inserted)
    }

    /// A stored comment reaches this instance's connections (in order, once) and the others.
    pub async fn happened(&self, comment: Comment) {
        self.inner.hub.comment(&comment);
        let event = BusEvent::Comment {
            origin: self.inner.instance.clone(),
            comment,
        };
        self.inner.bus.publish(event).await;
    }

    /// Deletes a comment (author or admin); returns its seq. The caller acks, then calls
    /// [`Comments::deleted`].
    pub async fn delete(
        &self,
        user: Option<&Claims>,
        delete: &Delete,
    ) -> Result<u64, GatewayError> {
        let Some(user) = user else {
            return Err(GatewayError::Unauthorized("sign in to delete".into()));
        };
        let admin = user.role == Role::Admin;
        let outcome = self
            .inner
            .store
            .delete(&delete.room, &delete.id, user.sub.as_str(), admin)
            .await?;
        match outcome {
            DeleteOutcome::Deleted { seq } => Ok(seq),
            DeleteOutcome::NotFound => Err(GatewayError::NotFound(
                "no such comment in this room".into(),
            )),
            DeleteOutcome::Forbidden => Err(GatewayError::Forbidden(
                "only the author or an admin may delete this comment".into(),
            )),
        }
    }

    /// A deleted comment: `comment_deleted` here (after the comment itself) and elsewhere.
    pub async fn deleted(&self, room: RoomId, id: String, seq: u64) {
        self.inner.hub.deleted(&room, &id, seq);
        let event = BusEvent::Deleted {
            origin: self.inner.instance.clone(),
            room,
            id,
            seq,
        };
        self.inner.bus.publish(event).await;
    }

    /// Reads a slice of a room (backlogs, history, the HTTP reads) in one of the instance's
    /// read slots (waiting for one at most [`READ_PATIENCE`]).
    pub async fn read(&self, room: &RoomId, slice: Slice) -> Result<Page, GatewayError> {
        self.read_within(room, slice, READ_PATIENCE).await
    }

    /// [`Comments::read`], waiting for a read slot at most `patience`.
    pub async fn read_within(
        &self,
        room: &RoomId,
        slice: Slice,
        patience: std::time::Duration,
    ) -> Result<Page, GatewayError> {
        let Some(_slot) = self.inner.reads.take(patience).await else {
            return Err(GatewayError::Unavailable("storage"));
        };
        Ok(self.inner.store.read(room, slice).await?)
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }
}
