//! Books and users behind one interface: MongoDB (`MONGO_URL`) or the embedded redb store.

mod embedded;
mod mongo;

use std::path::Path;

use shared_proto::library_api::Book;

pub use embedded::EmbeddedStore;
pub use mongo::MongoStore;

use crate::domain::UserRecord;
use crate::error::Error;

/// A book as stored: everything but `id` and `views`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewBook {
    /// Title.
    pub title: String,
    /// Authors.
    pub authors: String,
    /// Description.
    pub description: String,
    /// Favorite number.
    pub favorite: i64,
    /// Stored cover name.
    pub file_name_cover: String,
    /// Original cover name.
    pub file_original_cover: String,
    /// Stored book file name.
    pub file_name_book: String,
    /// Original book file name.
    pub file_original_book: String,
}

impl NewBook {
    /// The book with its id.
    pub fn with_id(self, id: u64) -> Book {
        Book {
            id,
            title: self.title,
            authors: self.authors,
            description: self.description,
            favorite: self.favorite,
            file_name_cover: self.file_name_cover,
            file_original_cover: self.file_original_cover,
            file_name_book: self.file_name_book,
            file_original_book: self.file_original_book,
            views: None,
        }
    }
}

/// A signed-in session as stored, so that every instance agrees on it and sign-out ends it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionRecord {
    /// Random id, kept in the (encrypted) session cookie.
    pub id: String,
    /// Whose session it is.
    pub username: String,
    /// Sign-in time, Unix milliseconds.
    pub created_ms: i64,
    /// End of the session, Unix milliseconds.
    pub expires_ms: i64,
}

/// Sessions kept per user: a new sign-in past this ends the oldest one.
pub const MAX_SESSIONS_PER_USER: usize = 50;

/// A throttle counter: attempts in the current window and when the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Attempts counted in the window.
    pub count: u64,
    /// End of the window, Unix milliseconds.
    pub reset_ms: i64,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// The username exists.
    #[error("username is taken")]
    Taken,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] Error),
}

/// The library's storage.
#[derive(Clone)]
pub enum Store {
    /// MongoDB (or a wire-compatible server).
    Mongo(MongoStore),
    /// The embedded redb store under `DATA_DIR/library`.
    Embedded(EmbeddedStore),
}

impl Store {
    /// The name `/readyz` reports when the store does not answer.
    pub fn name(&self) -> &'static str {
        match self {
            Store::Mongo(_) => "mongo",
            Store::Embedded(_) => "embedded",
        }
    }

    /// Whether the store answers.
    pub async fn ping(&self) -> Result<(), Error> {
        match self {
            Store::Mongo(s) => s.ping().await,
            Store::Embedded(s) => s.ping().await,
        }
    }

    /// All books, by id.
    pub async fn list_books(&self) -> Result<Vec<Book>, Error> {
        match self {
            Store::Mongo(s) => s.list_books().await,
            Store::Embedded(s) => s.list_books().await,
        }
    }

    /// One book.
    pub async fn get_book(&self, id: u64) -> Result<Option<Book>, Error> {
        match self {
            Store::Mongo(s) => s.get_book(id).await,
            Store::Embedded(s) => s.get_book(id).await,
        }
    }

    /// Stores a new book under the next sequential id.
    pub async fn create_book(&self, book: NewBook) -> Result<Book, Error> {
        match self {
            Store::Mongo(s) => s.create_book(book).await,
            Store::Embedded(s) => s.create_book(book).await,
        }
    }

    /// Replaces a stored book, answering what it replaced (`None`: no such book). Files the
    /// replaced version named and the new one does not are the caller's to delete, so two
    /// concurrent updates on two instances each delete what they replaced.
    pub async fn replace_book(&self, book: &Book) -> Result<Option<Book>, Error> {
        match self {
            Store::Mongo(s) => s.replace_book(book).await,
            Store::Embedded(s) => s.replace_book(book).await,
        }
    }

    /// Deletes a book, returning what was stored.
    pub async fn delete_book(&self, id: u64) -> Result<Option<Book>, Error> {
        match self {
            Store::Mongo(s) => s.delete_book(id).await,
            Store::Embedded(s) => s.delete_book(id).await,
        }
    }

    /// A user by username.
    pub async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, Error> {
        match self {
            Store::Mongo(s) => s.find_user(username).await,
            Store::Embedded(s) => s.find_user(username).await,
        }
    }

    /// Stores a new user; [`CreateUserError::Taken`] when the username exists.
    pub async fn create_user(&self, user: UserRecord) -> Result<(), CreateUserError> {
        match self {
            Store::Mongo(s) => s.create_user(user).await,
            Store::Embedded(s) => s.create_user(user).await,
        }
    }
}

impl Store {
    /// Stores a new session; past [`MAX_SESSIONS_PER_USER`] for its user, the oldest end.
    pub async fn create_session(&self, session: SessionRecord) -> Result<(), Error> {
        match self {
            Store::Mongo(s) => s.create_session(session).await,
            Store::Embedded(s) => s.create_session(session).await,
        }
    }

    /// A session by id (expired ones too: the caller checks `expires_ms`).
    pub async fn find_session(&self, id: &str) -> Result<Option<SessionRecord>, Error> {
        match self {
            Store::Mongo(s) => s.find_session(id).await,
            Store::Embedded(s) => s.find_session(id).await,
        }
    }

    /// Ends a session (unknown ids are fine).
    pub async fn delete_session(&self, id: &str) -> Result<(), Error> {
        match self {
            Store::Mongo(s) => s.delete_session(id).await,
            Store::Embedded(s) => s.delete_session(id).await,
        }
    }

    /// The throttle counter `key` if its window is still open at `now_ms`.
    pub async fn peek_window(&self, key: &str, now_ms: i64) -> Result<Option<Window>, Error> {
        match self {
            Store::Mongo(s) => s.peek_window(key, now_ms).await,
            Store::Embedded(s) => s.peek_window(key, now_ms).await,
        }
    }

    /// Counts one attempt on `key` (atomically, across instances): a window of `window_ms`
    /// opens with the first attempt after the previous one ended. Answers the counter after it.
    pub async fn hit_window(
        &self,
        key: &str,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Window, Error> {
        match self {
            Store::Mongo(s) => s.hit_window(key, window_ms, now_ms).await,
            Store::Embedded(s) => s.hit_window(key, window_ms, now_ms).await,
        }
    }
}

/// Demo data as found under `demo_dir` (each part optional).
#[derive(Debug, Default)]
pub struct DemoData {
    /// books.json.
    pub books: Vec<Book>,
    /// users.json.
    pub users: Vec<UserRecord>,
}

impl DemoData {
    /// Reads `books.json` and `users.json` from `dir`; missing files give empty lists.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        fn read<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<T>> {
            match std::fs::read(path) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| anyhow::anyhow!("cannot parse {}: {e}", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), "demo data file missing; skipping it");
                    Ok(Vec::new())
                }
                Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
            }
        }
        Ok(Self {
            books: read(&dir.join("books.json"))?,
            users: read(&dir.join("users.json"))?,
        })
    }
}

/// Copies `demo_dir/files/*` into the uploads folder where missing (demo covers and books).
pub fn copy_demo_files(demo_dir: &Path, uploads: &Path) -> anyhow::Result<usize> {
    let source = demo_dir.join("files");
    let entries = match std::fs::read_dir(&source) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", source.display())),
    };
    let mut copied = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !crate::uploads::is_safe_stored_name(name) || !entry.path().is_file() {
            continue;
        }
        let target = uploads.join(name);
        if !target.exists() {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| anyhow::anyhow!("cannot copy demo file {name}: {e}"))?;
            copied += 1;
        }
    }
    Ok(copied)
}
