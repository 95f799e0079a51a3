//! Book operations shared by the JSON API and the pages: create, update, delete, serve files.

use actix_web::http::header::{self, ContentDisposition, DispositionType};
use actix_web::{HttpRequest, HttpResponse};
use shared_proto::library_api::Book;

use crate::auth::Hashing;
use crate::clients::{CounterClient, GatewayClient};
use crate::error::Error;
use crate::files::{FileStore, StoredFile};
use crate::settings::Settings;
use crate::store::{NewBook, Store};
use crate::throttle::Throttle;
use crate::uploads::{self, BookUpload};

/// What every handler shares.
pub struct AppState {
    /// Books and users.
    pub store: Store,
    /// The counter service.
    pub counter: CounterClient,
    /// The gateway's HTTP reads.
    pub gateway: GatewayClient,
    /// Where covers and book files live (GridFS or the uploads folder).
    pub files: FileStore,
    /// The settings the app was built with.
    pub settings: Settings,
    /// Sign-in and sign-up throttling.
    pub throttle: Throttle,
    /// Bounded password hashing.
    pub hashing: Hashing,
}

impl AppState {
    /// All books with their view counts (when counter answers).
    pub async fn books_with_views(&self) -> Result<Vec<Book>, Error> {
        let mut books = self.store.list_books().await?;
        let ids: Vec<u64> = books.iter().map(|b| b.id).collect();
        if !ids.is_empty() {
            let counts = self.counter.counts(&ids).await;
            if !counts.is_empty() {
                for book in &mut books {
                    book.views = Some(counts.get(&book.id).copied().unwrap_or(0));
                }
            }
        }
        Ok(books)
    }

    /// One book with its view count (no increment), or 404.
    pub async fn book_with_views(&self, id: u64) -> Result<Book, Error> {
        let mut book = self.existing_book(id).await?;
        let counts = self.counter.counts(&[id]).await;
        if !counts.is_empty() {
            book.views = Some(counts.get(&id).copied().unwrap_or(0));
        }
        Ok(book)
    }

    /// Creates a book from an upload (files already on disk).
    pub async fn create_book(&self, upload: BookUpload) -> Result<Book, Error> {
        let result = async {
            let fields = upload.fields.clone().validate(true)?;
            let (cover_name, cover_original) = file_parts(&upload.cover);
            let (book_name, book_original) = file_parts(&upload.book);
            let new = NewBook {
                title: fields.title.unwrap_or_default(),
                authors: fields.authors.unwrap_or_default(),
                description: fields.description.unwrap_or_default(),
                favorite: fields.favorite.unwrap_or(0),
                file_name_cover: cover_name,
                file_original_cover: cover_original,
                file_name_book: book_name,
                file_original_book: book_original,
            };
            self.store.create_book(new).await
        }
        .await;
        if result.is_err() {
            upload.discard(&self.files).await;
        }
        let book = result?;
        tracing::info!(book_id = book.id, "book created");
        Ok(book)
    }

    /// Updates a book: fields sent replace the stored ones, files sent replace the old files.
    pub async fn update_book(&self, id: u64, upload: BookUpload) -> Result<Book, Error> {
        let result = async {
            let existing = self.existing_book(id).await?;
            let fields = upload.fields.clone().validate(false)?;
            let mut updated = existing.clone();
            if let Some(title) = fields.title {
                updated.title = title;
            }
            if let Some(authors) = fields.authors {
                updated.authors = authors;
            }
            if let Some(description) = fields.description {
                updated.description = description;
            }
            if let Some(favorite) = fields.favorite {
                updated.favorite = favorite;
            }
            if let Some(cover) = &upload.cover {
                updated.file_name_cover = cover.stored_name.clone();
                updated.file_original_cover = cover.original_name.clone();
            }
            if let Some(file) = &upload.book {
                updated.file_name_book = file.stored_name.clone();
                updated.file_original_book = file.original_name.clone();
            }
            updated.views = None;
            let replaced = self
                .store
                .replace_book(&updated)
                .await?
                .ok_or_else(|| Error::book_not_found(id))?;
            Ok((replaced, updated))
        }
        .await;
        match result {
            Ok((old, new)) => {
                if old.file_name_cover != new.file_name_cover {
                    self.files.remove(&old.file_name_cover).await;
                }
                if old.file_name_book != new.file_name_book {
                    self.files.remove(&old.file_name_book).await;
                }
                tracing::info!(book_id = id, "book updated");
                Ok(new)
            }
            Err(e) => {
                upload.discard(&self.files).await;
                Err(e)
            }
        }
    }

    /// Deletes a book and its files.
    pub async fn delete_book(&self, id: u64) -> Result<Book, Error> {
        let book = self
            .store
            .delete_book(id)
            .await?
            .ok_or_else(|| Error::book_not_found(id))?;
        for name in [&book.file_name_cover, &book.file_name_book] {
            self.files.remove(name).await;
        }
        tracing::info!(book_id = id, "book deleted");
        Ok(book)
    }

    /// The stored book `id`, or the not-found error.
    async fn existing_book(&self, id: u64) -> Result<Book, Error> {
        self.store
            .get_book(id)
            .await?
            .ok_or_else(|| Error::book_not_found(id))
    }

    /// The book file as an attachment under its original name, or 404.
    pub async fn download(&self, req: &HttpRequest, id: u64) -> Result<HttpResponse, Error> {
        let book = self.existing_book(id).await?;
        let file = self
            .open_stored(&book.file_name_book, "this book has no file")
            .await?;
        let original = if book.file_original_book.is_empty() {
            book.file_name_book.clone()
        } else {
            book.file_original_book.clone()
        };
        let content_type = mime_guess::from_path(&book.file_name_book).first_or_octet_stream();
        Ok(respond(
            req,
            file,
            &book.file_name_book,
            content_type,
            uploads::attachment(&original),
        ))
    }

    /// The cover image; anything that is not a raster image is sent as a download.
    pub async fn cover(&self, req: &HttpRequest, id: u64) -> Result<HttpResponse, Error> {
        let book = self.existing_book(id).await?;
        let file = self
            .open_stored(&book.file_name_cover, "this book has no cover")
            .await?;
        let mime = mime_guess::from_path(&book.file_name_cover).first_or_octet_stream();
        let image = mime.type_() == "image" && mime.subtype() != "svg";
        let (content_type, disposition) = if image {
            (
                mime,
                ContentDisposition {
                    disposition: DispositionType::Inline,
                    parameters: vec![],
                },
            )
        } else {
            (
                mime_guess::mime::APPLICATION_OCTET_STREAM,
                uploads::attachment(&book.file_original_cover),
            )
        };
        Ok(respond(
            req,
            file,
            &book.file_name_cover,
            content_type,
            disposition,
        ))
    }

    async fn open_stored(&self, name: &str, missing: &str) -> Result<StoredFile, Error> {
        if !uploads::is_safe_stored_name(name) {
            return Err(Error::NotFound(missing.to_owned()));
        }
        self.files
            .open(name)
            .await?
            .ok_or_else(|| Error::NotFound(missing.to_owned()))
    }
}

/// The response for a stored file. A stored name is never reused for other content (each
/// upload gets a fresh one), so it is the GridFS file's `ETag`.
fn respond(
    req: &HttpRequest,
    file: StoredFile,
    stored_name: &str,
    content_type: mime_guess::Mime,
    disposition: ContentDisposition,
) -> HttpResponse {
    let mut response = match file {
        StoredFile::Disk(file) => file
            .set_content_type(content_type)
            .set_content_disposition(disposition)
            .into_response(req),
        StoredFile::Stream { length, body } => {
            let etag = format!("\"{stored_name}\"");
            let cached = req
                .headers()
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
            let mut builder = if cached {
                HttpResponse::NotModified()
            } else {
                HttpResponse::Ok()
            };
            builder
                .insert_header((header::ETAG, etag))
                .insert_header((header::CACHE_CONTROL, "no-cache"));
            if cached {
                builder.finish()
            } else {
                builder
                    .insert_header((header::CONTENT_TYPE, content_type.to_string()))
                    .insert_header((header::CONTENT_DISPOSITION, disposition))
                    .no_chunking(length)
                    .streaming(body)
            }
        }
    };
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

fn file_parts(file: &Option<uploads::StoredFile>) -> (String, String) {
    file.as_ref()
        .map(|f| (f.stored_name.clone(), f.original_name.clone()))
        .unwrap_or_default()
}
