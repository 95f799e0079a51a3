//! The embedded store: one redb file under `DATA_DIR/comments-gateway`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use shared_proto::timestamp::rfc3339_from_millis;
use shared_proto::{Author, Comment, RoomId};

use super::{DeleteOutcome, Inserted, NewComment, Page, Slice, StoreError, client_key, fresh_id};

/// (room, seq) -> JSON row.
const COMMENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("comments");
/// id -> (room, seq).
const IDS: TableDefinition<&str, (&str, u64)> = TableDefinition::new("comment_ids");

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    id: String,
    author_id: String,
    author_name: String,
    text: String,
    created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default)]
    deleted: bool,
}

impl Row {
    fn comment(self, room: &RoomId, seq: u64) -> Comment {
        Comment {
            id: self.id,
            seq,
            room: room.clone(),
            author: Author {
                id: self.author_id,
                name: self.author_name,
            },
            text: self.text,
            created_at: rfc3339_from_millis(self.created_ms),
        }
    }
}

/// Comments in a redb file.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn internal(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Internal(e.into())
}

fn decode(raw: &[u8]) -> Result<Row, StoreError> {
    serde_json::from_slice(raw).map_err(internal)
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/comments.redb`; an empty store gets the demo comments.
    pub fn open(dir: &Path, demo_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("comments.redb");
        // A previous instance in this process may still be letting go of the file.
        let mut attempts = 0;
        let db = loop {
            match Database::create(&path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => break other.with_context(|| format!("opening {}", path.display()))?,
            }
        };
        let store = Self { db: Arc::new(db) };
        let empty = {
            let txn = store.db.begin_write()?;
            let empty = {
                let table = txn.open_table(COMMENTS)?;
                let _ids = txn.open_table(IDS)?;
                table.is_empty()?
            };
            txn.commit()?;
            empty
        };
        if empty {
            let demo = super::read_demo(demo_dir);
            let count = demo.len();
            for item in demo {
                let Ok(text) = shared_proto::CommentText::parse(&item.text) else {
                    continue;
                };
                store.insert_blocking(NewComment {
                    room: item.room,
                    author: Author {
                        id: item.author_id,
                        name: item.author_name,
                    },
                    text,
                    client_id: None,
                    created_ms: super::parse_millis(&item.created_at),
                })?;
            }
            if count > 0 {
                tracing::info!(count, "loaded demo comments into the embedded store");
            }
        }
        Ok(store)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(internal)?
    }

    fn insert_blocking(&self, new: NewComment) -> Result<Inserted, StoreError> {
        insert_in(&self.db, new)
    }

    pub(super) async fn insert(&self, new: NewComment) -> Result<Inserted, StoreError> {
        self.blocking(move |db| insert_in(db, new)).await
    }

    pub(super) async fn max_seq(&self, room: &RoomId) -> Result<u64, StoreError> {
        let room = room.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(COMMENTS).map_err(internal)?;
            last_seq(&table, room.as_str())
        })
        .await
    }

    pub(super) async fn read(&self, room: &RoomId, slice: Slice) -> Result<Page, StoreError> {
        let room = room.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let table = txn.open_table(COMMENTS).map_err(internal)?;
            let r = room.as_str();
            let (low, high, ascending, take) = match slice {
                Slice::Latest { limit } => (0, u64::MAX, false, limit as usize),
                Slice::Before { before, limit } => {
                    if before == 0 {
                        return Ok(Page::default());
                    }
                    (0, before - 1, false, limit as usize)
                }
                Slice::After { after, upto, max } => {
                    let high = match upto {
                        Some(0) => return Ok(Page::default()),
                        Some(upto) => upto - 1,
                        None => u64::MAX,
                    };
                    if after == u64::MAX {
                        return Ok(Page::default());
                    }
                    (after + 1, high, true, max)
                }
            };
            if low > high {
                return Ok(Page::default());
            }
            let range = table.range((r, low)..=(r, high)).map_err(internal)?;
            let mut out = Vec::new();
            let mut more = false;
            let mut push = |key: (&str, u64), raw: &[u8]| -> Result<bool, StoreError> {
                let row = decode(raw)?;
                if row.deleted {
                    return Ok(true);
                }
                if out.len() == take {
                    more = true;
                    return Ok(false);
                }
                out.push(row.comment(&room, key.1));
                Ok(true)
            };
            if ascending {
                for item in range {
                    let (k, v) = item.map_err(internal)?;
                    if !push(k.value(), v.value())? {
                        break;
                    }
                }
            } else {
                for item in range.rev() {
                    let (k, v) = item.map_err(internal)?;
                    if !push(k.value(), v.value())? {
                        break;
                    }
                }
            }
            if !ascending {
                out.reverse();
            }
            Ok(Page {
                comments: out,
                more,
            })
        })
        .await
    }

    pub(super) async fn delete(
        &self,
        room: &RoomId,
        id: &str,
        actor: &str,
        admin: bool,
    ) -> Result<DeleteOutcome, StoreError> {
        let room = room.clone();
        let id = id.to_owned();
        let actor = actor.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            let outcome = {
                let ids = txn.open_table(IDS).map_err(internal)?;
                let mut table = txn.open_table(COMMENTS).map_err(internal)?;
                let found = ids.get(id.as_str()).map_err(internal)?.map(|g| {
                    let (r, s) = g.value();
                    (r.to_owned(), s)
                });
                match found {
                    Some((r, seq)) if r == room.as_str() => {
                        let row = match table.get((r.as_str(), seq)).map_err(internal)? {
                            Some(raw) => Some(decode(raw.value())?),
                            None => None,
                        };
                        match row {
                            Some(row) if !row.deleted => {
                                if row.author_id != actor && !admin {
                                    DeleteOutcome::Forbidden
                                } else {
                                    let updated = Row {
                                        deleted: true,
                                        text: String::new(),
                                        ..row
                                    };
                                    let raw = serde_json::to_vec(&updated).map_err(internal)?;
                                    table
                                        .insert((r.as_str(), seq), raw.as_slice())
                                        .map_err(internal)?;
                                    DeleteOutcome::Deleted
                                }
                            }
                            _ => DeleteOutcome::NotFound,
                        }
                    }
                    _ => DeleteOutcome::NotFound,
                }
            };
            txn.commit().map_err(internal)?;
            Ok(outcome)
        })
        .await
    }
}

fn last_seq(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    room: &str,
) -> Result<u64, StoreError> {
    let mut range = table
        .range((room, 0)..=(room, u64::MAX))
        .map_err(internal)?;
    match range.next_back() {
        Some(item) => {
            let (k, _) = item.map_err(internal)?;
            Ok(k.value().1)
        }
        None => Ok(0),
    }
}

fn insert_in(db: &Database, new: NewComment) -> Result<Inserted, StoreError> {
    let id = match &new.client_id {
        Some(c) => client_key(&new.author.id, c),
        None => fresh_id(),
    };
    let txn = db.begin_write().map_err(internal)?;
    let result = {
        let mut ids = txn.open_table(IDS).map_err(internal)?;
        let mut table = txn.open_table(COMMENTS).map_err(internal)?;
        let earlier = ids.get(id.as_str()).map_err(internal)?.map(|g| {
            let (r, s) = g.value();
            (r.to_owned(), s)
        });
        if let Some((r, seq)) = earlier {
            let room = RoomId::parse(r.as_str()).map_err(internal)?;
            let raw = table
                .get((r.as_str(), seq))
                .map_err(internal)?
                .ok_or_else(|| internal(anyhow::anyhow!("id index points nowhere")))?;
            let row = decode(raw.value())?;
            Inserted {
                comment: row.comment(&room, seq),
                fresh: false,
            }
        } else {
            let room = new.room.as_str();
            let seq = last_seq(&table, room)? + 1;
            let row = Row {
                id: id.clone(),
                author_id: new.author.id,
                author_name: new.author.name,
                text: new.text.into_inner(),
                created_ms: new.created_ms,
                client_id: new.client_id.map(String::from),
                deleted: false,
            };
            let raw = serde_json::to_vec(&row).map_err(internal)?;
            table
                .insert((room, seq), raw.as_slice())
                .map_err(internal)?;
            ids.insert(id.as_str(), (room, seq)).map_err(internal)?;
            Inserted {
                comment: row.comment(&new.room, seq),
                fresh: true,
            }
        }
    };
    txn.commit().map_err(internal)?;
    Ok(result)
}
