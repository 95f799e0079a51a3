//! Where covers and book files live: in MongoDB's GridFS when `MONGO_URL` is set (so every
//! library instance serves every file), else under `DATA_DIR/library/uploads`. Both directions
//! stream: an upload is written chunk by chunk as the multipart body arrives, a download is sent
//! chunk by chunk as it is read, so a file is never whole in memory.

mod disk;
mod gridfs;
mod import;

use actix_files::NamedFile;
use actix_web::web::Bytes;
use futures_util::stream::BoxStream;

pub use disk::DiskFiles;
pub use gridfs::GridFsFiles;
pub use import::{ImportReport, ImportSource, import_loop};

use crate::error::Error;

/// The file storage of the library; cheap to clone.
#[derive(Clone)]
pub enum FileStore {
    /// A folder on local disk (embedded mode).
    Disk(DiskFiles),
    /// A GridFS bucket in the library's MongoDB database.
    GridFs(GridFsFiles),
}

/// A file being written; [`FileWriter::finish`] makes it visible, [`FileWriter::abort`] (or
/// dropping it, for GridFS) throws away what was written.
pub enum FileWriter {
    /// A file on disk.
    Disk(disk::DiskWriter),
    /// A GridFS upload stream.
    GridFs(gridfs::GridFsWriter),
}

/// A stored file opened for reading.
pub enum StoredFile {
    /// On disk: actix serves it (ranges, `Last-Modified`, `ETag`).
    Disk(Box<NamedFile>),
    /// From GridFS: its length and its bytes, read chunk by chunk.
    Stream {
        /// Length in bytes (the `Content-Length`).
        length: u64,
        /// The content.
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    },
}

impl FileStore {
    /// Starts writing the file `name` (a name from [`crate::uploads::generated_name`]).
    pub async fn create(&self, name: &str) -> Result<FileWriter, Error> {
        match self {
            FileStore::Disk(d) => d.create(name).await.map(FileWriter::Disk),
            FileStore::GridFs(g) => g.create(name).await.map(FileWriter::GridFs),
        }
    }

    /// Opens the file `name`, or `None` when there is no such file.
    pub async fn open(&self, name: &str) -> Result<Option<StoredFile>, Error> {
        match self {
            FileStore::Disk(d) => Ok(d.open(name).map(|f| StoredFile::Disk(Box::new(f)))),
            FileStore::GridFs(g) => g.open(name).await,
        }
    }

    /// Deletes the file `name`; a missing file is not an error, a failure is logged.
    pub async fn remove(&self, name: &str) {
        if name.is_empty() {
            return;
        }
        match self {
            FileStore::Disk(d) => d.remove(name).await,
            FileStore::GridFs(g) => g.remove(name).await,
        }
    }
}

impl FileWriter {
    /// Appends `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match self {
            FileWriter::Disk(w) => w.write(bytes).await,
            FileWriter::GridFs(w) => w.write(bytes).await,
        }
    }

    /// Completes the file.
    pub async fn finish(self) -> Result<(), Error> {
        match self {
            FileWriter::Disk(w) => w.finish().await,
            FileWriter::GridFs(w) => w.finish().await,
        }
    }

    /// Throws the partial file away.
    pub async fn abort(self) {
        match self {
            FileWriter::Disk(w) => w.abort().await,
            FileWriter::GridFs(w) => w.abort().await,
        }
    }
}
