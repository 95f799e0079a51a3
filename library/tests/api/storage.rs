//! Store behaviour beyond single requests: concurrent ids, restarts.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{Backend, Options, spawn_app, spawn_with};

async fn concurrent_creation_gives_unique_sequential_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signed_in("racer").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = app.url("/api/v1/book");
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .json(&json!({"title": format!("Book {i}")}))
                .send()
                .await
                .expect("POST");
            assert_eq!(response.status().as_u16(), 201);
            response.json::<Value>().await.expect("json")["id"]
                .as_u64()
                .expect("id")
        }));
    }
    let mut ids = BTreeSet::new();
    for task in tasks {
        ids.insert(task.await.expect("task"));
    }
    assert_eq!(ids, (1..=20).collect::<BTreeSet<u64>>());
}

#[tokio::test]
async fn concurrent_creation_gives_unique_sequential_ids_embedded() {
    concurrent_creation_gives_unique_sequential_ids(Backend::Embedded).await;
}

#[tokio::test]
async fn concurrent_creation_gives_unique_sequential_ids_mongo() {
    concurrent_creation_gives_unique_sequential_ids(Backend::Mongo).await;
}

#[tokio::test]
async fn concurrent_signups_of_one_name_create_one_account_mongo() {
    let app = spawn_app(Backend::Mongo).await;
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let client = app.client.clone();
        let url = app.url("/api/v1/user/signup");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"username": "twin", "fullname": "T", "email": "t@example.com", "password": "pw-twin-secret"}))
                .send()
                .await
                .expect("POST")
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        4,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn mongo_ids_continue_after_books_seeded_without_a_counter() {
    // init-db.js inserts books 1-4 and no counter document: new books must get 5, 6, ...
    let url = test_harness::mongo_url_with_db(&test_harness::mongo(), &test_harness::unique_db());
    let client = mongodb::Client::with_uri_str(&url).await.expect("client");
    let db = client.default_database().expect("db in url");
    let docs: Vec<mongodb::bson::Document> = (1..=4_i64)
        .map(|id| mongodb::bson::doc! {"_id": id, "title": format!("Seeded {id}"), "authors": "", "description": "",
            "favorite": 1_i32, "fileNameCover": "", "fileOriginalCover": "", "fileNameBook": "", "fileOriginalBook": ""})
        .collect();
    db.collection::<mongodb::bson::Document>("books")
        .insert_many(docs)
        .await
        .expect("seed");

    let mut options = Options::new(Backend::Mongo);
    options.mongo_url = Some(url);
    let app = spawn_with(options).await;
    app.signed_in("seeder").await;
    let book = app.create_book("Fifth").await;
    assert_eq!(book["id"], 5);
    let list: Vec<Value> = app.get("/api/v1/book").await.json().await.expect("json");
    assert_eq!(list.len(), 5);
    assert_eq!(list[0]["title"], "Seeded 1");
}

#[tokio::test]
async fn embedded_store_survives_a_restart_and_loads_the_demo_only_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut options = Options::new(Backend::Embedded);
    options.demo = true;
    options.data_dir = Some(tmp.path().to_path_buf());
    let app = spawn_with(options.clone()).await;
    app.signed_in("keeper").await;
    let book = app.create_book("Kept").await;
    assert_eq!(book["id"], 5, "after the four demo books");
    drop(app);

    // A second application on the same DATA_DIR (the first keeps running: redb allows one
    // opener per file, so stop it by building on a copy).
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(tmp.path(), copy.path());
    options.data_dir = Some(copy.path().to_path_buf());
    let again = spawn_with(options).await;
    let list: Vec<Value> = again.get("/api/v1/book").await.json().await.expect("json");
    assert_eq!(list.len(), 5);
    assert_eq!(list[4]["title"], "Kept");
    again.login("keeper").await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
