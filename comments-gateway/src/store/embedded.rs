//! The embedded store: one redb file under `DATA_DIR/comments-gateway`.
//!
//! Posts and deletes go through one writer thread that applies whatever is waiting (up to
//! [`MAX_BATCH`]) in arrival order in a single durable transaction (group commit), then
//! answers each request in that order. Reads use their own read transactions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use shared_proto::timestamp::rfc3339_from_millis;
use shared_proto::{Author, Comment, RoomId};
use tokio::sync::{mpsc, oneshot};

use super::{
    DeleteOutcome, EditOutcome, Inserted, NewComment, Page, ReactOutcome, Slice, StoreError,
    client_key, fresh_id,
};

mod discussions;

/// (room, seq) -> JSON row.
const COMMENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("comments");
/// id -> (room, seq).
const IDS: TableDefinition<&str, (&str, u64)> = TableDefinition::new("comment_ids");
/// Most writes one transaction commits.
const MAX_BATCH: usize = 1024;
/// redb's page cache (its default is 1 GiB).
const CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Most reads running on the blocking pool at once.
const MAX_READERS: usize = 4;

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
    /// The top-level comment this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    /// Unix ms of the last edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edited_ms: Option<i64>,
    /// Emoji key → count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    reactions: BTreeMap<String, u32>,
    /// Bumped by every edit and reaction change.
    #[serde(default, skip_serializing_if = "is_zero")]
    rev: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
            reactions: super::counts_to_reactions(&self.reactions),
            reply_to: self.reply_to,
            edited_at: self.edited_ms.map(rfc3339_from_millis),
        }
    }
}

/// Comments in a redb file.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Arc<Writer>,
    readers: Arc<tokio::sync::Semaphore>,
}

/// The writer thread and the way to it; the last clone of the store stops it.
struct Writer {
    requests: Option<mpsc::Sender<WriteRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    /// Stops the writer and waits for it, so the file is closed when the store is gone
    /// (an in-process restart can open it again at once).
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One write for the writer thread.
enum Op {
    Insert(NewComment),
    Delete {
        room: RoomId,
        id: String,
        actor: String,
        admin: bool,
    },
    Edit {
        room: RoomId,
        id: String,
        actor: String,
        text: String,
        now_ms: i64,
        window_ms: i64,
    },
    React {
        room: RoomId,
        id: String,
        user: String,
        emoji: shared_proto::Emoji,
        on: bool,
    },
}

/// What a write produced.
enum Done {
    Inserted(Box<Inserted>),
    Deleted(DeleteOutcome),
    Edited(Box<EditOutcome>),
    Reacted(ReactOutcome),
}

fn wrong_answer() -> StoreError {
    internal(anyhow::anyhow!("the writer answered another kind of write"))
}

struct WriteRequest {
    op: Op,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

fn internal(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Internal(e.into())
}

fn decode(raw: &[u8]) -> Result<Row, StoreError> {
    serde_json::from_slice(raw).map_err(internal)
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable(anyhow::anyhow!("embedded store writer stopped"))
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/comments.redb`; an empty store gets the demo comments.
    pub fn open(dir: &Path, demo_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("comments.redb");
        // A previous instance in this process may still be letting go of the file.
        let mut attempts = 0;
        let db = loop {
            match redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(&path)
            {
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                other => break other.with_context(|| format!("opening {}", path.display()))?,
            }
        };
        let db = Arc::new(db);
        let empty = {
            let txn = db.begin_write()?;
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
            let ops: Vec<Op> = demo
                .into_iter()
                .filter_map(|item| {
                    let text = shared_proto::CommentText::parse(&item.text).ok()?;
                    Some(Op::Insert(NewComment {
                        room: item.room,
                        author: Author {
                            id: item.author_id,
                            name: item.author_name,
                        },
                        text,
                        client_id: None,
                        created_ms: super::parse_millis(&item.created_at),
                        reply_to: None,
                    }))
                })
                .collect();
            let count = ops.len();
            for result in run_batch(&db, &ops) {
                result?;
            }
            if count > 0 {
                tracing::info!(count, "loaded demo comments into the embedded store");
            }
        }
        let (requests, incoming) = mpsc::channel(MAX_BATCH * 4);
        let writer_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("comments-writer".to_owned())
            .spawn(move || write_loop(&writer_db, incoming))
            .context("starting the embedded store writer")?;
        Ok(Self {
            db,
            writer: Arc::new(Writer {
                requests: Some(requests),
                thread: Some(thread),
            }),
            readers: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
        })
    }

    /// Hands a write to the writer thread and waits for its committed result.
    async fn write(&self, op: Op) -> Result<Done, StoreError> {
        let requests = self.writer.requests.as_ref().ok_or_else(writer_stopped)?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    /// Runs a read on the blocking pool, at most [`MAX_READERS`] at once so a burst of
    /// reads (many subscribes) does not start a blocking thread each.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _permit = self.readers.acquire().await.map_err(internal)?;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(internal)?
    }

    #[cfg(test)]
    pub(super) async fn insert(&self, new: NewComment) -> Result<Inserted, StoreError> {
        match self.write(Op::Insert(new)).await? {
            Done::Inserted(inserted) => Ok(*inserted),
            _ => Err(wrong_answer()),
        }
    }

    /// Posts in the order given (they reach the writer thread in that order and share its
    /// group commits).
    pub(super) async fn insert_batch(
        &self,
        news: Vec<NewComment>,
    ) -> Vec<Result<Inserted, StoreError>> {
        let mut answers = Vec::with_capacity(news.len());
        for new in news {
            let (reply, answer) = oneshot::channel();
            let sent = match self.writer.requests.as_ref() {
                Some(requests) => requests
                    .send(WriteRequest {
                        op: Op::Insert(new),
                        reply,
                    })
                    .await
                    .is_ok(),
                None => false,
            };
            answers.push(sent.then_some(answer));
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            let result = match answer {
                Some(answer) => match answer.await {
                    Ok(Ok(Done::Inserted(inserted))) => Ok(*inserted),
                    Ok(Ok(_)) => Err(wrong_answer()),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(writer_stopped()),
                },
                None => Err(writer_stopped()),
            };
            results.push(result);
        }
        results
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
        let op = Op::Delete {
            room: room.clone(),
            id: id.to_owned(),
            actor: actor.to_owned(),
            admin,
        };
        match self.write(op).await? {
            Done::Deleted(outcome) => Ok(outcome),
            _ => Err(wrong_answer()),
        }
    }

    pub(super) async fn edit(
        &self,
        room: &RoomId,
        id: &str,
        actor: &str,
        text: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<EditOutcome, StoreError> {
        let op = Op::Edit {
            room: room.clone(),
            id: id.to_owned(),
            actor: actor.to_owned(),
            text: text.to_owned(),
            now_ms,
            window_ms,
        };
        match self.write(op).await? {
            Done::Edited(outcome) => Ok(*outcome),
            _ => Err(wrong_answer()),
        }
    }

    pub(super) async fn react(
        &self,
        room: &RoomId,
        id: &str,
        user: &str,
        emoji: shared_proto::Emoji,
        on: bool,
    ) -> Result<ReactOutcome, StoreError> {
        let op = Op::React {
            room: room.clone(),
            id: id.to_owned(),
            user: user.to_owned(),
            emoji,
            on,
        };
        match self.write(op).await? {
            Done::Reacted(outcome) => Ok(outcome),
            _ => Err(wrong_answer()),
        }
    }
}

/// Takes everything waiting (up to [`MAX_BATCH`]), commits it at once, answers in order.
fn write_loop(db: &Database, mut incoming: mpsc::Receiver<WriteRequest>) {
    let mut batch: Vec<WriteRequest> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = incoming.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.drain(..).map(|r| (r.op, r.reply)).unzip();
        for (reply, result) in replies.into_iter().zip(run_batch(db, &ops)) {
            let _ = reply.send(result);
        }
    }
}

/// Why a batch was not committed.
enum BatchFailure {
    /// One write failed before the commit; nothing was written.
    Op(StoreError),
    /// The transaction itself failed (begin or commit).
    Commit(String),
}

/// Applies `ops` in one transaction; one result per op, in order. If one write fails
/// before the commit, each op is retried in its own transaction so only the failing one
/// fails (as if each had been committed alone).
fn run_batch(db: &Database, ops: &[Op]) -> Vec<Result<Done, StoreError>> {
    match apply(db, ops) {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(BatchFailure::Op(e)) if ops.len() == 1 => vec![Err(e)],
        Err(BatchFailure::Op(e)) => {
            tracing::warn!(error = %e, count = ops.len(), "embedded batch failed; writing one by one");
            ops.iter()
                .map(|op| match apply(db, std::slice::from_ref(op)) {
                    Ok(mut done) => done
                        .pop()
                        .ok_or_else(|| internal(anyhow::anyhow!("no result"))),
                    Err(BatchFailure::Op(e)) => Err(e),
                    Err(BatchFailure::Commit(e)) => Err(internal(anyhow::anyhow!(e))),
                })
                .collect()
        }
        Err(BatchFailure::Commit(e)) => {
            tracing::error!(error = %e, count = ops.len(), "embedded store commit failed");
            ops.iter()
                .map(|_| Err(internal(anyhow::anyhow!("{e}"))))
                .collect()
        }
    }
}

fn apply(db: &Database, ops: &[Op]) -> Result<Vec<Done>, BatchFailure> {
    let txn = db
        .begin_write()
        .map_err(|e| BatchFailure::Commit(e.to_string()))?;
    let mut done = Vec::with_capacity(ops.len());
    {
        let mut ids = txn
            .open_table(IDS)
            .map_err(|e| BatchFailure::Commit(e.to_string()))?;
        let mut table = txn
            .open_table(COMMENTS)
            .map_err(|e| BatchFailure::Commit(e.to_string()))?;
        let mut reactors = txn
            .open_table(discussions::REACTORS)
            .map_err(|e| BatchFailure::Commit(e.to_string()))?;
        for op in ops {
            let result = match op {
                Op::Insert(new) => {
                    insert_in(&mut ids, &mut table, new).map(|i| Done::Inserted(Box::new(i)))
                }
                Op::Delete {
                    room,
                    id,
                    actor,
                    admin,
                } => delete_in(&ids, &mut table, room, id, actor, *admin).map(Done::Deleted),
                Op::Edit {
                    room,
                    id,
                    actor,
                    text,
                    now_ms,
                    window_ms,
                } => discussions::edit_in(
                    &ids, &mut table, room, id, actor, text, *now_ms, *window_ms,
                )
                .map(|e| Done::Edited(Box::new(e))),
                Op::React {
                    room,
                    id,
                    user,
                    emoji,
                    on,
                } => discussions::react_in(
                    &ids,
                    &mut table,
                    &mut reactors,
                    room,
                    id,
                    user,
                    *emoji,
                    *on,
                )
                .map(Done::Reacted),
            };
            done.push(result.map_err(BatchFailure::Op)?);
        }
    }
    txn.commit()
        .map_err(|e| BatchFailure::Commit(e.to_string()))?;
    Ok(done)
}

fn delete_in(
    ids: &redb::Table<&'static str, (&'static str, u64)>,
    table: &mut redb::Table<(&'static str, u64), &'static [u8]>,
    room: &RoomId,
    id: &str,
    actor: &str,
    admin: bool,
) -> Result<DeleteOutcome, StoreError> {
    let found = ids.get(id).map_err(internal)?.map(|g| {
        let (r, s) = g.value();
        (r.to_owned(), s)
    });
    let Some((r, seq)) = found else {
        return Ok(DeleteOutcome::NotFound);
    };
    if r != room.as_str() {
        return Ok(DeleteOutcome::NotFound);
    }
    let row = match table.get((r.as_str(), seq)).map_err(internal)? {
        Some(raw) => Some(decode(raw.value())?),
        None => None,
    };
    match row {
        Some(row) if !row.deleted => {
            if row.author_id != actor && !admin {
                Ok(DeleteOutcome::Forbidden)
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
                Ok(DeleteOutcome::Deleted { seq })
            }
        }
        _ => Ok(DeleteOutcome::NotFound),
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

fn insert_in(
    ids: &mut redb::Table<&'static str, (&'static str, u64)>,
    table: &mut redb::Table<(&'static str, u64), &'static [u8]>,
    new: &NewComment,
) -> Result<Inserted, StoreError> {
    let id = match &new.client_id {
        Some(c) => client_key(&new.author.id, c),
        None => fresh_id(),
    };
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
        return Ok(Inserted {
            comment: row.comment(&room, seq),
            fresh: false,
        });
    }
    let room = new.room.as_str();
    let seq = last_seq(table, room)? + 1;
    let row = Row {
        id: id.clone(),
        author_id: new.author.id.clone(),
        author_name: new.author.name.clone(),
        text: new.text.as_str().to_owned(),
        created_ms: new.created_ms,
        client_id: new.client_id.as_ref().map(|c| c.as_str().to_owned()),
        deleted: false,
        reply_to: new.reply_to.clone(),
        edited_ms: None,
        reactions: BTreeMap::new(),
        rev: 0,
    };
    let raw = serde_json::to_vec(&row).map_err(internal)?;
    table
        .insert((room, seq), raw.as_slice())
        .map_err(internal)?;
    ids.insert(id.as_str(), (room, seq)).map_err(internal)?;
    Ok(Inserted {
        comment: row.comment(&new.room, seq),
        fresh: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_proto::{ClientId, CommentText};

    fn post(room: &RoomId, author: &str, text: &str, client_id: Option<&str>) -> NewComment {
        NewComment {
            room: room.clone(),
            author: Author {
                id: author.to_owned(),
                name: author.to_owned(),
            },
            text: CommentText::parse(text).expect("valid text"),
            client_id: client_id.map(|c| ClientId::parse(c).expect("valid client id")),
            created_ms: 1_700_000_000_000,
            reply_to: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_posts_share_commits_and_keep_the_semantics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let no_demo = dir.path().join("no-demo");
        let store = EmbeddedStore::open(&dir.path().join("db"), &no_demo).expect("open");
        let room = RoomId::parse("batch-room").expect("room");

        // Many concurrent posts (several batches) get seqs 1..=n with no gap or repeat,
        // and the same clientId posted concurrently is stored once.
        let mut tasks = Vec::new();
        for i in 0..300 {
            let store = store.clone();
            let new = if i % 3 == 0 {
                post(&room, "JD", "same", Some("dup"))
            } else {
                post(&room, "JD", &format!("post {i}"), None)
            };
            tasks.push(tokio::spawn(async move { store.insert(new).await }));
        }
        let mut seqs = Vec::new();
        let mut dup_ids = std::collections::BTreeSet::new();
        let mut fresh_dups = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            let inserted = task.await.expect("join").expect("insert");
            if i % 3 == 0 {
                dup_ids.insert((inserted.comment.id.clone(), inserted.comment.seq));
                fresh_dups += usize::from(inserted.fresh);
            }
            if inserted.fresh {
                seqs.push(inserted.comment.seq);
            }
        }
        seqs.sort_unstable();
        let expected: Vec<u64> = (1..=201).collect();
        assert_eq!(seqs, expected);
        assert_eq!(dup_ids.len(), 1);
        assert_eq!(fresh_dups, 1);
        assert_eq!(store.max_seq(&room).await.expect("max"), 201);

        // Deletes: forbidden for others, soft, and the seq is not reused.
        let (dup_id, dup_seq) = dup_ids.into_iter().next().expect("one");
        let outcome = store.delete(&room, &dup_id, "someone", false).await;
        assert_eq!(outcome.expect("delete"), DeleteOutcome::Forbidden);
        let outcome = store.delete(&room, &dup_id, "JD", false).await;
        assert_eq!(
            outcome.expect("delete"),
            DeleteOutcome::Deleted { seq: dup_seq }
        );
        let outcome = store.delete(&room, &dup_id, "JD", true).await;
        assert_eq!(outcome.expect("delete"), DeleteOutcome::NotFound);
        let page = store
            .read(&room, Slice::Latest { limit: 500 })
            .await
            .expect("read");
        assert_eq!(page.comments.len(), 200);
        assert!(page.comments.iter().all(|c| c.seq != dup_seq));
        let next = store
            .insert(post(&room, "JD", "after", None))
            .await
            .expect("insert");
        assert_eq!(next.comment.seq, 202);

        // Dropping the store closes the file: it opens again at once, with the data.
        drop(store);
        let store = EmbeddedStore::open(&dir.path().join("db"), &no_demo).expect("reopen");
        assert_eq!(store.max_seq(&room).await.expect("max"), 202);
    }
}
