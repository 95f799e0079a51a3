//! Durable comments: MongoDB (`MONGO_URL`) or an embedded redb file, with the same semantics.
//!
//! `seq` is allocated as max+1 per room and guarded by a unique (room, seq) key, so seq `n` is
//! only written once `n - 1` is visible: seq order is storage order across instances. Deletes
//! are soft, so a seq is never reused. A post with a `clientId` gets a deterministic id from
//! (author, clientId), so a retry finds the first comment instead of storing a second.

mod embedded;
mod mongo;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use shared_proto::{Author, ClientId, Comment, CommentText, Emoji, Mine, Reactions, RoomId};

pub use embedded::EmbeddedStore;
pub use mongo::MongoStore;

/// Deadline of every store call: a store that hangs instead of failing answers `unavailable`
/// after it (the contract's 5 s for a post).
pub const STORE_DEADLINE: Duration = Duration::from_secs(5);

async fn deadline<T>(
    what: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(STORE_DEADLINE, call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(anyhow::anyhow!(
                "{what} took longer than {STORE_DEADLINE:?}"
            )))
        })
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database does not answer.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else.
    #[error("store failure: {0}")]
    Internal(#[source] anyhow::Error),
}

/// A post to store.
#[derive(Debug, Clone)]
pub struct NewComment {
    /// Target room.
    pub room: RoomId,
    /// Who writes it.
    pub author: Author,
    /// Validated text.
    pub text: CommentText,
    /// Idempotency key, scoped to the author.
    pub client_id: Option<ClientId>,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// The top-level comment of the same room this one answers (already resolved: never a reply).
    pub reply_to: Option<String>,
}

/// The result of storing a post.
#[derive(Debug, Clone)]
pub struct Inserted {
    /// The stored comment (the first one, for a repeated clientId).
    pub comment: Comment,
    /// False when a repeated clientId found an earlier comment.
    pub fresh: bool,
}

/// Some comments, oldest first, and whether more exist beyond them.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Oldest first.
    pub comments: Vec<Comment>,
    /// More exist (older ones for `latest`/`before`, newer ones for `after`).
    pub more: bool,
}

/// Which slice of a room to read.
#[derive(Debug, Clone, Copy)]
pub enum Slice {
    /// The newest `limit`.
    Latest { limit: u32 },
    /// The newest `limit` below `before`.
    Before { before: u64, limit: u32 },
    /// Up to `max` with seq in (`after`, `upto`), oldest first.
    After {
        after: u64,
        upto: Option<u64>,
        max: usize,
    },
}

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted now; the comment had this seq.
    Deleted {
        /// The deleted comment's seq.
        seq: u64,
    },
    /// Unknown, in another room, or already deleted.
    NotFound,
    /// Someone else's comment and not an admin.
    Forbidden,
}

/// What an edit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditOutcome {
    /// Edited now: the comment as stored, and its change counter.
    Edited {
        /// The comment with its new text and `editedAt`.
        comment: Box<Comment>,
        /// Bumped by every edit and reaction change of the comment.
        rev: u64,
    },
    /// Unknown, in another room, or deleted.
    NotFound,
    /// Someone else's comment.
    NotAuthor,
    /// The edit window has passed.
    TooLate,
}

/// What a reaction change found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReactOutcome {
    /// The user's reactions changed: the counts now, and the comment's change counter.
    Changed {
        /// The comment's seq.
        seq: u64,
        /// Counts after the change.
        reactions: Reactions,
        /// Bumped by every edit and reaction change of the comment.
        rev: u64,
    },
    /// Nothing to change (`on` twice, or `off` without one): the counts as they are.
    Unchanged {
        /// Current counts.
        reactions: Reactions,
    },
    /// Unknown, in another room, or deleted.
    NotFound,
}

/// The comment store.
#[derive(Clone)]
pub enum Store {
    /// MongoDB.
    Mongo(MongoStore),
    /// Embedded redb.
    Embedded(EmbeddedStore),
}

impl Store {
    /// Stores a post (or finds the earlier one with the same clientId).
    pub async fn insert(&self, new: NewComment) -> Result<Inserted, StoreError> {
        let mut results = self.insert_batch(vec![new], &mut None).await;
        results.pop().unwrap_or_else(|| {
            Err(StoreError::Internal(anyhow::anyhow!(
                "the store answered no result"
            )))
        })
    }

    /// Stores posts of one room in the order given, as one write where the store allows it
    /// (one result per post, in order). `next` carries the room's next seq between calls of
    /// the room's single writer; a stale value costs one retry.
    pub async fn insert_batch(
        &self,
        news: Vec<NewComment>,
        next: &mut Option<u64>,
    ) -> Vec<Result<Inserted, StoreError>> {
        let count = news.len();
        let call = async {
            match self {
                Store::Mongo(s) => s.insert_batch(news, next).await,
                Store::Embedded(s) => s.insert_batch(news).await,
            }
        };
        match tokio::time::timeout(STORE_DEADLINE, call).await {
            Ok(results) => results,
            Err(_) => {
                *next = None;
                (0..count)
                    .map(|_| {
                        Err(StoreError::Unavailable(anyhow::anyhow!(
                            "insert took longer than {STORE_DEADLINE:?}"
                        )))
                    })
                    .collect()
            }
        }
    }

    /// Reads a slice of a room, deleted comments left out.
    pub async fn read(&self, room: &RoomId, slice: Slice) -> Result<Page, StoreError> {
        deadline("read", async {
            match self {
                Store::Mongo(s) => s.read(room, slice).await,
                Store::Embedded(s) => s.read(room, slice).await,
            }
        })
        .await
    }

    /// The highest seq ever allocated in a room (deleted ones included); 0 when empty.
    pub async fn max_seq(&self, room: &RoomId) -> Result<u64, StoreError> {
        deadline("max seq", async {
            match self {
                Store::Mongo(s) => s.max_seq(room).await,
                Store::Embedded(s) => s.max_seq(room).await,
            }
        })
        .await
    }

    /// Soft-deletes a comment if `actor` wrote it or is an admin.
    pub async fn delete(
        &self,
        room: &RoomId,
        id: &str,
        actor: &str,
        admin: bool,
    ) -> Result<DeleteOutcome, StoreError> {
        deadline("delete", async {
            match self {
                Store::Mongo(s) => s.delete(room, id, actor, admin).await,
                Store::Embedded(s) => s.delete(room, id, actor, admin).await,
            }
        })
        .await
    }

    /// The live (not deleted) comment `id` of `room`.
    pub async fn get(&self, room: &RoomId, id: &str) -> Result<Option<Comment>, StoreError> {
        deadline("get", async {
            match self {
                Store::Mongo(s) => s.get(room, id).await,
                Store::Embedded(s) => s.get(room, id).await,
            }
        })
        .await
    }

    /// Sets a new text on `actor`'s own comment if it is at most `window_ms` old at `now_ms`.
    pub async fn edit(
        &self,
        room: &RoomId,
        id: &str,
        actor: &str,
        text: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<EditOutcome, StoreError> {
        deadline("edit", async {
            match self {
                Store::Mongo(s) => s.edit(room, id, actor, text, now_ms, window_ms).await,
                Store::Embedded(s) => s.edit(room, id, actor, text, now_ms, window_ms).await,
            }
        })
        .await
    }

    /// Gives (`on`) or takes back `user`'s `emoji` on comment `id`; one of each kind per user.
    pub async fn react(
        &self,
        room: &RoomId,
        id: &str,
        user: &str,
        emoji: Emoji,
        on: bool,
    ) -> Result<ReactOutcome, StoreError> {
        deadline("react", async {
            match self {
                Store::Mongo(s) => s.react(room, id, user, emoji, on).await,
                Store::Embedded(s) => s.react(room, id, user, emoji, on).await,
            }
        })
        .await
    }

    /// The emoji `user` gave each of `ids`, only comments with at least one.
    pub async fn mine(&self, user: &str, ids: Vec<String>) -> Result<Mine, StoreError> {
        deadline("mine", async {
            match self {
                Store::Mongo(s) => s.mine(user, ids).await,
                Store::Embedded(s) => s.mine(user, ids).await,
            }
        })
        .await
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> bool {
        match self {
            Store::Mongo(s) => s.ping().await,
            Store::Embedded(_) => true,
        }
    }

    /// True for MongoDB.
    pub fn is_mongo(&self) -> bool {
        matches!(self, Store::Mongo(_))
    }
}

/// The deterministic id of a post with a clientId: `k` + 32 hex digits of SHA-256(author, clientId).
pub(crate) fn client_key(author: &str, client_id: &ClientId) -> String {
    let mut hasher = Sha256::new();
    hasher.update(author.as_bytes());
    hasher.update([0u8]);
    hasher.update(client_id.as_str().as_bytes());
    let digest = hasher.finalize();
    let mut id = String::with_capacity(33);
    id.push('k');
    for byte in &digest[..16] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// A fresh random id.
pub(crate) fn fresh_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// One entry of `comments.json` in the demo folder.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DemoComment {
    pub room: RoomId,
    pub author_id: String,
    pub author_name: String,
    pub text: String,
    pub created_at: String,
}

/// Reads `demo_dir/comments.json`; missing or unreadable files give nothing.
pub(crate) fn read_demo(demo_dir: &Path) -> Vec<DemoComment> {
    let path = demo_dir.join("comments.json");
    let Ok(raw) = std::fs::read(&path) else {
        tracing::info!(path = %path.display(), "no demo comments to load");
        return Vec::new();
    };
    match serde_json::from_slice::<Vec<serde_json::Value>>(&raw) {
        Ok(items) => items
            .into_iter()
            .filter_map(|item| match serde_json::from_value::<DemoComment>(item) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a demo comment");
                    None
                }
            })
            .collect(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "demo comments are not a JSON array");
            Vec::new()
        }
    }
}

/// Unix ms of an RFC 3339 timestamp, or now.
pub(crate) fn parse_millis(text: &str) -> i64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or_else(|_| now_millis())
}

/// Counts as stored (emoji key → count) to the wire map (emoji → count, only above 0).
pub(crate) fn counts_to_reactions<N: Copy + Into<i64>>(
    counts: &std::collections::BTreeMap<String, N>,
) -> shared_proto::Reactions {
    shared_proto::reaction::reactions_from_counts(
        counts
            .iter()
            .filter_map(|(key, n)| Some((shared_proto::Emoji::from_key(key)?, (*n).into()))),
    )
}

/// Now, Unix ms.
pub fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod discussion_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_are_stable_and_scoped() {
        let a = ClientId::parse("c-1").expect("valid");
        let key = client_key("JD", &a);
        assert_eq!(key.len(), 33);
        assert_eq!(key, client_key("JD", &a));
        assert_ne!(key, client_key("Admin", &a));
        assert!(key.starts_with('k'));
    }

    #[test]
    fn millis() {
        assert_eq!(parse_millis("2023-11-14T22:13:20.123Z"), 1_700_000_000_123);
    }
}
