//! MongoDB: collections `books` (`_id` = sequential int64), `users` (unique `username`),
//! `counters` (`{_id: "books", seq}` bumped with `$inc` for new book ids), `sessions`
//! (`{_id, username, created, expiresAt}`) and `throttle` (`{_id: key, count, resetAt}`), the
//! last two with TTL indexes so ended sessions and windows go away by themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::TryStreamExt;
use mongodb::bson::{self, DateTime, doc, oid::ObjectId};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};
use shared_proto::Role;
use shared_proto::library_api::Book;

use super::{CreateUserError, MAX_SESSIONS_PER_USER, NewBook, SessionRecord, Window};
use crate::domain::UserRecord;
use crate::error::Error;

/// The MongoDB store; cheap to clone.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    indexes_ready: Arc<AtomicBool>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BookDoc {
    #[serde(rename = "_id")]
    id: i64,
    #[serde(default)]
    title: String,
    #[serde(default)]
    authors: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    favorite: i64,
    #[serde(default)]
    file_name_cover: String,
    #[serde(default)]
    file_original_cover: String,
    #[serde(default)]
    file_name_book: String,
    #[serde(default)]
    file_original_book: String,
}

impl BookDoc {
    fn from_book(book: &Book) -> Result<Self, Error> {
        Ok(Self {
            id: i64::try_from(book.id)
                .map_err(|_| Error::BadRequest("book id out of range".into()))?,
            title: book.title.clone(),
            authors: book.authors.clone(),
            description: book.description.clone(),
            favorite: book.favorite,
            file_name_cover: book.file_name_cover.clone(),
            file_original_cover: book.file_original_cover.clone(),
            file_name_book: book.file_name_book.clone(),
            file_original_book: book.file_original_book.clone(),
        })
    }

    fn into_book(self) -> Book {
        Book {
            id: u64::try_from(self.id).unwrap_or_default(),
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

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserDoc {
    #[serde(rename = "_id", default, skip_serializing_if = "Option::is_none")]
    id: Option<ObjectId>,
    username: String,
    #[serde(default)]
    fullname: String,
    #[serde(default)]
    email: String,
    password_hash: String,
    #[serde(default)]
    role: Role,
    created: DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionDoc {
    #[serde(rename = "_id")]
    id: String,
    username: String,
    created: DateTime,
    expires_at: DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WindowDoc {
    #[serde(rename = "_id")]
    id: String,
    count: i64,
    reset_at: DateTime,
}

impl WindowDoc {
    fn window(&self) -> Window {
        Window {
            count: u64::try_from(self.count).unwrap_or_default(),
            reset_ms: self.reset_at.timestamp_millis(),
        }
    }
}

fn unavailable(e: impl Into<anyhow::Error>) -> Error {
    Error::Unavailable(e.into())
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|w| w.iter().any(|e| e.code == 11000)),
        _ => e.to_string().contains("E11000"),
    }
}

impl MongoStore {
    /// Connects (lazily: the driver connects on first use) to the database in `url`'s path,
    /// default `library`, and tries to create the indexes.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(url)
            .await
            .context("invalid MONGO_URL")?;
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(Duration::from_secs(5));
        }
        if options.connect_timeout.is_none() {
            options.connect_timeout = Some(Duration::from_secs(3));
        }
        options.app_name.get_or_insert_with(|| "library".to_owned());
        let name = options
            .default_database
            .clone()
            .unwrap_or_else(|| "library".to_owned());
        let client = Client::with_options(options).context("cannot create the MongoDB client")?;
        let store = Self {
            db: client.database(&name),
            indexes_ready: Arc::new(AtomicBool::new(false)),
        };
        if let Err(e) = store.ensure_indexes().await {
            tracing::warn!(error = ?e, "MongoDB not ready at startup; indexes will be created later");
        }
        Ok(store)
    }

    fn books(&self) -> Collection<BookDoc> {
        self.db.collection("books")
    }

    fn users(&self) -> Collection<UserDoc> {
        self.db.collection("users")
    }

    fn counters(&self) -> Collection<bson::Document> {
        self.db.collection("counters")
    }

    fn sessions(&self) -> Collection<SessionDoc> {
        self.db.collection("sessions")
    }

    fn throttle(&self) -> Collection<WindowDoc> {
        self.db.collection("throttle")
    }

    /// Creates the unique username index and lines the id counter up with the stored books.
    async fn ensure_indexes(&self) -> Result<(), Error> {
        if self.indexes_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let index = IndexModel::builder()
            .keys(doc! {"username": 1})
            .options(IndexOptions::builder().unique(true).build())
            .build();
        self.users()
            .create_index(index)
            .await
            .map_err(unavailable)?;
        self.sessions()
            .create_index(IndexModel::builder().keys(doc! {"username": 1}).build())
            .await
            .map_err(unavailable)?;
        // Expiry is checked on every read; the TTL indexes only keep the collections small.
        for (collection, field) in [("sessions", "expiresAt"), ("throttle", "resetAt")] {
            let ttl = IndexModel::builder()
                .keys(doc! {field: 1})
                .options(
                    IndexOptions::builder()
                        .expire_after(Duration::from_secs(0))
                        .build(),
                )
                .build();
            if let Err(e) = self
                .db
                .collection::<bson::Document>(collection)
                .create_index(ttl)
                .await
            {
                tracing::warn!(error = %e, collection, "cannot create the TTL index");
            }
        }
        self.sync_book_counter().await?;
        self.indexes_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Moves the `books` counter up to the largest stored id (books seeded by init-db.js come
    /// without a counter). Never moves it down.
    async fn sync_book_counter(&self) -> Result<(), Error> {
        let newest = self
            .books()
            .find_one(doc! {})
            .sort(doc! {"_id": -1})
            .await
            .map_err(unavailable)?;
        let max_id = newest.map(|b| b.id).unwrap_or(0);
        let exists = self
            .counters()
            .find_one(doc! {"_id": "books"})
            .await
            .map_err(unavailable)?;
        match exists {
            None => {
                let insert = self
                    .counters()
                    .insert_one(doc! {"_id": "books", "seq": max_id})
                    .await;
                match insert {
                    Ok(_) => Ok(()),
                    Err(e) if is_duplicate_key(&e) => self.raise_counter(max_id).await,
                    Err(e) => Err(unavailable(e)),
                }
            }
            Some(_) => self.raise_counter(max_id).await,
        }
    }

    async fn raise_counter(&self, to: i64) -> Result<(), Error> {
        self.counters()
            .update_one(
                doc! {"_id": "books", "seq": {"$lt": to}},
                doc! {"$set": {"seq": to}},
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn ping(&self) -> Result<(), Error> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map_err(unavailable)?;
        self.ensure_indexes().await
    }

    pub(super) async fn list_books(&self) -> Result<Vec<Book>, Error> {
        let cursor = self
            .books()
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .map_err(unavailable)?;
        let docs: Vec<BookDoc> = cursor.try_collect().await.map_err(unavailable)?;
        Ok(docs.into_iter().map(BookDoc::into_book).collect())
    }

    pub(super) async fn get_book(&self, id: u64) -> Result<Option<Book>, Error> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let found = self
            .books()
            .find_one(doc! {"_id": id})
            .await
            .map_err(unavailable)?;
        Ok(found.map(BookDoc::into_book))
    }

    async fn next_book_id(&self) -> Result<i64, Error> {
        let updated = self
            .counters()
            .find_one_and_update(doc! {"_id": "books"}, doc! {"$inc": {"seq": 1_i64}})
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(unavailable)?;
        let seq = updated
            .as_ref()
            .and_then(|d| d.get("seq"))
            .and_then(|v| match v {
                bson::Bson::Int64(n) => Some(*n),
                bson::Bson::Int32(n) => Some(i64::from(*n)),
                bson::Bson::Double(f) => Some(*f as i64),
                _ => None,
            })
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("counters.books has no numeric seq")))?;
        Ok(seq)
    }

    pub(super) async fn create_book(&self, book: NewBook) -> Result<Book, Error> {
        self.ensure_indexes().await?;
        // The counter hands out each id once; a duplicate only happens when a book was inserted
        // behind the counter's back (seed data), so resync and take the next one.
        for _ in 0..5 {
            let id = self.next_book_id().await?;
            let created = book.clone().with_id(u64::try_from(id).unwrap_or_default());
            match self.books().insert_one(BookDoc::from_book(&created)?).await {
                Ok(_) => return Ok(created),
                Err(e) if is_duplicate_key(&e) => {
                    tracing::warn!(id, "book id already used; resyncing the id counter");
                    self.sync_book_counter().await?;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(Error::Internal(anyhow::anyhow!(
            "could not allocate a book id"
        )))
    }

    pub(super) async fn replace_book(&self, book: &Book) -> Result<Option<Book>, Error> {
        let doc = BookDoc::from_book(book)?;
        let previous = self
            .books()
            .find_one_and_replace(doc! {"_id": doc.id}, &doc)
            .return_document(ReturnDocument::Before)
            .await
            .map_err(unavailable)?;
        Ok(previous.map(BookDoc::into_book))
    }

    /// The database (for the GridFS bucket and the import leases).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Whether a book names `file` as its cover or book file.
    pub async fn references_file(&self, file: &str) -> Result<bool, Error> {
        let found = self
            .books()
            .find_one(doc! {"$or": [{"fileNameCover": file}, {"fileNameBook": file}]})
            .projection(doc! {"_id": 1})
            .await;
        match found {
            Ok(found) => Ok(found.is_some()),
            Err(e) => Err(unavailable(e)),
        }
    }

    pub(super) async fn delete_book(&self, id: u64) -> Result<Option<Book>, Error> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let removed = self
            .books()
            .find_one_and_delete(doc! {"_id": id})
            .await
            .map_err(unavailable)?;
        Ok(removed.map(BookDoc::into_book))
    }

    pub(super) async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, Error> {
        let found = self
            .users()
            .find_one(doc! {"username": username})
            .await
            .map_err(unavailable)?;
        Ok(found.map(|u| UserRecord {
            username: u.username,
            fullname: u.fullname,
            email: u.email,
            password_hash: u.password_hash,
            role: u.role,
            created: shared_proto::timestamp::rfc3339_from_millis(u.created.timestamp_millis()),
        }))
    }

    pub(super) async fn create_user(&self, user: UserRecord) -> Result<(), CreateUserError> {
        self.ensure_indexes().await?;
        let created = time::OffsetDateTime::parse(
            &user.created,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| DateTime::from_millis((t.unix_timestamp_nanos() / 1_000_000) as i64))
        .unwrap_or_else(|_| DateTime::now());
        let doc = UserDoc {
            id: Some(ObjectId::new()),
            username: user.username,
            fullname: user.fullname,
            email: user.email,
            password_hash: user.password_hash,
            role: user.role,
            created,
        };
        match self.users().insert_one(doc).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(CreateUserError::Taken),
            Err(e) => Err(CreateUserError::Store(unavailable(e))),
        }
    }

    pub(super) async fn create_session(&self, session: SessionRecord) -> Result<(), Error> {
        let username = session.username.clone();
        let doc = SessionDoc {
            id: session.id,
            username: session.username,
            created: DateTime::from_millis(session.created_ms),
            expires_at: DateTime::from_millis(session.expires_ms),
        };
        self.sessions().insert_one(doc).await.map_err(unavailable)?;
        let excess: Vec<SessionDoc> = self
            .sessions()
            .find(doc! {"username": &username})
            .sort(doc! {"created": -1, "_id": -1})
            .skip(MAX_SESSIONS_PER_USER as u64)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        if !excess.is_empty() {
            let ids: Vec<&str> = excess.iter().map(|s| s.id.as_str()).collect();
            self.sessions()
                .delete_many(doc! {"_id": {"$in": ids}})
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub(super) async fn find_session(&self, id: &str) -> Result<Option<SessionRecord>, Error> {
        let found = self
            .sessions()
            .find_one(doc! {"_id": id})
            .await
            .map_err(unavailable)?;
        Ok(found.map(|s| SessionRecord {
            id: s.id,
            username: s.username,
            created_ms: s.created.timestamp_millis(),
            expires_ms: s.expires_at.timestamp_millis(),
        }))
    }

    pub(super) async fn delete_session(&self, id: &str) -> Result<(), Error> {
        self.sessions()
            .delete_one(doc! {"_id": id})
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn peek_window(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Window>, Error> {
        let found = self
            .throttle()
            .find_one(doc! {"_id": key, "resetAt": {"$gt": DateTime::from_millis(now_ms)}})
            .await
            .map_err(unavailable)?;
        Ok(found.map(|w| w.window()))
    }

    pub(super) async fn hit_window(
        &self,
        key: &str,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Window, Error> {
        let now = DateTime::from_millis(now_ms);
        let reset = DateTime::from_millis(now_ms.saturating_add(window_ms));
        // A window that ended starts over (whoever gets here first restarts it).
        self.throttle()
            .update_one(
                doc! {"_id": key, "resetAt": {"$lte": now}},
                doc! {"$set": {"count": 0_i64, "resetAt": reset}},
            )
            .await
            .map_err(unavailable)?;
        // Two instances creating the same counter at once: one insert loses with E11000 and
        // the retry increments the winner's document.
        for _ in 0..3 {
            let result = self
                .throttle()
                .find_one_and_update(
                    doc! {"_id": key},
                    doc! {"$inc": {"count": 1_i64}, "$setOnInsert": {"resetAt": reset}},
                )
                .upsert(true)
                .return_document(ReturnDocument::After)
                .await;
            match result {
                Ok(Some(doc)) => return Ok(doc.window()),
                Ok(None) => {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "throttle upsert returned no document"
                    )));
                }
                Err(e) if is_duplicate_key(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(Error::Unavailable(anyhow::anyhow!(
            "throttle counter {key} kept conflicting"
        )))
    }
}
