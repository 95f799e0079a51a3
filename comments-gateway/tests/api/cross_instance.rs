//! Two instances sharing one Redis and one MongoDB behave as one.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

async fn collect_comments(client: &mut Client, count: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < count {
        let frame = client.recv().await;
        if frame["type"] == "comment" {
            out.push(frame["payload"].clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_on_two_instances_reach_everyone_once_in_order() {
    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    let mut readers = Vec::new();
    for app in [&a, &b, &a, &b] {
        let mut reader = app.client(None).await;
        reader.subscribe("index").await;
        readers.push(reader);
    }
    const EACH: usize = 25;
    let mut posters = Vec::new();
    for (i, app) in [&a, &b, &a, &b].into_iter().enumerate() {
        let mut poster = app.client(Some(&user_token(&format!("user{i}")))).await;
        poster.subscribe("index").await;
        posters.push(poster);
    }
    let tasks: Vec<_> = posters
        .into_iter()
        .enumerate()
        .map(|(i, mut poster)| {
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..EACH {
                    let reply = poster
                        .request("post", json!({"room": "index", "text": format!("p{i}-{n}"), "clientId": format!("k{n}")}))
                        .await;
                    assert_eq!(reply["type"], "ack", "{reply}");
                    acked.push(reply["payload"]["comment"]["seq"].as_u64().expect("seq"));
                }
                acked
            })
        })
        .collect();
    let mut all_acked = Vec::new();
    for task in tasks {
        all_acked.extend(task.await.expect("poster"));
    }
    all_acked.sort_unstable();
    let total = EACH * 4;
    assert_eq!(
        all_acked,
        (1..=total as u64).collect::<Vec<_>>(),
        "seqs are dense and unique"
    );

    for reader in &mut readers {
        let got = collect_comments(reader, total).await;
        let got_seqs: Vec<u64> = got
            .iter()
            .map(|c| c["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(
            got_seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "in order, none missing, none twice"
        );
        reader.silent_for(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_since_on_another_instance_after_a_drop() {
    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    let mut jd = a.client(Some(&user_token("JD"))).await;
    jd.subscribe("42").await;
    let mut reader = a.client(None).await;
    reader.subscribe("42").await;
    jd.post("42", "one").await;
    jd.post("42", "two").await;
    let seen = collect_comments(&mut reader, 2).await;
    let last = seen[1]["seq"].as_u64().expect("seq");
    reader.close().await;

    jd.post("42", "three").await;
    jd.post("42", "four").await;

    let mut back = b.client(None).await;
    let resumed = back
        .request("subscribe", json!({"room": "42", "since": last}))
        .await;
    let texts: Vec<&str> = resumed["payload"]["comments"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert_eq!(texts, vec!["three", "four"]);
    jd.post("42", "five").await;
    let live = collect_comments(&mut back, 1).await;
    assert_eq!(live[0]["text"], "five");
    back.silent_for(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_notices_reach_every_instance() {
    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    let mut in_room_b = b.client(None).await;
    in_room_b.subscribe("1").await;
    let mut elsewhere_a = a.client(None).await;
    elsewhere_a.subscribe("2").await;
    let mut idle_b = b.client(None).await;

    assert_eq!(a.notice(None, json!({"text": "hi"})).await, 401);
    assert_eq!(a.notice(Some("wrong"), json!({"text": "hi"})).await, 401);

    assert_eq!(
        a.notice(Some(ADMIN_TOKEN), json!({"text": "to room 1", "room": "1"}))
            .await,
        202
    );
    let notice = in_room_b.recv().await;
    assert_eq!(notice["type"], "notice");
    assert_eq!(
        notice["payload"],
        json!({"text": "to room 1", "from": "admin", "room": "1"})
    );

    assert_eq!(
        a.notice(Some(ADMIN_TOKEN), json!({"text": "everyone"}))
            .await,
        202
    );
    for client in [&mut in_room_b, &mut elsewhere_a, &mut idle_b] {
        let notice = client.recv().await;
        assert_eq!(
            notice["payload"],
            json!({"text": "everyone", "from": "admin"})
        );
    }
    elsewhere_a.silent_for(Duration::from_millis(200)).await;
    assert_eq!(a.notice(Some(ADMIN_TOKEN), json!({"text": ""})).await, 400);
    assert_eq!(
        a.notice(Some(ADMIN_TOKEN), json!({"text": "x", "room": "a/b"}))
            .await,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_reach_subscribers_on_other_instances() {
    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    let mut jd = a.client(Some(&user_token("JD"))).await;
    jd.subscribe("8").await;
    let mut reader = b.client(None).await;
    reader.subscribe("8").await;
    let comment = jd.post("8", "soon gone").await;
    assert_eq!(
        collect_comments(&mut reader, 1).await[0]["id"],
        comment["id"]
    );
    let reply = jd
        .request("delete", json!({"room": "8", "id": comment["id"]}))
        .await;
    assert_eq!(reply["type"], "ack");
    let gone = reader.recv().await;
    assert_eq!(gone["type"], "comment_deleted");
    assert_eq!(gone["payload"]["id"], comment["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publish_is_filled_from_the_store_in_order() {
    use mongodb::bson::{DateTime, Document, doc};

    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    let mut poster = a.client(Some(&user_token("JD"))).await;
    poster.subscribe("g").await;
    let mut reader = b.client(None).await;
    reader.subscribe("g").await;
    poster.post("g", "one").await;
    assert_eq!(collect_comments(&mut reader, 1).await[0]["seq"], 1);

    // Two comments stored by an instance whose publishes never arrived: one since deleted.
    let client = mongodb::Client::with_uri_str(backends.mongo.as_deref().expect("mongo"))
        .await
        .expect("client");
    let comments = client
        .default_database()
        .expect("db in url")
        .collection::<Document>("comments");
    for (seq, text, deleted) in [(2i64, "", true), (3, "sneaked", false)] {
        comments
            .insert_one(doc! {
                "_id": format!("manual-{seq}"), "room": "g", "seq": seq, "authorId": "X", "authorName": "X",
                "text": text, "createdAt": DateTime::now(), "deleted": deleted,
            })
            .await
            .expect("inserted");
    }
    let four = poster.post("g", "four").await;
    assert_eq!(four["seq"], 4);
    let got = collect_comments(&mut reader, 2).await;
    let texts: Vec<&str> = got.iter().filter_map(|c| c["text"].as_str()).collect();
    assert_eq!(texts, vec!["sneaked", "four"]);
    reader.silent_for(Duration::from_millis(300)).await;
}

async fn numsub(redis_url: &str, channel: &str) -> i64 {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut conn)
        .await
        .expect("numsub");
    count
}

async fn wait_numsub(redis_url: &str, channel: &str, want: i64) {
    let started = std::time::Instant::now();
    loop {
        let count = numsub(redis_url, channel).await;
        if count == want {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "{channel} has {count} subscribers, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_subscribes_a_room_channel_only_while_it_has_local_subscribers() {
    let backends = Backends::shared();
    let redis_url = backends.redis.clone().expect("redis");
    let channel = format!("{}room:busy", backends.prefix);
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    wait_numsub(&redis_url, &channel, 0).await;

    let mut first = a.client(None).await;
    first.subscribe("busy").await;
    let mut second = a.client(None).await;
    second.subscribe("busy").await;
    wait_numsub(&redis_url, &channel, 1).await;
    let mut third = b.client(None).await;
    third.subscribe("busy").await;
    wait_numsub(&redis_url, &channel, 2).await;

    first.request("unsubscribe", json!({"room": "busy"})).await;
    second.close().await;
    wait_numsub(&redis_url, &channel, 1).await;
    third.close().await;
    wait_numsub(&redis_url, &channel, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_client_id_on_another_instance_finds_the_first_comment() {
    let backends = Backends::shared();
    let a = spawn_app(&backends).await;
    let b = spawn_app(&backends).await;
    let mut reader = b.client(None).await;
    reader.subscribe("idem").await;
    let mut on_a = a.client(Some(&user_token("JD"))).await;
    on_a.subscribe("idem").await;
    let mut on_b = b.client(Some(&user_token("JD"))).await;
    on_b.subscribe("idem").await;

    let payload = json!({"room": "idem", "text": "exactly once", "clientId": "retry-1"});
    let (first, second) = tokio::join!(
        on_a.request("post", payload.clone()),
        on_b.request("post", payload)
    );
    assert_eq!(first["type"], "ack");
    assert_eq!(first["payload"]["comment"], second["payload"]["comment"]);
    let got = collect_comments(&mut reader, 1).await;
    assert_eq!(got[0]["text"], "exactly once");
    reader.silent_for(Duration::from_millis(300)).await;
}
