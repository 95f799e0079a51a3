//! The discussions part of the store (replies, edits, reactions, `mine`), run against both
//! backends: the embedded redb file and MongoDB (the test run's Mongo-wire server).

use std::collections::BTreeSet;

use mongodb::bson::{DateTime, doc};
use shared_proto::{Author, ClientId, CommentText, Emoji, RoomId};

use super::*;

const T0: i64 = 1_700_000_000_000;
const WINDOW: i64 = 900_000;

fn new(room: &RoomId, author: &str, text: &str, reply_to: Option<&str>) -> NewComment {
    NewComment {
        room: room.clone(),
        author: Author {
            id: author.to_owned(),
            name: format!("{author} name"),
        },
        text: CommentText::parse(text).expect("valid text"),
        client_id: None::<ClientId>,
        created_ms: T0,
        reply_to: reply_to.map(str::to_owned),
    }
}

async fn embedded() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let demo = dir.path().join("no-demo");
    let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&db, &demo))
        .await
        .expect("join")
        .expect("open");
    (Store::Embedded(store), dir)
}

async fn mongo() -> (Store, String) {
    let db = test_harness::unique_db();
    let url = test_harness::mongo_url_with_db(&test_harness::mongo(), &db);
    let store = MongoStore::connect(&url).await.expect("connect");
    store.ensure_indexes().await.expect("indexes");
    (Store::Mongo(store), db)
}

async fn replies_edits_and_reactions(store: &Store) {
    let room = RoomId::parse("disc").expect("room");
    let other = RoomId::parse("elsewhere").expect("room");
    let top = store
        .insert(new(&room, "JD", "top", None))
        .await
        .expect("insert")
        .comment;
    assert_eq!(
        (
            top.reply_to.as_deref(),
            top.edited_at.as_deref(),
            top.reactions.len()
        ),
        (None, None, 0)
    );
    let reply = store
        .insert(new(&room, "Admin", "reply", Some(&top.id)))
        .await
        .expect("insert")
        .comment;
    assert_eq!(reply.reply_to.as_deref(), Some(top.id.as_str()));
    let far = store
        .insert(new(&other, "JD", "far", None))
        .await
        .expect("insert")
        .comment;

    // get: live comments of the room only.
    let got = store
        .get(&room, &reply.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(got, reply);
    assert!(store.get(&room, &far.id).await.expect("get").is_none());
    assert!(store.get(&room, "nope").await.expect("get").is_none());

    // Edits: author only, within the window, same seq, editedAt set.
    let edit = |id: &str, actor: &str, now: i64| {
        let room = room.clone();
        let (id, actor) = (id.to_owned(), actor.to_owned());
        async move {
            store
                .edit(&room, &id, &actor, "changed", now, WINDOW)
                .await
                .expect("edit")
        }
    };
    assert_eq!(edit(&top.id, "Admin", T0 + 1).await, EditOutcome::NotAuthor);
    assert_eq!(
        edit(&top.id, "JD", T0 + WINDOW + 1).await,
        EditOutcome::TooLate
    );
    assert_eq!(edit("nope", "JD", T0 + 1).await, EditOutcome::NotFound);
    assert_eq!(
        store
            .edit(&room, &far.id, "JD", "x", T0 + 1, WINDOW)
            .await
            .expect("edit"),
        EditOutcome::NotFound,
        "another room's id"
    );
    let EditOutcome::Edited { comment, rev } = edit(&top.id, "JD", T0 + WINDOW).await else {
        panic!("not edited")
    };
    assert_eq!((comment.text.as_str(), comment.seq), ("changed", top.seq));
    assert_eq!(
        comment.edited_at.as_deref(),
        Some("2023-11-14T22:28:20.000Z")
    );
    assert_eq!(rev, 1);
    let page = store
        .read(&room, Slice::Latest { limit: 10 })
        .await
        .expect("read");
    assert_eq!(page.comments[0].text, "changed");
    assert!(page.comments[0].edited_at.is_some());

    // Reactions: one of each kind per user; on twice counts once; off without one: nothing.
    let react = |id: &str, user: &str, emoji: Emoji, on: bool| {
        let room = room.clone();
        let (id, user) = (id.to_owned(), user.to_owned());
        async move {
            store
                .react(&room, &id, &user, emoji, on)
                .await
                .expect("react")
        }
    };
    let ReactOutcome::Changed {
        seq,
        reactions,
        rev,
    } = react(&top.id, "JD", Emoji::Heart, true).await
    else {
        panic!("not changed")
    };
    assert_eq!((seq, rev), (top.seq, 2));
    assert_eq!(
        serde_json::to_value(&reactions).expect("json"),
        serde_json::json!({"❤️": 1})
    );
    let again = react(&top.id, "JD", Emoji::Heart, true).await;
    assert!(
        matches!(again, ReactOutcome::Unchanged { ref reactions } if reactions.get(&Emoji::Heart) == Some(&1))
    );
    let none = react(&top.id, "JD", Emoji::Tada, false).await;
    assert!(matches!(none, ReactOutcome::Unchanged { ref reactions } if reactions.len() == 1));
    react(&top.id, "Admin", Emoji::Heart, true).await;
    react(&top.id, "Admin", Emoji::ThumbsUp, true).await;
    react(&reply.id, "JD", Emoji::Joy, true).await;
    let ReactOutcome::Changed { reactions, .. } = react(&top.id, "JD", Emoji::Heart, false).await
    else {
        panic!("not changed")
    };
    assert_eq!(
        serde_json::to_value(&reactions).expect("json"),
        serde_json::json!({"👍": 1, "❤️": 1})
    );
    assert_eq!(
        react("nope", "JD", Emoji::Heart, true).await,
        ReactOutcome::NotFound
    );
    assert_eq!(
        react(&far.id, "JD", Emoji::Heart, true).await,
        ReactOutcome::NotFound
    );

    // The counts come with every read; mine has only the user's own.
    let page = store
        .read(&room, Slice::Latest { limit: 10 })
        .await
        .expect("read");
    assert_eq!(page.comments[0].reactions, reactions);
    let ids = vec![top.id.clone(), reply.id.clone(), "nope".to_owned()];
    let mine = store.mine("Admin", ids.clone()).await.expect("mine");
    assert_eq!(
        serde_json::to_value(&mine).expect("json"),
        serde_json::json!({top.id.clone(): ["👍", "❤️"]})
    );
    let mine = store.mine("JD", ids.clone()).await.expect("mine");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[&reply.id], BTreeSet::from([Emoji::Joy]));
    assert!(store.mine("nobody", ids).await.expect("mine").is_empty());

    // Deleted: not found for everything, replies stay and still name it.
    let deleted = store
        .delete(&room, &top.id, "JD", false)
        .await
        .expect("delete");
    assert!(!matches!(
        deleted,
        DeleteOutcome::NotFound | DeleteOutcome::Forbidden
    ));
    assert!(store.get(&room, &top.id).await.expect("get").is_none());
    assert_eq!(edit(&top.id, "JD", T0 + 1).await, EditOutcome::NotFound);
    assert_eq!(
        react(&top.id, "JD", Emoji::Sad, true).await,
        ReactOutcome::NotFound
    );
    let page = store
        .read(&room, Slice::Latest { limit: 10 })
        .await
        .expect("read");
    assert_eq!(page.comments.len(), 1);
    assert_eq!(page.comments[0].reply_to.as_deref(), Some(top.id.as_str()));
}

async fn reaction_storm_counts_exactly(store: &Store) {
    let room = RoomId::parse("storm").expect("room");
    let target = store
        .insert(new(&room, "JD", "popular", None))
        .await
        .expect("insert")
        .comment;
    // 12 users, each sending on:true three times for 👍 and on then off for 🎉, all at once.
    let mut tasks = Vec::new();
    for user in 0..12 {
        for round in 0..3 {
            let store = store.clone();
            let (room, id) = (room.clone(), target.id.clone());
            tasks.push(tokio::spawn(async move {
                let user = format!("u{user}");
                store
                    .react(&room, &id, &user, Emoji::ThumbsUp, true)
                    .await
                    .expect("react");
                if round == 0 {
                    store
                        .react(&room, &id, &user, Emoji::Tada, true)
                        .await
                        .expect("react");
                    store
                        .react(&room, &id, &user, Emoji::Tada, false)
                        .await
                        .expect("react");
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("join");
    }
    let now = store
        .get(&room, &target.id)
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        serde_json::to_value(&now.reactions).expect("json"),
        serde_json::json!({"👍": 12})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_replies_edits_and_reactions() {
    let (store, _dir) = embedded().await;
    replies_edits_and_reactions(&store).await;
    reaction_storm_counts_exactly(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_replies_edits_and_reactions() {
    let (store, _db) = mongo().await;
    replies_edits_and_reactions(&store).await;
    reaction_storm_counts_exactly(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_documents_from_before_v3_read_with_defaults() {
    let (store, db) = mongo().await;
    let Store::Mongo(mongo) = &store else {
        unreachable!("a mongo store")
    };
    let raw = mongo
        .client()
        .database(&db)
        .collection::<mongodb::bson::Document>("comments");
    raw.insert_one(doc! {
        "_id": "old-1", "room": "index", "seq": 1_i64, "authorId": "JD",
        "authorName": "John Doe", "text": "from v2", "createdAt": DateTime::from_millis(T0),
        "deleted": false,
    })
    .await
    .expect("insert");
    let room = RoomId::index();
    let old = store
        .get(&room, "old-1")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (old.reply_to, old.edited_at, old.reactions.len()),
        (None, None, 0)
    );
    let ReactOutcome::Changed { reactions, rev, .. } = store
        .react(&room, "old-1", "JD", Emoji::Wow, true)
        .await
        .expect("react")
    else {
        panic!("not changed")
    };
    assert_eq!((reactions.get(&Emoji::Wow), rev), (Some(&1), 1));
}
