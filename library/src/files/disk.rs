//! Files in a local folder (embedded mode): `DATA_DIR/library/uploads/<stored name>`.

use std::path::{Path, PathBuf};

use actix_files::NamedFile;
use tokio::io::AsyncWriteExt;

use crate::error::Error;
use crate::uploads::stored_path;

/// The uploads folder.
#[derive(Clone, Debug)]
pub struct DiskFiles {
    dir: PathBuf,
}

/// A file being written under the uploads folder.
pub struct DiskWriter {
    file: tokio::fs::File,
    path: PathBuf,
}

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::Internal(anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

impl DiskFiles {
    /// Files under `dir` (created when missing).
    pub fn open_dir(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        Ok(Self { dir })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) async fn create(&self, name: &str) -> Result<DiskWriter, Error> {
        let path = stored_path(&self.dir, name)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("unsafe stored name {name:?}")))?;
        let file = tokio::fs::File::create(&path).await.map_err(|e| {
            Error::Internal(anyhow::anyhow!("cannot create {}: {e}", path.display()))
        })?;
        Ok(DiskWriter { file, path })
    }

    pub(super) fn open(&self, name: &str) -> Option<NamedFile> {
        let path = stored_path(&self.dir, name)?;
        match NamedFile::open(&path) {
            Ok(file) => Some(file),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "stored file missing");
                None
            }
        }
    }

    pub(super) async fn remove(&self, name: &str) {
        if let Some(path) = stored_path(&self.dir, name)
            && let Err(e) = tokio::fs::remove_file(&path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, file = %path.display(), "cannot delete an upload");
        }
    }
}

impl DiskWriter {
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file
            .write_all(bytes)
            .await
            .map_err(|e| write_error(&self.path, e))
    }

    pub(super) async fn finish(mut self) -> Result<(), Error> {
        self.file
            .flush()
            .await
            .map_err(|e| write_error(&self.path, e))
    }

    pub(super) async fn abort(self) {
        drop(self.file);
        if let Err(e) = tokio::fs::remove_file(&self.path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, file = %self.path.display(), "cannot delete a partial upload");
        }
    }
}
