//! The embedded store: one redb file under `DATA_DIR/library`, JSON values.
//! redb allows one writer at a time, so id allocation inside a write transaction is race-free.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use shared_proto::library_api::Book;

use super::{CreateUserError, DemoData, MAX_SESSIONS_PER_USER, NewBook, SessionRecord, Window};
use crate::domain::UserRecord;
use crate::error::Error;

const BOOKS: TableDefinition<u64, &str> = TableDefinition::new("books");
const USERS: TableDefinition<&str, &str> = TableDefinition::new("users");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Session id -> JSON [`SessionRecord`].
const SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("sessions");
/// Username -> JSON list of that user's session ids, oldest first.
const USER_SESSIONS: TableDefinition<&str, &str> = TableDefinition::new("user_sessions");
/// Throttle key -> (count, window end in Unix ms).
const THROTTLE: TableDefinition<&str, (u64, i64)> = TableDefinition::new("throttle");
const LAST_BOOK_ID: &str = "last_book_id";
/// How often expired throttle windows and sessions are swept, at most.
const SWEEP_EVERY_MS: i64 = 60_000;

/// The embedded store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    last_sweep_ms: Arc<AtomicI64>,
}

fn unavailable(e: impl Into<anyhow::Error>) -> Error {
    Error::Unavailable(e.into())
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/library.redb`; loads the demo data when the store is empty.
    pub async fn open(dir: &Path, demo: Option<DemoData>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("library.redb");
        let db = tokio::task::spawn_blocking(move || -> anyhow::Result<Database> {
            let db = Database::create(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let txn = db.begin_write()?;
            {
                txn.open_table(BOOKS)?;
                txn.open_table(USERS)?;
                txn.open_table(META)?;
                txn.open_table(SESSIONS)?;
                txn.open_table(USER_SESSIONS)?;
                txn.open_table(THROTTLE)?;
            }
            txn.commit()?;
            Ok(db)
        })
        .await??;
        let store = Self {
            db: Arc::new(db),
            last_sweep_ms: Arc::new(AtomicI64::new(0)),
        };
        if let Some(demo) = demo {
            store.seed(demo).await?;
        }
        Ok(store)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("storage task failed: {e}")))?
    }

    async fn seed(&self, demo: DemoData) -> anyhow::Result<()> {
        let seeded = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(unavailable)?;
                let loaded = {
                    let mut books = txn.open_table(BOOKS).map_err(unavailable)?;
                    let mut users = txn.open_table(USERS).map_err(unavailable)?;
                    let mut meta = txn.open_table(META).map_err(unavailable)?;
                    if books.len().map_err(unavailable)? > 0
                        || users.len().map_err(unavailable)? > 0
                    {
                        None
                    } else {
                        let mut last = 0;
                        for book in &demo.books {
                            let json =
                                serde_json::to_string(&without_views(book)).map_err(unavailable)?;
                            books.insert(book.id, json.as_str()).map_err(unavailable)?;
                            last = last.max(book.id);
                        }
                        for user in &demo.users {
                            let json = serde_json::to_string(user).map_err(unavailable)?;
                            users
                                .insert(user.username.as_str(), json.as_str())
                                .map_err(unavailable)?;
                        }
                        meta.insert(LAST_BOOK_ID, last).map_err(unavailable)?;
                        Some((demo.books.len(), demo.users.len()))
                    }
                };
                txn.commit().map_err(unavailable)?;
                Ok(loaded)
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot load demo data: {e:?}"))?;
        if let Some((books, users)) = seeded {
            tracing::info!(
                books,
                users,
                "embedded store was empty: loaded the demo data"
            );
        }
        Ok(())
    }

    pub(super) async fn ping(&self) -> Result<(), Error> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            txn.open_table(META).map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn list_books(&self) -> Result<Vec<Book>, Error> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(BOOKS).map_err(unavailable)?;
            let mut books = Vec::new();
            for entry in table.iter().map_err(unavailable)? {
                let (_, value) = entry.map_err(unavailable)?;
                books.push(decode_book(value.value())?);
            }
            Ok(books)
        })
        .await
    }

    pub(super) async fn get_book(&self, id: u64) -> Result<Option<Book>, Error> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(BOOKS).map_err(unavailable)?;
            let found = table.get(id).map_err(unavailable)?;
            found.map(|v| decode_book(v.value())).transpose()
        })
        .await
    }

    pub(super) async fn create_book(&self, book: NewBook) -> Result<Book, Error> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let created = {
                let mut meta = txn.open_table(META).map_err(unavailable)?;
                let mut books = txn.open_table(BOOKS).map_err(unavailable)?;
                let last_meta = meta
                    .get(LAST_BOOK_ID)
                    .map_err(unavailable)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                let last_key = books
                    .last()
                    .map_err(unavailable)?
                    .map(|(k, _)| k.value())
                    .unwrap_or(0);
                let id = last_meta.max(last_key) + 1;
                let created = book.with_id(id);
                let json =
                    serde_json::to_string(&created).map_err(|e| Error::Internal(e.into()))?;
                books.insert(id, json.as_str()).map_err(unavailable)?;
                meta.insert(LAST_BOOK_ID, id).map_err(unavailable)?;
                created
            };
            txn.commit().map_err(unavailable)?;
            Ok(created)
        })
        .await
    }

    pub(super) async fn replace_book(&self, book: &Book) -> Result<Option<Book>, Error> {
        let book = without_views(book);
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let replaced = {
                let mut books = txn.open_table(BOOKS).map_err(unavailable)?;
                let previous = books
                    .get(book.id)
                    .map_err(unavailable)?
                    .map(|v| decode_book(v.value()))
                    .transpose()?;
                if previous.is_some() {
                    let json =
                        serde_json::to_string(&book).map_err(|e| Error::Internal(e.into()))?;
                    books.insert(book.id, json.as_str()).map_err(unavailable)?;
                }
                previous
            };
            txn.commit().map_err(unavailable)?;
            Ok(replaced)
        })
        .await
    }

    pub(super) async fn delete_book(&self, id: u64) -> Result<Option<Book>, Error> {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let removed = {
                let mut books = txn.open_table(BOOKS).map_err(unavailable)?;
                let removed = books.remove(id).map_err(unavailable)?;
                removed.map(|v| decode_book(v.value())).transpose()?
            };
            txn.commit().map_err(unavailable)?;
            Ok(removed)
        })
        .await
    }

    pub(super) async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, Error> {
        let username = username.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(USERS).map_err(unavailable)?;
            let found = table.get(username.as_str()).map_err(unavailable)?;
            found
                .map(|v| serde_json::from_str(v.value()).map_err(|e| Error::Internal(e.into())))
                .transpose()
        })
        .await
    }

    pub(super) async fn create_user(&self, user: UserRecord) -> Result<(), CreateUserError> {
        let taken = self
            .blocking(move |db| {
                let txn = db.begin_write().map_err(unavailable)?;
                let taken = {
                    let mut users = txn.open_table(USERS).map_err(unavailable)?;
                    if users
                        .get(user.username.as_str())
                        .map_err(unavailable)?
                        .is_some()
                    {
                        true
                    } else {
                        let json =
                            serde_json::to_string(&user).map_err(|e| Error::Internal(e.into()))?;
                        users
                            .insert(user.username.as_str(), json.as_str())
                            .map_err(unavailable)?;
                        false
                    }
                };
                txn.commit().map_err(unavailable)?;
                Ok(taken)
            })
            .await?;
        if taken {
            Err(CreateUserError::Taken)
        } else {
            Ok(())
        }
    }

    pub(super) async fn create_session(&self, session: SessionRecord) -> Result<(), Error> {
        self.blocking(move |db| {
            let json = serde_json::to_string(&session).map_err(|e| Error::Internal(e.into()))?;
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
                let mut by_user = txn.open_table(USER_SESSIONS).map_err(unavailable)?;
                let mut ids: Vec<String> = match by_user
                    .get(session.username.as_str())
                    .map_err(unavailable)?
                {
                    Some(v) => serde_json::from_str(v.value()).unwrap_or_default(),
                    None => Vec::new(),
                };
                sessions
                    .insert(session.id.as_str(), json.as_str())
                    .map_err(unavailable)?;
                ids.push(session.id.clone());
                // Ids whose sessions ended (sign-out, sweep) drop out here too.
                ids.retain(|id| sessions.get(id.as_str()).ok().flatten().is_some());
                let excess = ids.len().saturating_sub(MAX_SESSIONS_PER_USER);
                for old in ids.drain(..excess) {
                    sessions.remove(old.as_str()).map_err(unavailable)?;
                }
                let list = serde_json::to_string(&ids).map_err(|e| Error::Internal(e.into()))?;
                by_user
                    .insert(session.username.as_str(), list.as_str())
                    .map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn find_session(&self, id: &str) -> Result<Option<SessionRecord>, Error> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(SESSIONS).map_err(unavailable)?;
            let found = table.get(id.as_str()).map_err(unavailable)?;
            found
                .map(|v| serde_json::from_str(v.value()).map_err(|e| Error::Internal(e.into())))
                .transpose()
        })
        .await
    }

    pub(super) async fn delete_session(&self, id: &str) -> Result<(), Error> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            {
                let mut table = txn.open_table(SESSIONS).map_err(unavailable)?;
                table.remove(id.as_str()).map_err(unavailable)?;
            }
            txn.commit().map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    pub(super) async fn peek_window(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Window>, Error> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let table = txn.open_table(THROTTLE).map_err(unavailable)?;
            let found = table.get(key.as_str()).map_err(unavailable)?;
            Ok(found
                .map(|v| v.value())
                .filter(|&(_, reset_ms)| reset_ms > now_ms)
                .map(|(count, reset_ms)| Window { count, reset_ms }))
        })
        .await
    }

    pub(super) async fn hit_window(
        &self,
        key: &str,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Window, Error> {
        let key = key.to_owned();
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        let sweep = now_ms - last >= SWEEP_EVERY_MS
            && self
                .last_sweep_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let window = {
                let mut table = txn.open_table(THROTTLE).map_err(unavailable)?;
                if sweep {
                    table
                        .retain(|_, (_, reset_ms)| reset_ms > now_ms)
                        .map_err(unavailable)?;
                    let mut sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
                    sessions
                        .retain(|_, json| {
                            serde_json::from_str::<SessionRecord>(json)
                                .map(|s| s.expires_ms > now_ms)
                                .unwrap_or(false)
                        })
                        .map_err(unavailable)?;
                }
                let current = table
                    .get(key.as_str())
                    .map_err(unavailable)?
                    .map(|v| v.value())
                    .filter(|&(_, reset_ms)| reset_ms > now_ms);
                let window = match current {
                    Some((count, reset_ms)) => Window {
                        count: count.saturating_add(1),
                        reset_ms,
                    },
                    None => Window {
                        count: 1,
                        reset_ms: now_ms.saturating_add(window_ms),
                    },
                };
                table
                    .insert(key.as_str(), (window.count, window.reset_ms))
                    .map_err(unavailable)?;
                window
            };
            txn.commit().map_err(unavailable)?;
            Ok(window)
        })
        .await
    }
}

fn without_views(book: &Book) -> Book {
    Book {
        views: None,
        ..book.clone()
    }
}

fn decode_book(json: &str) -> Result<Book, Error> {
    serde_json::from_str(json)
        .map_err(|e| Error::Internal(anyhow::anyhow!("corrupt book record: {e}")))
}
