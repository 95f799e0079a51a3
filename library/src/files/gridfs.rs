//! Files in GridFS: bucket `uploads` (collections `uploads.files` and `uploads.chunks`) of the
//! library's database. A file's `_id` is its stored name (a string), so every instance finds it
//! by the name in the book, and a second upload of the same name cannot succeed.
//!
//! Uploads go through the driver's `GridFsUploadStream` (it holds at most one 255 KiB chunk).
//! Downloads read the chunks with a small cursor batch instead of the driver's download stream,
//! whose cursor asks for the server's default batch (up to 16 MiB held per download).

use actix_web::web::Bytes;
use futures_util::io::AsyncWriteExt;
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{Binary, Bson, doc};
use mongodb::error::{ErrorKind, GridFsErrorKind};
use mongodb::gridfs::{GridFsBucket, GridFsUploadStream};
use mongodb::options::GridFsBucketOptions;
use mongodb::{Collection, Database};
use serde::Deserialize;

use super::StoredFile;
use crate::error::Error;

/// The bucket name: collections `uploads.files` and `uploads.chunks`.
pub const BUCKET: &str = "uploads";
/// Chunks fetched per cursor batch on download (about 1 MiB at the default chunk size).
const DOWNLOAD_BATCH: u32 = 4;

/// The GridFS bucket of the library; cheap to clone.
#[derive(Clone)]
pub struct GridFsFiles {
    bucket: GridFsBucket,
    chunks: Collection<ChunkDoc>,
}

/// A file being uploaded into GridFS.
pub struct GridFsWriter {
    stream: GridFsUploadStream,
}

#[derive(Debug, Deserialize)]
struct ChunkDoc {
    n: i64,
    data: Binary,
}

fn unavailable(e: impl Into<anyhow::Error>) -> Error {
    Error::Unavailable(e.into())
}

impl GridFsFiles {
    /// The `uploads` bucket of `db`.
    pub fn new(db: &Database) -> Self {
        let options = GridFsBucketOptions::builder()
            .bucket_name(BUCKET.to_owned())
            .build();
        Self {
            bucket: db.gridfs_bucket(options),
            chunks: db.collection(&format!("{BUCKET}.chunks")),
        }
    }

    /// Whether a complete file `name` is stored (the files document is written last).
    pub async fn exists(&self, name: &str) -> Result<bool, Error> {
        let found = self
            .bucket
            .find_one(doc! {"_id": name})
            .await
            .map_err(unavailable)?;
        Ok(found.is_some())
    }

    /// Deletes the chunks of `name` that have no files document (an upload that died).
    pub async fn remove_partial(&self, name: &str) -> Result<(), Error> {
        self.chunks
            .delete_many(doc! {"files_id": name})
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub(super) async fn create(&self, name: &str) -> Result<GridFsWriter, Error> {
        let stream = self
            .bucket
            .open_upload_stream(name)
            .id(Bson::String(name.to_owned()))
            .await
            .map_err(unavailable)?;
        Ok(GridFsWriter { stream })
    }

    pub(super) async fn open(&self, name: &str) -> Result<Option<StoredFile>, Error> {
        let Some(file) = self
            .bucket
            .find_one(doc! {"_id": name})
            .await
            .map_err(unavailable)?
        else {
            tracing::warn!(file = name, "stored file missing in GridFS");
            return Ok(None);
        };
        let length = file.length;
        if length == 0 {
            return Ok(Some(StoredFile::Stream {
                length,
                body: futures_util::stream::empty().boxed(),
            }));
        }
        let cursor = self
            .chunks
            .find(doc! {"files_id": name})
            .sort(doc! {"n": 1})
            .batch_size(DOWNLOAD_BATCH)
            .await
            .map_err(unavailable)?;
        let name = name.to_owned();
        let mut expected_n: i64 = 0;
        let mut sent: u64 = 0;
        let body = cursor
            .map_err(std::io::Error::other)
            .and_then(move |chunk| {
                let result = if chunk.n != expected_n {
                    Err(std::io::Error::other(format!(
                        "GridFS file {name}: chunk {} where {expected_n} was expected",
                        chunk.n
                    )))
                } else {
                    expected_n += 1;
                    sent += chunk.data.bytes.len() as u64;
                    if sent > length {
                        Err(std::io::Error::other(format!(
                            "GridFS file {name}: more bytes than its length {length}"
                        )))
                    } else {
                        Ok(Bytes::from(chunk.data.bytes))
                    }
                };
                std::future::ready(result)
            })
            .boxed();
        Ok(Some(StoredFile::Stream { length, body }))
    }

    pub(super) async fn remove(&self, name: &str) {
        match self.bucket.delete(Bson::String(name.to_owned())).await {
            Ok(()) => {}
            Err(e)
                if matches!(
                    *e.kind,
                    ErrorKind::GridFs(GridFsErrorKind::FileNotFound { .. })
                ) => {}
            Err(e) => tracing::warn!(file = name, error = %e, "cannot delete a file from GridFS"),
        }
    }
}

impl GridFsWriter {
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.stream.write_all(bytes).await.map_err(unavailable)
    }

    pub(super) async fn finish(mut self) -> Result<(), Error> {
        self.stream.close().await.map_err(unavailable)
    }

    pub(super) async fn abort(mut self) {
        if let Err(e) = self.stream.abort().await {
            tracing::warn!(error = %e, "cannot discard a partial GridFS upload");
        }
    }
}
