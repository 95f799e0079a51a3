//! Counts in an embedded redb file. Increments go through one writer thread that commits
//! whatever increments are waiting in a single durable transaction (group commit): atomic,
//! durable before the answer, and fast under concurrency.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use shared_proto::BookId;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("counts");
/// Most increments one transaction commits.
const MAX_BATCH: usize = 4096;

struct IncrRequest {
    id: BookId,
    reply: oneshot::Sender<Result<u64, String>>,
}

/// A redb-backed store.
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Option<mpsc::Sender<IncrRequest>>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Drop for EmbeddedStore {
    /// Stops the writer and waits for it, so the file is closed when the store is gone
    /// (an in-process restart can open it again at once).
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/counts.redb` and starts the writer thread.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("counts.redb");
        let db = Arc::new(open_database(&path)?);
        {
            let txn = db.begin_write()?;
            txn.open_table(COUNTS)?;
            txn.commit()?;
        }
        let (writer, requests) = mpsc::channel(MAX_BATCH * 4);
        let writer_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("counter-writer".to_owned())
            .spawn(move || write_loop(&writer_db, requests))?;
        Ok(Self {
            db,
            writer: Some(writer),
            thread: Some(thread),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one view, durably, and returns the new count.
    pub async fn incr(&self, id: &BookId) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("writer stopped".to_owned()))?;
        writer
            .send(IncrRequest {
                id: id.clone(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".to_owned()))?
            .map_err(StoreError::Unavailable)
    }

    /// Counts of several books; a read transaction sees a consistent snapshot.
    pub fn get_many(&self, ids: &[BookId]) -> Result<Vec<u64>, StoreError> {
        let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable(e.to_string());
        let txn = self.db.begin_read().map_err(|e| unavailable(&e))?;
        let table = txn.open_table(COUNTS).map_err(|e| unavailable(&e))?;
        ids.iter()
            .map(|id| {
                table
                    .get(id.as_str())
                    .map(|v| v.map(|g| g.value()).unwrap_or(0))
                    .map_err(|e| unavailable(&e))
            })
            .collect()
    }
}

/// Opens the file, waiting up to two seconds while a previous instance in this process
/// (an in-process restart) still has it open.
fn open_database(path: &Path) -> anyhow::Result<Database> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return Ok(other?),
        }
    }
}

fn write_loop(db: &Database, mut requests: mpsc::Receiver<IncrRequest>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match apply(db, &batch) {
            Ok(values) => {
                for (request, value) in batch.drain(..).zip(values) {
                    let _ = request.reply.send(Ok(value));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded counter commit failed");
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn apply(db: &Database, batch: &[IncrRequest]) -> Result<Vec<u64>, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let mut values = Vec::with_capacity(batch.len());
    {
        let mut table = txn.open_table(COUNTS).map_err(|e| e.to_string())?;
        for request in batch {
            let key = request.id.as_str();
            let current = table
                .get(key)
                .map_err(|e| e.to_string())?
                .map(|g| g.value())
                .unwrap_or(0);
            let next = current.saturating_add(1);
            table.insert(key, next).map_err(|e| e.to_string())?;
            values.push(next);
        }
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(values)
}
