//! Moving files from disk into GridFS at start-up: uploads of an earlier version (kept under
//! `DATA_DIR/library/uploads`, moved: deleted from disk once stored) and the demo data's files
//! (`DEMO_DIR/files`, copied). Only files a book names are imported, so a deleted book's file
//! never comes back.
//!
//! Several instances may start together on one database (and share the folder): each file is
//! claimed with a lease document in `uploadImports` (`_id` = file name, `until`), so one
//! instance uploads it; an instance that finds the file stored only removes its disk copy. A
//! lease that expires (its holder died mid-upload) is taken over, after the dead holder's
//! partial chunks are removed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mongodb::bson::{DateTime, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::{Collection, Database};
use tokio::io::AsyncReadExt;

use super::GridFsFiles;
use super::gridfs::GridFsWriter;
use crate::error::Error;
use crate::store::MongoStore;
use crate::uploads::is_safe_stored_name;

/// How long a claim on one file lasts (a 50 MiB upload takes seconds).
const LEASE: Duration = Duration::from_secs(300);
/// Pause between attempts while MongoDB does not answer.
const RETRY: Duration = Duration::from_secs(5);
/// Read buffer for a file on disk.
const READ_BUFFER: usize = 64 * 1024;

/// What one import pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Files uploaded into GridFS by this instance.
    pub imported: usize,
    /// Files already in GridFS (imported earlier or by another instance).
    pub already_stored: usize,
    /// Files another instance is importing right now.
    pub claimed_elsewhere: usize,
    /// Files no book names (left where they are).
    pub unreferenced: usize,
}

/// One folder to import.
#[derive(Debug, Clone)]
pub struct ImportSource {
    /// The folder.
    pub dir: PathBuf,
    /// Delete each file from disk once it is stored (uploads), or keep it (demo files).
    pub remove_after: bool,
}

/// Imports `sources` until a pass succeeds (MongoDB may be down at start), logging what it did.
pub async fn import_loop(store: MongoStore, files: GridFsFiles, sources: Vec<ImportSource>) {
    let importer = Importer::new(&store, files);
    for source in sources {
        loop {
            match importer.import_dir(&source).await {
                Ok(report) => {
                    if report != ImportReport::default() {
                        tracing::info!(
                            dir = %source.dir.display(),
                            imported = report.imported,
                            already_stored = report.already_stored,
                            claimed_elsewhere = report.claimed_elsewhere,
                            unreferenced = report.unreferenced,
                            "files from disk imported into MongoDB (GridFS)"
                        );
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(dir = %source.dir.display(), error = ?e, "cannot import files into MongoDB yet; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

struct Importer {
    store: MongoStore,
    files: GridFsFiles,
    leases: Collection<mongodb::bson::Document>,
    owner: String,
}

fn unavailable(e: impl Into<anyhow::Error>) -> Error {
    Error::Unavailable(e.into())
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        _ => e.to_string().contains("E11000"),
    }
}

impl Importer {
    fn new(store: &MongoStore, files: GridFsFiles) -> Self {
        let db: &Database = store.database();
        Self {
            store: store.clone(),
            files,
            leases: db.collection("uploadImports"),
            owner: uuid::Uuid::new_v4().to_string(),
        }
    }

    async fn import_dir(&self, source: &ImportSource) -> Result<ImportReport, Error> {
        let mut report = ImportReport::default();
        let mut entries = match tokio::fs::read_dir(&source.dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "cannot read {}: {e}",
                    source.dir.display()
                )));
            }
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| Error::Internal(e.into()))?
        {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_file = entry.file_type().await.is_ok_and(|t| t.is_file());
            if !is_file || !is_safe_stored_name(name) {
                continue;
            }
            self.import_file(&entry.path(), name, source.remove_after, &mut report)
                .await?;
        }
        Ok(report)
    }

    async fn import_file(
        &self,
        path: &Path,
        name: &str,
        remove_after: bool,
        report: &mut ImportReport,
    ) -> Result<(), Error> {
        if !self.store.references_file(name).await? {
            report.unreferenced += 1;
            return Ok(());
        }
        // Claim before looking: a holder writes the files document before it releases its
        // lease, so a file found missing under our lease is missing. Looking first would race
        // with a holder finishing in between, and our upload would begin by removing its
        // chunks as "partial" (its readers would then get a short body).
        if !self.claim(name).await? {
            report.claimed_elsewhere += 1;
            return Ok(());
        }
        let stored = self.files.exists(name).await;
        if !matches!(stored, Ok(false)) {
            self.release(name).await;
        }
        if stored? {
            report.already_stored += 1;
        } else {
            let uploaded = self.upload(path, name).await;
            self.release(name).await;
            uploaded?;
            report.imported += 1;
            // A book deleted while the file was on its way: do not leave it behind.
            if !self.store.references_file(name).await? {
                super::FileStore::GridFs(self.files.clone())
                    .remove(name)
                    .await;
            }
        }
        if remove_after
            && let Err(e) = tokio::fs::remove_file(path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "imported into MongoDB but cannot delete it from disk");
        }
        Ok(())
    }

    /// Takes the lease on `name` when nobody holds a live one.
    async fn claim(&self, name: &str) -> Result<bool, Error> {
        let now = DateTime::now();
        let until = DateTime::from_millis(now.timestamp_millis() + LEASE.as_millis() as i64);
        let result = self
            .leases
            .update_one(
                doc! {"_id": name, "until": {"$lt": now}},
                doc! {"$set": {"owner": &self.owner, "until": until}},
            )
            .upsert(true)
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn release(&self, name: &str) {
        if let Err(e) = self
            .leases
            .delete_one(doc! {"_id": name, "owner": &self.owner})
            .await
        {
            tracing::warn!(file = name, error = %e, "cannot release an import lease");
        }
    }

    async fn upload(&self, path: &Path, name: &str) -> Result<(), Error> {
        // Chunks of an earlier holder that died mid-upload would collide with ours.
        self.files.remove_partial(name).await?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot open {}: {e}", path.display())))?;
        let mut writer: GridFsWriter = self.files.create(name).await?;
        let mut buffer = vec![0u8; READ_BUFFER];
        loop {
            let read = match file.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    writer.abort().await;
                    return Err(Error::Internal(anyhow::anyhow!(
                        "cannot read {}: {e}",
                        path.display()
                    )));
                }
            };
            if let Err(e) = writer.write(&buffer[..read]).await {
                writer.abort().await;
                return Err(e);
            }
        }
        writer.finish().await
    }
}
