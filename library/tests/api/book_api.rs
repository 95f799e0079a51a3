use serde_json::{Value, json};

use crate::helpers::{Backend, book_form, new_client, spawn_app};

async fn crud_with_json(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signed_in("reader").await;

    // Create two books: sequential ids.
    let first = app.create_book("First").await;
    let second = app.create_book("Second").await;
    let id = first["id"].as_u64().expect("numeric id");
    assert_eq!(second["id"].as_u64(), Some(id + 1));
    assert_eq!(first["title"], "First");
    assert_eq!(first["favorite"], 1);
    for key in [
        "fileNameCover",
        "fileOriginalCover",
        "fileNameBook",
        "fileOriginalBook",
        "authors",
        "description",
    ] {
        assert!(first[key].is_string(), "{key}");
    }

    // Reads are open to everyone and carry views from counter.
    let anonymous = new_client();
    let list: Vec<Value> = anonymous
        .get(app.url("/api/v1/book"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["views"], 0);
    let one: Value = anonymous
        .get(app.url(&format!("/api/v1/book/{id}")))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(one["title"], "First");
    assert_eq!(one["views"], 0);

    // PUT replaces what is sent, keeps the rest.
    let response = app
        .client
        .put(app.url(&format!("/api/v1/book/{id}")))
        .json(&json!({"title": "First, revised", "favorite": "7"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status().as_u16(), 200);
    let updated: Value = response.json().await.expect("json");
    assert_eq!(updated["title"], "First, revised");
    assert_eq!(updated["favorite"], 7);
    assert_eq!(updated["authors"], "A. Author");

    // DELETE, then 404 everywhere.
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/book/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body["message"].is_string());
    for path in [
        format!("/api/v1/book/{id}"),
        format!("/api/v1/book/{id}/download"),
        "/api/v1/book/abc".into(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let response = app
        .client
        .put(app.url(&format!("/api/v1/book/{id}")))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status().as_u16(), 404);
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/book/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 404);

    // A deleted id is never reused.
    let third = app.create_book("Third").await;
    assert_eq!(third["id"].as_u64(), Some(id + 2));
}

#[tokio::test]
async fn crud_with_json_embedded() {
    crud_with_json(Backend::Embedded).await;
}

#[tokio::test]
async fn crud_with_json_mongo() {
    crud_with_json(Backend::Mongo).await;
}

#[tokio::test]
async fn writes_need_a_signed_in_user() {
    let app = spawn_app(Backend::Embedded).await;
    let response = app.post_json("/api/v1/book", &json!({"title": "x"})).await;
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    let response = app
        .client
        .post(app.url("/api/v1/book"))
        .multipart(book_form("x", None, None))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 401);
    let response = app
        .client
        .put(app.url("/api/v1/book/1"))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status().as_u16(), 401);
    let response = app
        .client
        .delete(app.url("/api/v1/book/1"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn bad_book_fields_are_400() {
    let app = spawn_app(Backend::Embedded).await;
    app.signed_in("writer").await;
    for bad in [
        json!({"authors": "no title"}),
        json!({"title": "   "}),
        json!({"title": "t", "favorite": "lots"}),
        json!({"title": 5}),
        json!(["title"]),
    ] {
        let response = app.post_json("/api/v1/book", &bad).await;
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}");
    }
    let response = app
        .client
        .post(app.url("/api/v1/book"))
        .header("content-type", "text/plain")
        .body("title=x")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    let response = app
        .client
        .post(app.url("/api/v1/book"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    let no_title = reqwest::multipart::Form::new().text("authors", "x");
    let response = app
        .client
        .post(app.url("/api/v1/book"))
        .multipart(no_title)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        std::fs::read_dir(app.uploads_dir())
            .expect("uploads")
            .count(),
        0
    );
}

async fn multipart_files(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signed_in("uploader").await;

    // Create with both files.
    let response = app
        .client
        .post(app.url("/api/v1/book"))
        .multipart(book_form(
            "With files",
            Some(("cover.png", b"\x89PNG fake".to_vec())),
            Some(("Война и мир.txt", "Текст книги".as_bytes().to_vec())),
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 201);
    let book: Value = response.json().await.expect("json");
    let id = book["id"].as_u64().expect("id");
    assert_eq!(book["favorite"], 2);
    assert_eq!(book["fileOriginalCover"], "cover.png");
    assert_eq!(book["fileOriginalBook"], "Война и мир.txt");
    let stored_book = book["fileNameBook"].as_str().expect("name").to_owned();
    assert!(stored_book.ends_with(".txt") && !stored_book.contains("Война"));
    let stored = app.stored_files().await;
    assert!(stored.contains(&stored_book), "{stored:?}");
    assert_eq!(stored.len(), 2, "{stored:?}");

    // Download: the original name, RFC 5987 for non-ASCII, no sign-in needed.
    let response = new_client()
        .get(app.url(&format!("/api/v1/book/{id}/download")))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(
        disposition.contains(
            "filename*=UTF-8''%D0%92%D0%BE%D0%B9%D0%BD%D0%B0%20%D0%B8%20%D0%BC%D0%B8%D1%80.txt"
        ),
        "{disposition}"
    );
    assert_eq!(response.text().await.expect("body"), "Текст книги");
    let page = app.get(&format!("/view/book/{id}/download")).await;
    assert_eq!(page.status().as_u16(), 200);

    // PUT with only a new cover: the book file stays, the old cover is removed.
    let old_cover = book["fileNameCover"].as_str().expect("name").to_owned();
    let form = reqwest::multipart::Form::new().part(
        "fileCover",
        reqwest::multipart::Part::bytes(b"GIF89a".to_vec()).file_name("new.gif"),
    );
    let response = app
        .client
        .put(app.url(&format!("/api/v1/book/{id}")))
        .multipart(form)
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status().as_u16(), 200);
    let updated: Value = response.json().await.expect("json");
    assert_eq!(updated["title"], "With files");
    assert_eq!(updated["fileOriginalCover"], "new.gif");
    assert_eq!(updated["fileNameBook"], stored_book.as_str());
    let stored = app.stored_files().await;
    assert!(!stored.contains(&old_cover), "{stored:?}");
    assert_eq!(stored.len(), 2, "{stored:?}");
    let cover = app.get(&format!("/view/book/{id}/cover")).await;
    assert_eq!(cover.status().as_u16(), 200);
    assert_eq!(cover.headers()["content-type"], "image/gif");

    // DELETE removes the files.
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/book/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(app.stored_files().await, Vec::<String>::new());
}

#[tokio::test]
async fn multipart_files_embedded() {
    multipart_files(Backend::Embedded).await;
}

#[tokio::test]
async fn multipart_files_mongo() {
    multipart_files(Backend::Mongo).await;
}

#[tokio::test]
async fn uploaded_file_names_cannot_escape_the_uploads_folder() {
    let app = spawn_app(Backend::Embedded).await;
    app.signed_in("attacker").await;
    let response = app
        .client
        .post(app.url("/api/v1/book"))
        .multipart(book_form(
            "Traversal",
            Some(("../../../evil.png", b"png".to_vec())),
            Some(("..\\..\\library.redb", b"overwrite?".to_vec())),
        ))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 201);
    let book: Value = response.json().await.expect("json");
    assert_eq!(book["fileOriginalCover"], "evil.png");
    assert_eq!(book["fileOriginalBook"], "library.redb");
    for key in ["fileNameCover", "fileNameBook"] {
        let name = book[key].as_str().expect("name");
        assert!(
            !name.contains('/') && !name.contains('\\') && !name.contains(".."),
            "{name}"
        );
        assert!(app.uploads_dir().join(name).is_file());
    }
    assert!(!app.data_dir.join("evil.png").exists());
    assert!(
        !app.data_dir
            .parent()
            .expect("parent")
            .join("evil.png")
            .exists()
    );
    // The store file was not touched by the upload.
    let store = std::fs::read(app.data_dir.join("library").join("library.redb")).expect("store");
    assert_ne!(store, b"overwrite?");
}

#[tokio::test]
async fn uploads_over_50_mib_are_413_and_leave_nothing_behind() {
    let app = spawn_app(Backend::Embedded).await;
    app.signed_in("hoarder").await;
    let big = vec![b'x'; 50 * 1024 * 1024 + 1];
    let response = app
        .client
        .post(app.url("/api/v1/book"))
        .multipart(book_form("Too big", None, Some(("big.bin", big))))
        .send()
        .await
        .expect("POST gets an answer");
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "too_large");
    assert_eq!(
        std::fs::read_dir(app.uploads_dir())
            .expect("uploads")
            .count(),
        0
    );
    let list: Vec<Value> = app.get("/api/v1/book").await.json().await.expect("json");
    assert!(list.is_empty());

    // Exactly 50 MiB is fine.
    let limit = vec![b'y'; 50 * 1024 * 1024];
    let response = app
        .client
        .post(app.url("/api/v1/book"))
        .multipart(book_form("Just fits", None, Some(("fits.bin", limit))))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 201);
}
