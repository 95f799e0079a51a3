//! Several library instances on one MongoDB: files live in GridFS, so every instance serves
//! every book's cover and file; uploads of an earlier version (on disk) move in once.

use std::time::{Duration, Instant};

use mongodb::bson::doc;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::{
    Backend, Options, TestApp, book_form, gridfs_names, mongo_db, new_client, spawn_with,
};

/// Two instances on one fresh database, each with its own DATA_DIR.
async fn two_instances() -> (TestApp, TestApp, String) {
    let url = test_harness::mongo_url_with_db(&test_harness::mongo(), &test_harness::unique_db());
    let options = || Options {
        mongo_url: Some(url.clone()),
        ..Options::new(Backend::Mongo)
    };
    let a = spawn_with(options()).await;
    let b = spawn_with(options()).await;
    (a, b, url)
}

async fn body_of(response: reqwest::Response) -> (u16, Vec<u8>) {
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn every_instance_serves_every_file_and_sees_updates_and_deletes() {
    // Arrange: a user signed in on both instances (one account, stored in MongoDB).
    let (a, b, url) = two_instances().await;
    a.signed_in("scaler").await;
    b.login("scaler").await;
    let cover_v1 = b"\x89PNG cover one".to_vec();
    let text_v1 = "Первая версия".as_bytes().to_vec();

    // Act: upload on A.
    let response = a
        .client
        .post(a.url("/api/v1/book"))
        .multipart(book_form(
            "Shared",
            Some(("cover.png", cover_v1.clone())),
            Some(("Книга.txt", text_v1.clone())),
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 201);
    let book: Value = response.json().await.expect("json");
    let id = book["id"].as_u64().expect("id");

    // Assert: B serves the file and the cover, with the original name; nothing on either disk.
    let (status, bytes) = body_of(b.get(&format!("/api/v1/book/{id}/download")).await).await;
    assert_eq!((status, bytes), (200, text_v1.clone()));
    let response = new_client()
        .get(b.url(&format!("/view/book/{id}/download")))
        .send()
        .await
        .expect("GET");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        disposition.contains("filename*=UTF-8''%D0%9A%D0%BD%D0%B8%D0%B3%D0%B0.txt"),
        "{disposition}"
    );
    assert_eq!(
        response.headers()["content-length"],
        text_v1.len().to_string().as_str()
    );
    let response = b.get(&format!("/view/book/{id}/cover")).await;
    assert_eq!(response.headers()["content-type"], "image/png");
    let etag = response.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    assert_eq!(body_of(response).await, (200, cover_v1.clone()));
    let revalidated = b
        .client
        .get(b.url(&format!("/view/book/{id}/cover")))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("GET");
    assert_eq!(revalidated.status().as_u16(), 304);
    for app in [&a, &b] {
        assert!(
            !app.uploads_dir().exists(),
            "no uploads folder with MongoDB"
        );
    }

    // Act: update both files on B.
    let cover_v2 = b"GIF89a cover two".to_vec();
    let text_v2 = b"second version".to_vec();
    let form = Form::new()
        .part(
            "fileCover",
            Part::bytes(cover_v2.clone()).file_name("two.gif"),
        )
        .part(
            "fileBook",
            Part::bytes(text_v2.clone()).file_name("two.txt"),
        );
    let response = b
        .client
        .put(b.url(&format!("/api/v1/book/{id}")))
        .multipart(form)
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status().as_u16(), 200);
    let updated: Value = response.json().await.expect("json");

    // Assert: A serves the new files; the old ones are gone from GridFS.
    let (status, bytes) = body_of(a.get(&format!("/api/v1/book/{id}/download")).await).await;
    assert_eq!((status, bytes), (200, text_v2));
    let response = a.get(&format!("/view/book/{id}/cover")).await;
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert_eq!(body_of(response).await, (200, cover_v2));
    let stale = a
        .client
        .get(a.url(&format!("/view/book/{id}/cover")))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("GET");
    assert_eq!(stale.status().as_u16(), 200, "a replaced cover is not 304");
    let (mut names, _) = gridfs_names(&url).await;
    names.sort();
    let mut expected = vec![
        updated["fileNameCover"].as_str().expect("name").to_owned(),
        updated["fileNameBook"].as_str().expect("name").to_owned(),
    ];
    expected.sort();
    assert_eq!(names, expected);

    // Act: delete on A.
    let response = a
        .client
        .delete(a.url(&format!("/api/v1/book/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 200);

    // Assert: gone on B, and nothing is left in GridFS.
    for path in [
        format!("/api/v1/book/{id}"),
        format!("/api/v1/book/{id}/download"),
        format!("/view/book/{id}/cover"),
    ] {
        assert_eq!(b.get(&path).await.status().as_u16(), 404, "{path}");
    }
    assert_eq!(gridfs_names(&url).await, (Vec::new(), 0));
}

#[tokio::test]
async fn uploads_over_50_mib_leave_nothing_in_gridfs() {
    let (a, _b, url) = two_instances().await;
    a.signed_in("hoarder").await;
    let big = vec![b'x'; 50 * 1024 * 1024 + 1];
    let response = a
        .client
        .post(a.url("/api/v1/book"))
        .multipart(book_form(
            "Too big",
            Some(("c.png", b"png".to_vec())),
            Some(("big.bin", big)),
        ))
        .send()
        .await
        .expect("POST gets an answer");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_large");
    assert_eq!(gridfs_names(&url).await, (Vec::new(), 0));
    let list: Vec<Value> = a.get("/api/v1/book").await.json().await.expect("json");
    assert!(list.is_empty());
}

/// A book as `init-db.js` or an earlier version stored it.
fn book_doc(id: i64, cover: &str, file: &str) -> mongodb::bson::Document {
    doc! {
        "_id": id, "title": format!("Old {id}"), "authors": "A", "description": "D",
        "favorite": 1_i64, "fileNameCover": cover, "fileOriginalCover": "cover.png",
        "fileNameBook": file, "fileOriginalBook": "book.txt",
    }
}

async fn wait_for_status(app: &TestApp, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = app.get(path).await.status().as_u16();
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "{path}: {status}, never {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn files_on_disk_and_demo_files_move_into_mongodb_once() {
    // Arrange: a database whose books name files an earlier version kept on disk (in a
    // folder both new instances see) and two demo files; plus a file no book names.
    let url = test_harness::mongo_url_with_db(&test_harness::mongo(), &test_harness::unique_db());
    let db = mongo_db(&url).await;
    let books = db.collection::<mongodb::bson::Document>("books");
    books
        .insert_many([
            book_doc(1, "0ld-cover.png", "0ld-book.txt"),
            book_doc(2, "demo-1-cover.png", "demo-1-book.txt"),
        ])
        .await
        .expect("seed books");
    let data = tempfile::tempdir().expect("tempdir");
    let uploads = data.path().join("library").join("uploads");
    std::fs::create_dir_all(&uploads).expect("uploads");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(uploads.join("0ld-cover.png"), b"old cover").expect("write");
    std::fs::write(uploads.join("0ld-book.txt"), &big).expect("write");
    std::fs::write(uploads.join("stray.bin"), b"nobody's").expect("write");
    let options = || Options {
        mongo_url: Some(url.clone()),
        data_dir: Some(data.path().to_path_buf()),
        demo: true,
        ..Options::new(Backend::Mongo)
    };

    // Act: two instances start together on the same folder.
    let (a, b) = tokio::join!(spawn_with(options()), spawn_with(options()));

    // Assert: both serve the moved files and the demo files; the disk copies are gone, the
    // stray file stays, each file is stored once and unreferenced demo files are not loaded.
    for app in [&a, &b] {
        wait_for_status(app, "/api/v1/book/1/download", 200).await;
        wait_for_status(app, "/view/book/2/cover", 200).await;
    }
    let (status, bytes) = body_of(b.get("/api/v1/book/1/download").await).await;
    assert_eq!((status, bytes.len()), (200, big.len()));
    assert!(bytes == big, "the moved file is intact");
    let (status, cover) = body_of(a.get("/view/book/1/cover").await).await;
    assert_eq!((status, cover.as_slice()), (200, b"old cover".as_slice()));
    let demo =
        std::fs::read(crate::helpers::demo_dir().join("files/demo-1-book.txt")).expect("demo file");
    assert_eq!(
        body_of(a.get("/api/v1/book/2/download").await).await,
        (200, demo)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while uploads.join("0ld-book.txt").exists() || uploads.join("0ld-cover.png").exists() {
        assert!(Instant::now() < deadline, "moved files stay on disk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(uploads.join("stray.bin").is_file());
    let (mut names, _) = gridfs_names(&url).await;
    names.sort();
    assert_eq!(
        names,
        [
            "0ld-book.txt",
            "0ld-cover.png",
            "demo-1-book.txt",
            "demo-1-cover.png"
        ]
    );
    assert_eq!(
        db.collection::<mongodb::bson::Document>("uploadImports")
            .count_documents(doc! {})
            .await
            .expect("count"),
        0,
        "leases are released"
    );

    // Act: a file of the same name shows up on disk again and an instance restarts.
    std::fs::write(uploads.join("0ld-cover.png"), b"not again").expect("write");
    let c = spawn_with(options()).await;

    // Assert: what is stored is not replaced; the disk copy is dropped.
    let deadline = Instant::now() + Duration::from_secs(30);
    while uploads.join("0ld-cover.png").exists() {
        assert!(Instant::now() < deadline, "the duplicate stays on disk");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, cover) = body_of(c.get("/view/book/1/cover").await).await;
    assert_eq!((status, cover.as_slice()), (200, b"old cover".as_slice()));
    assert_eq!(gridfs_names(&url).await.0.len(), 4);
}
