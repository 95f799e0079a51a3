//! The MongoDB `comments` collection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

mod discussions;

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
    /// The unique (room, seq) index exists: no post is stored before it does.
    indexed: Arc<AtomicBool>,
}

/// Most rounds a batch of posts retries after other instances took its seqs.
const MAX_ATTEMPTS: usize = 8;

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

    async fn find_by_id(&self, id: &str) -> Result<Option<Doc>, StoreError> {
        self.comments
            .find_one(doc! {"_id": id})
            .await
            .map_err(unavailable)
    }

    async fn find_ids(&self, ids: Vec<String>) -> Result<HashMap<String, Doc>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let docs: Vec<Doc> = self
            .comments
            .find(doc! {"_id": {"$in": ids}})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        Ok(docs.into_iter().map(|d| (d.id.clone(), d)).collect())
    }

    /// Stores posts of one room: posts with a clientId already stored return the first
    /// comment; the others get consecutive seqs from the room's max+1 in one ordered
    /// `insertMany`. When another instance took a seq first (E11000), the ones that landed are
    /// kept and the rest retried from the new max, at most [`MAX_ATTEMPTS`] times.
    pub(super) async fn insert_batch(
        &self,
        news: Vec<NewComment>,
        next: &mut Option<u64>,
    ) -> Vec<Result<Inserted, StoreError>> {
        let count = news.len();
        let mut results: Vec<Option<Result<Inserted, StoreError>>> =
            (0..count).map(|_| None).collect();
        let fail_rest = |results: &mut Vec<Option<Result<Inserted, StoreError>>>,
                         why: &dyn Fn() -> StoreError| {
            for slot in results.iter_mut().filter(|r| r.is_none()) {
                *slot = Some(Err(why()));
            }
        };
        if !self.indexed.load(Ordering::Acquire)
            && let Err(e) = self.ensure_indexes().await
        {
            // Seq uniqueness rests on this index.
            let msg = e.to_string();
            fail_rest(&mut results, &|| {
                StoreError::Unavailable(anyhow::anyhow!("{msg}"))
            });
            return results.into_iter().flatten().collect();
        }
        let Some(first) = news.first() else {
            return Vec::new();
        };
        let room = first.room.as_str().to_owned();
        // Documents to write, keyed by position; a clientId repeated inside the batch is
        // written once and answered for each.
        let mut docs: Vec<(usize, Doc)> = Vec::with_capacity(count);
        let mut same_as: Vec<(usize, usize)> = Vec::new();
        for (i, new) in news.into_iter().enumerate() {
            let id = match &new.client_id {
                Some(c) => client_key(&new.author.id, c),
                None => fresh_id(),
            };
            if let Some((first, _)) = docs.iter().find(|(_, d)| d.id == id) {
                same_as.push((i, *first));
                continue;
            }
            docs.push((
                i,
                Doc {
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
                },
            ));
        }
        let keyed: Vec<String> = docs
            .iter()
            .filter(|(_, d)| d.client_id.is_some())
            .map(|(_, d)| d.id.clone())
            .collect();
        match self.find_ids(keyed).await {
            Ok(found) => docs.retain(|(i, d)| match found.get(&d.id) {
                Some(earlier) => {
                    results[*i] = Some(existing(earlier.clone()));
                    false
                }
                None => true,
            }),
            Err(e) => {
                let msg = e.to_string();
                fail_rest(&mut results, &|| {
                    StoreError::Unavailable(anyhow::anyhow!("{msg}"))
                });
                return results.into_iter().flatten().collect();
            }
        }
        let mut attempt = 0;
        while !docs.is_empty() {
            attempt += 1;
            if attempt > MAX_ATTEMPTS {
                fail_rest(&mut results, &|| {
                    StoreError::Unavailable(anyhow::anyhow!(
                        "could not allocate a seq in room {room}"
                    ))
                });
                break;
            }
            let start = match next.take() {
                Some(seq) => seq,
                None => match self.max_seq_raw(&room).await {
                    Ok(max) => max + 1,
                    Err(e) => {
                        let msg = e.to_string();
                        fail_rest(&mut results, &|| {
                            StoreError::Unavailable(anyhow::anyhow!("{msg}"))
                        });
                        break;
                    }
                },
            };
            for (k, (_, doc)) in docs.iter_mut().enumerate() {
                doc.seq = clamp(start + k as u64);
            }
            let batch: Vec<&Doc> = docs.iter().map(|(_, d)| d).collect();
            match self.comments.insert_many(batch).ordered(true).await {
                Ok(_) => {
                    *next = Some(start + docs.len() as u64);
                    for (i, doc) in docs.drain(..) {
                        results[i] = Some(fresh(doc));
                    }
                }
                Err(e) if is_duplicate_key(&e) => {
                    // Some landed (ordered: those before the conflict): keep them, retry the
                    // rest from the new max after a short random pause.
                    let ids: Vec<String> = docs.iter().map(|(_, d)| d.id.clone()).collect();
                    let found = match self.find_ids(ids).await {
                        Ok(found) => found,
                        Err(e) => {
                            let msg = e.to_string();
                            fail_rest(&mut results, &|| {
                                StoreError::Unavailable(anyhow::anyhow!("{msg}"))
                            });
                            break;
                        }
                    };
                    docs.retain(|(i, d)| match found.get(&d.id) {
                        Some(stored) if stored.seq == d.seq && stored.author_id == d.author_id => {
                            results[*i] = Some(fresh(stored.clone()));
                            false
                        }
                        Some(earlier) => {
                            results[*i] = Some(existing(earlier.clone()));
                            false
                        }
                        None => true,
                    });
                    let pause = 5 + (uuid::Uuid::new_v4().as_u128() % 20) as u64 * attempt as u64;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => {
                    let msg = e.to_string();
                    fail_rest(&mut results, &|| {
                        StoreError::Unavailable(anyhow::anyhow!("{msg}"))
                    });
                    break;
                }
            }
        }
        for (i, first) in same_as {
            results[i] = match &results[first] {
                Some(Ok(inserted)) => Some(Ok(Inserted {
                    comment: inserted.comment.clone(),
                    fresh: false,
                })),
                _ => Some(Err(StoreError::Unavailable(anyhow::anyhow!(
                    "the first post with this clientId failed"
                )))),
            };
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(StoreError::Internal(anyhow::anyhow!(
                        "a post got no result"
                    )))
                })
            })
            .collect()
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
            DeleteOutcome::Deleted {
                seq: u64::try_from(doc.seq).unwrap_or(0),
            }
        })
    }
}

fn clamp(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn fresh(doc: Doc) -> Result<Inserted, StoreError> {
    existing(doc).map(|inserted| Inserted {
        fresh: true,
        ..inserted
    })
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
