//! The MongoDB `comments` collection.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use serde::{Deserialize, Serialize};
use shared_proto::timestamp::rfc3339_from_millis;
use shared_proto::{Author, Comment, RoomId};

use super::{DeleteOutcome, Inserted, NewComment, Page, Slice, StoreError, client_key, fresh_id};

/// A stored comment document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doc {
    #[serde(rename = "_id")]
    id: String,
    room: String,
    seq: i64,
    #[serde(rename = "authorId")]
    author_id: String,
    #[serde(rename = "authorName")]
    author_name: String,
    text: String,
    #[serde(rename = "createdAt")]
    created_at: DateTime,
    #[serde(rename = "clientId", default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default)]
    deleted: bool,
    /// The top-level comment this one answers.
    #[serde(rename = "replyTo", default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    #[serde(rename = "editedAt", default, skip_serializing_if = "Option::is_none")]
    edited_at: Option<DateTime>,
    /// Emoji key → count (the users behind them are in `reactors`, never read with the comment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    reactions: BTreeMap<String, i64>,
    /// Bumped by every edit and reaction change.
    #[serde(default, skip_serializing_if = "is_zero")]
    rev: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Doc {
    fn into_comment(self) -> Option<Comment> {
        Some(Comment {
            id: self.id,
            seq: u64::try_from(self.seq).ok()?,
            room: RoomId::parse(self.room).ok()?,
            author: Author {
                id: self.author_id,
                name: self.author_name,
            },
            text: self.text,
            created_at: rfc3339_from_millis(self.created_at.timestamp_millis()),
            reactions: super::counts_to_reactions(&self.reactions),
            reply_to: self.reply_to,
            edited_at: self
                .edited_at
                .map(|at| rfc3339_from_millis(at.timestamp_millis())),
        })
    }
}

/// Comments in MongoDB.
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    comments: Collection<Doc>,
    db: mongodb::Database,
    next_seq: Arc<Mutex<HashMap<String, u64>>>,
    /// The unique (room, seq) index exists: no post is stored before it does.
    indexed: Arc<AtomicBool>,
}

fn unavailable(e: mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(anyhow::Error::new(e))
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == 11000)),
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

impl MongoStore {
    /// Connects (lazily) to `url`; the database is the URL's path, default `library`.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(url)
            .await
            .context("parsing MONGO_URL")?;
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(Duration::from_secs(5));
        }
        if options.connect_timeout.is_none() {
            options.connect_timeout = Some(Duration::from_secs(5));
        }
        let db_name = options
            .default_database
            .clone()
            .unwrap_or_else(|| "library".to_owned());
        options
            .app_name
            .get_or_insert_with(|| "comments-gateway".to_owned());
        let client = Client::with_options(options).context("building the MongoDB client")?;
        let db = client.database(&db_name);
        let comments = db.collection::<Doc>("comments");
        Ok(Self {
            client,
            comments,
            db,
            next_seq: Arc::new(Mutex::new(HashMap::new())),
            indexed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// True once the indexes exist.
    pub fn is_indexed(&self) -> bool {
        self.indexed.load(Ordering::Acquire)
    }

    /// Creates the indexes the queries need (idempotent).
    pub async fn ensure_indexes(&self) -> anyhow::Result<()> {
        let room_seq = IndexModel::builder()
            .keys(doc! {"room": 1, "seq": 1})
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("room_seq".to_owned())
                    .build(),
            )
            .build();
        self.comments
            .create_index(room_seq)
            .await
            .context("creating index room_seq")?;
        self.indexed.store(true, Ordering::Release);
        Ok(())
    }

    /// Pings the server.
    pub async fn ping(&self) -> bool {
        tokio::time::timeout(
            Duration::from_secs(2),
            self.db.run_command(doc! {"ping": 1}),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// The driver's client (for shutdown).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn cached_next(&self, room: &str) -> Option<u64> {
        self.next_seq.lock().ok().and_then(|m| m.get(room).copied())
    }

    fn remember_next(&self, room: &str, next: u64) {
        if let Ok(mut m) = self.next_seq.lock() {
            let entry = m.entry(room.to_owned()).or_insert(next);
            if *entry < next {
                *entry = next;
            }
        }
    }

    fn forget_next(&self, room: &str) {
        if let Ok(mut m) = self.next_seq.lock() {
            m.remove(room);
        }
    }

    async fn find_by_id(&self, id: &str) -> Result<Option<Doc>, StoreError> {
        self.comments
            .find_one(doc! {"_id": id})
            .await
            .map_err(unavailable)
    }

    pub(super) async fn insert(&self, new: NewComment) -> Result<Inserted, StoreError> {
        if !self.indexed.load(Ordering::Acquire) {
            // Seq uniqueness rests on this index.
            self.ensure_indexes()
                .await
                .map_err(StoreError::Unavailable)?;
        }
        let id = match &new.client_id {
            Some(c) => client_key(&new.author.id, c),
            None => fresh_id(),
        };
        if new.client_id.is_some()
            && let Some(doc) = self.find_by_id(&id).await?
        {
            return existing(doc);
        }
        let room = new.room.as_str().to_owned();
        let mut doc = Doc {
            id,
            room: room.clone(),
            seq: 0,
            author_id: new.author.id,
            author_name: new.author.name,
            text: new.text.into_inner(),
            created_at: DateTime::from_millis(new.created_ms),
            client_id: new.client_id.map(String::from),
            deleted: false,
            reply_to: new.reply_to,
            edited_at: None,
            reactions: BTreeMap::new(),
            rev: 0,
        };
        for _attempt in 0..64 {
            let seq = match self.cached_next(&room) {
                Some(seq) => seq,
                None => self.max_seq_raw(&room).await? + 1,
            };
            doc.seq = i64::try_from(seq).map_err(|e| StoreError::Internal(e.into()))?;
            match self.comments.insert_one(&doc).await {
                Ok(_) => {
                    self.remember_next(&room, seq + 1);
                    let comment = doc.into_comment().ok_or_else(|| {
                        StoreError::Internal(anyhow::anyhow!("stored comment does not convert"))
                    })?;
                    return Ok(Inserted {
                        comment,
                        fresh: true,
                    });
                }
                Err(e) if is_duplicate_key(&e) => {
                    if doc.client_id.is_some()
                        && let Some(found) = self.find_by_id(&doc.id).await?
                    {
                        return existing(found);
                    }
                    // Another writer took this seq: read the room's max again.
                    self.forget_next(&room);
                    let max = self.max_seq_raw(&room).await?;
                    self.remember_next(&room, max + 1);
                }
                Err(e) => {
                    self.forget_next(&room);
                    return Err(unavailable(e));
                }
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!(
            "could not allocate a seq in room {room}"
        )))
    }

    async fn max_seq_raw(&self, room: &str) -> Result<u64, StoreError> {
        let top = self
            .comments
            .find_one(doc! {"room": room})
            .sort(doc! {"seq": -1})
            .await
            .map_err(unavailable)?;
        Ok(top.and_then(|d| u64::try_from(d.seq).ok()).unwrap_or(0))
    }

    pub(super) async fn max_seq(&self, room: &RoomId) -> Result<u64, StoreError> {
        self.max_seq_raw(room.as_str()).await
    }

    pub(super) async fn read(&self, room: &RoomId, slice: Slice) -> Result<Page, StoreError> {
        let room = room.as_str();
        let (filter, ascending, take) = match slice {
            Slice::Latest { limit } => (
                doc! {"room": room, "deleted": {"$ne": true}},
                false,
                limit as usize,
            ),
            Slice::Before { before, limit } => (
                doc! {"room": room, "deleted": {"$ne": true}, "seq": {"$lt": clamp(before)}},
                false,
                limit as usize,
            ),
            Slice::After { after, upto, max } => {
                let mut range = doc! {"$gt": clamp(after)};
                if let Some(upto) = upto {
                    range.insert("$lt", clamp(upto));
                }
                (
                    doc! {"room": room, "deleted": {"$ne": true}, "seq": range},
                    true,
                    max,
                )
            }
        };
        let docs: Vec<Doc> = self
            .comments
            .find(filter)
            .sort(doc! {"seq": if ascending { 1 } else { -1 }})
            .limit(i64::try_from(take + 1).unwrap_or(i64::MAX))
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let more = docs.len() > take;
        let mut comments: Vec<Comment> = docs
            .into_iter()
            .take(take)
            .filter_map(Doc::into_comment)
            .collect();
        if !ascending {
            comments.reverse();
        }
        Ok(Page { comments, more })
    }

    pub(super) async fn delete(
        &self,
        room: &RoomId,
        id: &str,
        actor: &str,
        admin: bool,
    ) -> Result<DeleteOutcome, StoreError> {
        let Some(doc) = self.find_by_id(id).await? else {
            return Ok(DeleteOutcome::NotFound);
        };
        if doc.deleted || doc.room != room.as_str() {
            return Ok(DeleteOutcome::NotFound);
        }
        if doc.author_id != actor && !admin {
            return Ok(DeleteOutcome::Forbidden);
        }
        let result = self
            .comments
            .update_one(
                doc! {"_id": id, "deleted": {"$ne": true}},
                doc! {"$set": {"deleted": true, "text": ""}},
            )
            .await
            .map_err(unavailable)?;
        Ok(if result.matched_count == 0 {
            DeleteOutcome::NotFound
        } else {
            DeleteOutcome::Deleted
        })
    }
}

fn clamp(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn existing(doc: Doc) -> Result<Inserted, StoreError> {
    let comment = doc
        .into_comment()
        .ok_or_else(|| StoreError::Internal(anyhow::anyhow!("stored comment does not convert")))?;
    Ok(Inserted {
        comment,
        fresh: false,
    })
}
