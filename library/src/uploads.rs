//! Book uploads: multipart forms streamed into the file store (GridFS or the uploads folder)
//! under generated names, with size limits. The original file name is kept only as data (for
//! downloads), never used for a path or a stored name.

use std::path::{Path, PathBuf};

use actix_multipart::Multipart;
use actix_web::http::header::{
    Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
};
use futures_util::StreamExt;

use crate::domain::{BookFields, parse_favorite};
use crate::error::Error;
use crate::files::FileStore;

/// Largest text field in a multipart form.
const MAX_TEXT_FIELD: usize = 64 * 1024;
/// Most parts in one multipart form.
const MAX_PARTS: usize = 32;
/// After the limit is hit, this much more is read and dropped so the client gets the 413
/// instead of a reset connection; bigger bodies are cut off.
const DRAIN_ALLOWANCE: u64 = 64 * 1024 * 1024;

/// A file written to the file store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// Generated name in the file store.
    pub stored_name: String,
    /// The client's file name, cleaned, for display and downloads.
    pub original_name: String,
}

/// A parsed book form (multipart).
#[derive(Debug, Default)]
pub struct BookUpload {
    /// Text fields.
    pub fields: BookFields,
    /// `fileCover`, when a non-empty file was sent.
    pub cover: Option<StoredFile>,
    /// `fileBook`, when a non-empty file was sent.
    pub book: Option<StoredFile>,
    /// `csrf_token`, for the HTML forms.
    pub csrf_token: Option<String>,
}

impl BookUpload {
    /// Removes the files this upload wrote (after a failure later on).
    pub async fn discard(&self, files: &FileStore) {
        for file in [&self.cover, &self.book].into_iter().flatten() {
            files.remove(&file.stored_name).await;
        }
    }
}

/// Whether `name` is a plain file name we could have generated (or a demo file name): letters,
/// digits, `.`, `_`, `-`, no leading dot, no `..`.
pub fn is_safe_stored_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The path of a stored file, or `None` when the stored name is not a plain file name.
pub fn stored_path(uploads: &Path, name: &str) -> Option<PathBuf> {
    is_safe_stored_name(name).then(|| uploads.join(name))
}

/// The client's file name reduced to a harmless display name: last path segment, no control
/// or reserved characters, at most 200 characters.
pub fn clean_original_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned = sanitize_filename::sanitize(last);
    let cleaned: String = cleaned
        .trim()
        .trim_start_matches('.')
        .chars()
        .take(200)
        .collect();
    if cleaned.is_empty() {
        "file".to_owned()
    } else {
        cleaned
    }
}

/// A fresh stored name keeping only a short alphanumeric extension of the original.
pub fn generated_name(original: &str) -> String {
    let ext = Path::new(original)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .filter(|e| !e.is_empty() && e.len() <= 10 && e.chars().all(|c| c.is_ascii_alphanumeric()));
    let id = uuid::Uuid::new_v4().simple().to_string();
    match ext {
        Some(ext) => format!("{id}.{ext}"),
        None => id,
    }
}

/// `attachment; filename="ascii fallback"; filename*=UTF-8''percent-encoded` (RFC 6266/5987).
pub fn attachment(original: &str) -> ContentDisposition {
    let fallback: String = original
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut parameters = vec![DispositionParam::Filename(fallback)];
    if !original.is_ascii() {
        parameters.push(DispositionParam::FilenameExt(ExtendedValue {
            charset: Charset::Ext("UTF-8".to_owned()),
            language_tag: None,
            value: original.as_bytes().to_vec(),
        }));
    }
    ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters,
    }
}

/// Reads a multipart book form, streaming `fileCover` / `fileBook` into `files`.
/// Files over `limit` bytes (each, and all together) give [`Error::TooLarge`]; on any error
/// the files written so far are removed.
pub async fn read_book_form(
    mut multipart: Multipart,
    files: &FileStore,
    limit: u64,
) -> Result<BookUpload, Error> {
    let mut upload = BookUpload::default();
    let result = read_parts(&mut multipart, files, limit, &mut upload).await;
    match result {
        Ok(()) => Ok(upload),
        Err(e) => {
            upload.discard(files).await;
            if matches!(e, Error::TooLarge(_)) {
                drain(&mut multipart).await;
            }
            Err(e)
        }
    }
}

async fn drain(multipart: &mut Multipart) {
    let mut drained: u64 = 0;
    while let Some(Ok(mut field)) = multipart.next().await {
        while let Some(Ok(chunk)) = field.next().await {
            drained += chunk.len() as u64;
            if drained > DRAIN_ALLOWANCE {
                return;
            }
        }
    }
}

async fn read_parts(
    multipart: &mut Multipart,
    files: &FileStore,
    limit: u64,
    upload: &mut BookUpload,
) -> Result<(), Error> {
    let mut file_bytes: u64 = 0;
    let mut parts = 0;
    while let Some(field) = multipart.next().await {
        let mut field =
            field.map_err(|e| Error::BadRequest(format!("invalid multipart body: {e}")))?;
        parts += 1;
        if parts > MAX_PARTS {
            return Err(Error::BadRequest("too many form parts".into()));
        }
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "fileCover" | "fileBook" => {
                let original = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .map(clean_original_name)
                    .unwrap_or_else(|| "file".to_owned());
                let stored = generated_name(&original);
                let size = write_field(&mut field, files, &stored, limit, &mut file_bytes).await?;
                if size == 0 {
                    // A file input left empty still sends an empty part: "no file".
                    continue;
                }
                let file = StoredFile {
                    stored_name: stored,
                    original_name: original,
                };
                let slot = if name == "fileCover" {
                    &mut upload.cover
                } else {
                    &mut upload.book
                };
                if let Some(previous) = slot.replace(file) {
                    files.remove(&previous.stored_name).await;
                }
            }
            other => {
                let text = read_text(&mut field).await?;
                match other {
                    "title" => upload.fields.title = Some(text),
                    "authors" => upload.fields.authors = Some(text),
                    "description" => upload.fields.description = Some(text),
                    "favorite" => upload.fields.favorite = Some(parse_favorite(&text)?),
                    "csrf_token" => upload.csrf_token = Some(text),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Streams one file part into `files` as `stored`; answers its size. An empty part is no file
/// (nothing is kept); on any error the partial file is removed.
async fn write_field(
    field: &mut actix_multipart::Field,
    files: &FileStore,
    stored: &str,
    limit: u64,
    total: &mut u64,
) -> Result<u64, Error> {
    let mut writer = None;
    let mut size: u64 = 0;
    let result = async {
        while let Some(chunk) = field.next().await {
            let chunk =
                chunk.map_err(|e| Error::BadRequest(format!("invalid multipart body: {e}")))?;
            if chunk.is_empty() {
                continue;
            }
            size += chunk.len() as u64;
            *total += chunk.len() as u64;
            if *total > limit {
                return Err(Error::TooLarge(format!(
                    "uploads are limited to {} MiB",
                    limit / (1024 * 1024)
                )));
            }
            let sink = match &mut writer {
                Some(sink) => sink,
                None => writer.insert(files.create(stored).await?),
            };
            sink.write(&chunk).await?;
        }
        Ok(())
    }
    .await;
    match (result, writer) {
        (Ok(()), Some(writer)) => writer.finish().await.map(|()| size),
        (Ok(()), None) => Ok(0),
        (Err(e), Some(writer)) => {
            writer.abort().await;
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

async fn read_text(field: &mut actix_multipart::Field) -> Result<String, Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("invalid multipart body: {e}")))?;
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD {
            return Err(Error::TooLarge("a form field is too long".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| Error::BadRequest("form fields must be UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_plain() {
        assert!(is_safe_stored_name("demo-1-cover.png"));
        assert!(is_safe_stored_name("0f3c.txt"));
        for bad in ["", "../x", "a/b", ".hidden", "a..b", "a\\b", "é.txt"] {
            assert!(!is_safe_stored_name(bad), "{bad}");
        }
    }

    #[test]
    fn generated_names_ignore_the_path() {
        let name = generated_name("../../etc/passwd");
        assert!(is_safe_stored_name(&name));
        assert!(!name.contains("passwd"));
        assert!(generated_name("cover.PNG").ends_with(".png"));
        assert!(!generated_name("x.tar.g z").contains(' '));
    }

    #[test]
    fn original_names_are_cleaned() {
        assert_eq!(clean_original_name("../../etc/passwd"), "passwd");
        assert_eq!(
            clean_original_name("C:\\x\\Война и мир.txt"),
            "Война и мир.txt"
        );
        assert_eq!(clean_original_name(".."), "file");
        assert_eq!(clean_original_name(""), "file");
    }

    #[test]
    fn content_disposition_has_an_ascii_fallback_and_utf8() {
        let header = attachment("Война и мир.txt").to_string();
        assert!(header.starts_with("attachment"), "{header}");
        assert!(header.contains("filename*=UTF-8''%D0%92"), "{header}");
        let ascii = attachment("book \"1\".txt").to_string();
        assert!(ascii.contains("filename=\"book _1_.txt\""), "{ascii}");
        assert!(!ascii.contains("filename*"), "{ascii}");
    }
}
