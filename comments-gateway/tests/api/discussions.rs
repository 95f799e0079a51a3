//! Discussions (contract v3) on one instance: replies, edits, reactions with `mine`, typing,
//! presence and the HTTP reads, with every bad input the contract names.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

/// Sends a request that must fail; returns its error code.
async fn error_code(client: &mut Client, kind: &str, payload: Value) -> String {
    let reply = client.request(kind, payload).await;
    assert_eq!(reply["type"], "error", "{kind} should fail: {reply}");
    reply["payload"]["code"].as_str().expect("code").to_owned()
}

async fn reply_to(client: &mut Client, room: &str, text: &str, parent: &Value) -> Value {
    let reply = client
        .request(
            "post",
            json!({"room": room, "text": text, "replyTo": parent["id"]}),
        )
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    reply["payload"]["comment"].clone()
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = reqwest::get(app.http(path)).await.expect("answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_one_level_deep_and_need_a_live_parent_in_the_room() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("talk").await;
    jd.subscribe("other").await;
    let mut reader = app.client(None).await;
    reader.subscribe("talk").await;

    let top = jd.post("talk", "top").await;
    assert_eq!(
        (&top["replyTo"], &top["editedAt"], &top["reactions"]),
        (&Value::Null, &Value::Null, &json!({})),
        "v3 fields are always there: {top}"
    );
    let reply = reply_to(&mut jd, "talk", "reply", &top).await;
    assert_eq!(reply["replyTo"], top["id"]);
    let nested = reply_to(&mut jd, "talk", "reply to the reply", &reply).await;
    assert_eq!(nested["replyTo"], top["id"], "threads are one level deep");
    for expected in [&top, &reply, &nested] {
        let live = reader.until("comment").await;
        assert_eq!(&live["payload"], expected);
    }

    let far = jd.post("other", "elsewhere").await;
    for (parent, code) in [
        (far["id"].clone(), "not_found"),
        (json!("no-such-comment"), "not_found"),
        (json!("a b"), "bad_request"),
        (json!(""), "bad_request"),
        (json!(7), "bad_request"),
    ] {
        let got = error_code(
            &mut jd,
            "post",
            json!({"room": "talk", "text": "x", "replyTo": parent}),
        )
        .await;
        assert_eq!(got, code, "replyTo {parent}");
    }

    // The top-level comment goes: its replies stay (and still name it), new replies to it or
    // to its replies are not_found.
    let deleted = jd
        .request("delete", json!({"room": "talk", "id": top["id"]}))
        .await;
    assert_eq!(deleted["type"], "ack", "{deleted}");
    for parent in [&top, &reply] {
        let got = error_code(
            &mut jd,
            "post",
            json!({"room": "talk", "text": "late", "replyTo": parent["id"]}),
        )
        .await;
        assert_eq!(got, "not_found");
    }
    let again = jd.subscribe("talk").await;
    let comments = again["payload"]["comments"].as_array().expect("array");
    assert_eq!(comments.len(), 2);
    assert!(comments.iter().all(|c| c["replyTo"] == top["id"]));

    // HTTP: one comment, for quoting a parent that is not on the page.
    let (status, body) = get(
        &app,
        &format!("/rooms/talk/comments/{}", reply["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!((status, &body["comment"]), (200, &reply));
    let (status, body) = get(
        &app,
        &format!("/rooms/talk/comments/{}", top["id"].as_str().expect("id")),
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, _) = get(
        &app,
        &format!(
            "/rooms/other/comments/{}",
            reply["id"].as_str().expect("id")
        ),
    )
    .await;
    assert_eq!(status, 404, "another room's comment");
    let (status, _) = get(&app, "/rooms/talk/comments/unknown-id").await;
    assert_eq!(status, 404);
    let (status, body) = get(&app, "/rooms/talk/comments/a%20b").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("bad_request"))
    );
    let (status, _) = get(&app, "/rooms/a%2Fb/comments/x").await;
    assert!(status == 400 || status == 404, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_edit_within_the_window_and_everyone_sees_it() {
    let mut settings = settings(&Backends::mongo_only());
    settings.edit_window_secs = 3;
    let app = spawn_with(settings).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("e").await;
    jd.subscribe("e2").await;
    let mut admin = app.client(Some(&admin_token())).await;
    admin.subscribe("e").await;
    let mut reader = app.client(None).await;
    reader.subscribe("e").await;

    let comment = jd.post("e", "first").await;
    let id = comment["id"].clone();
    let ack = jd
        .request("edit", json!({"room": "e", "id": id, "text": "  second  "}))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let edited = &ack["payload"]["comment"];
    assert_eq!(
        (&edited["text"], &edited["seq"], &edited["id"]),
        (&json!("second"), &comment["seq"], &id)
    );
    let edited_at = edited["editedAt"].as_str().expect("editedAt set");
    assert_eq!(
        edited_at.len(),
        24,
        "RFC 3339 with milliseconds: {edited_at}"
    );
    assert!(edited_at.ends_with('Z'));
    for client in [&mut reader, &mut admin] {
        let live = client.until("comment_edited").await;
        assert_eq!(live["payload"]["room"], "e");
        assert_eq!(&live["payload"]["comment"], edited);
    }

    let far = jd.post("e2", "elsewhere").await;
    let mut anonymous = app.client(None).await;
    anonymous.subscribe("e").await;
    let jd_elsewhere = app.client(Some(&user_token("JD"))).await;
    let mut clients = [jd, admin, anonymous, jd_elsewhere];
    let cases = [
        (
            1,
            json!({"room": "e", "id": id, "text": "mine now"}),
            "forbidden",
        ),
        (
            2,
            json!({"room": "e", "id": id, "text": "x"}),
            "unauthorized",
        ),
        (
            3,
            json!({"room": "e", "id": id, "text": "x"}),
            "not_subscribed",
        ),
        (
            0,
            json!({"room": "e", "id": "no-such-id", "text": "x"}),
            "not_found",
        ),
        (
            0,
            json!({"room": "e", "id": far["id"], "text": "x"}),
            "not_found",
        ),
        (
            0,
            json!({"room": "e", "id": id, "text": "   "}),
            "bad_request",
        ),
        (
            0,
            json!({"room": "e", "id": id, "text": "a".repeat(2001)}),
            "too_large",
        ),
        (0, json!({"room": "e", "id": id}), "bad_request"),
        (
            0,
            json!({"room": "e", "id": "bad id", "text": "x"}),
            "bad_request",
        ),
        (
            0,
            json!({"room": "e", "id": id, "text": "x", "extra": 1}),
            "bad_request",
        ),
    ];
    for (who, payload, code) in cases {
        let got = error_code(&mut clients[who], "edit", payload.clone()).await;
        assert_eq!(got, code, "{payload}");
    }
    let [mut jd, ..] = clients;

    // After the window: forbidden, and the text stays.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let late = error_code(
        &mut jd,
        "edit",
        json!({"room": "e", "id": id, "text": "too late"}),
    )
    .await;
    assert_eq!(late, "forbidden");
    let backlog = reader.subscribe("e").await;
    assert_eq!(backlog["payload"]["comments"][0]["text"], "second");
    assert_eq!(
        backlog["payload"]["comments"][0]["editedAt"],
        edited["editedAt"]
    );

    // Deleted: not_found.
    let fresh = jd.post("e", "short-lived").await;
    let deleted = jd
        .request("delete", json!({"room": "e", "id": fresh["id"]}))
        .await;
    assert_eq!(deleted["type"], "ack");
    let gone = error_code(
        &mut jd,
        "edit",
        json!({"room": "e", "id": fresh["id"], "text": "x"}),
    )
    .await;
    assert_eq!(gone, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_count_against_the_post_rate_limit() {
    let mut settings = settings(&Backends::mongo_only());
    settings.post_burst = 2;
    settings.post_rate_per_sec = 0.01;
    let app = spawn_with(settings).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("limited").await;
    let comment = jd.post("limited", "one").await;
    let first = jd
        .request(
            "edit",
            json!({"room": "limited", "id": comment["id"], "text": "two"}),
        )
        .await;
    assert_eq!(first["type"], "ack", "{first}");
    let second = error_code(
        &mut jd,
        "edit",
        json!({"room": "limited", "id": comment["id"], "text": "three"}),
    )
    .await;
    assert_eq!(second, "rate_limited");
    let backlog = jd.subscribe("limited").await;
    assert_eq!(
        backlog["payload"]["comments"][0]["text"], "two",
        "nothing stored"
    );
}

async fn react(client: &mut Client, room: &str, id: &Value, emoji: &str, on: bool) -> Value {
    let reply = client
        .request(
            "react",
            json!({"room": room, "id": id, "emoji": emoji, "on": on}),
        )
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    assert_eq!(&reply["payload"]["id"], id);
    reply["payload"]["reactions"].clone()
}

async fn reactions_per_user_with_mine_and_live_counts(app: &TestApp) {
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("rx").await;
    jd.subscribe("rx2").await;
    let mut admin = app.client(Some(&admin_token())).await;
    admin.subscribe("rx").await;
    let mut reader = app.client(None).await;
    reader.subscribe("rx").await;

    let comment = jd.post("rx", "react to me").await;
    let id = comment["id"].clone();
    assert_eq!(
        react(&mut admin, "rx", &id, "👍", true).await,
        json!({"👍": 1})
    );
    let live = reader.until("reactions").await;
    assert_eq!(
        live["payload"],
        json!({"room": "rx", "id": id, "reactions": {"👍": 1}})
    );
    // Twice on, or off without one: same counts, no broadcast.
    assert_eq!(
        react(&mut admin, "rx", &id, "👍", true).await,
        json!({"👍": 1})
    );
    assert_eq!(
        react(&mut admin, "rx", &id, "🎉", false).await,
        json!({"👍": 1})
    );
    reader.silent_for(Duration::from_millis(300)).await;
    // The bare heart (U+2764) is the heart; it comes back with U+FE0F.
    let counts = react(&mut jd, "rx", &id, "\u{2764}", true).await;
    assert_eq!(counts, json!({"👍": 1, "❤️": 1}));
    assert_eq!(
        reader.until("reactions").await["payload"]["reactions"],
        counts
    );

    let far = jd.post("rx2", "elsewhere").await;
    let mut anonymous = app.client(None).await;
    anonymous.subscribe("rx").await;
    let unsubscribed = app.client(Some(&user_token("JD"))).await;
    let mut clients = [jd, anonymous, unsubscribed];
    let cases = [
        (
            0,
            json!({"room": "rx", "id": id, "emoji": "🙂", "on": true}),
            "bad_request",
        ),
        (
            0,
            json!({"room": "rx", "id": id, "emoji": "👍🏻", "on": true}),
            "bad_request",
        ),
        (
            0,
            json!({"room": "rx", "id": id, "emoji": "thumbs_up", "on": true}),
            "bad_request",
        ),
        (
            0,
            json!({"room": "rx", "id": id, "emoji": "👍"}),
            "bad_request",
        ),
        (
            0,
            json!({"room": "rx", "id": id, "emoji": "👍", "on": "yes"}),
            "bad_request",
        ),
        (
            0,
            json!({"room": "rx", "id": id, "emoji": "👍", "on": true, "n": 5}),
            "bad_request",
        ),
        (
            1,
            json!({"room": "rx", "id": id, "emoji": "👍", "on": true}),
            "unauthorized",
        ),
        (
            2,
            json!({"room": "rx", "id": id, "emoji": "👍", "on": true}),
            "not_subscribed",
        ),
        (
            0,
            json!({"room": "rx", "id": "no-such-id", "emoji": "👍", "on": true}),
            "not_found",
        ),
        (
            0,
            json!({"room": "rx", "id": far["id"], "emoji": "👍", "on": true}),
            "not_found",
        ),
    ];
    for (who, payload, code) in cases {
        let got = error_code(&mut clients[who], "react", payload.clone()).await;
        assert_eq!(got, code, "{payload}");
    }
    let [mut jd, ..] = clients;

    // mine: the user's own reactions, for signed-in connections only; counts in the backlog.
    let backlog = admin.subscribe("rx").await;
    assert_eq!(
        backlog["payload"]["mine"],
        json!({id.as_str().expect("id"): ["👍"]})
    );
    assert_eq!(backlog["payload"]["comments"][0]["reactions"], counts);
    let backlog = jd.subscribe("rx").await;
    assert_eq!(
        backlog["payload"]["mine"],
        json!({id.as_str().expect("id"): ["❤️"]})
    );
    let backlog = reader.subscribe("rx").await;
    assert!(backlog["payload"].get("mine").is_none(), "{backlog}");
    let page = admin
        .request("history", json!({"room": "rx", "before": 1000}))
        .await;
    assert_eq!(page["type"], "history", "{page}");
    assert_eq!(
        page["payload"]["mine"],
        json!({id.as_str().expect("id"): ["👍"]})
    );
    let page = reader
        .request("history", json!({"room": "rx", "before": 1000}))
        .await;
    assert!(page["payload"].get("mine").is_none(), "{page}");
    let empty = app
        .client(Some(&user_token("Nobody")))
        .await
        .subscribe("rx")
        .await;
    assert_eq!(empty["payload"]["mine"], json!({}));

    // Taking one back; then deleted: not_found.
    assert_eq!(
        react(&mut admin, "rx", &id, "👍", false).await,
        json!({"❤️": 1})
    );
    let deleted = jd.request("delete", json!({"room": "rx", "id": id})).await;
    assert_eq!(deleted["type"], "ack");
    let gone = error_code(
        &mut admin,
        "react",
        json!({"room": "rx", "id": id, "emoji": "😮", "on": true}),
    )
    .await;
    assert_eq!(gone, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_on_mongo() {
    let app = spawn_app(&Backends::mongo_only()).await;
    reactions_per_user_with_mine_and_live_counts(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_embedded() {
    let data = tempfile::tempdir().expect("tempdir");
    let backends = Backends {
        redis: None,
        mongo: None,
        prefix: test_harness::unique_prefix(),
        data_dir: Some(data.path().to_string_lossy().into_owned()),
        demo_dir: None,
    };
    let app = spawn_app(&backends).await;
    reactions_per_user_with_mine_and_live_counts(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaction_storms_are_rate_limited_per_user() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("storm").await;
    let comment = jd.post("storm", "target").await;
    let mut admin = app.client(Some(&admin_token())).await;
    admin.subscribe("storm").await;
    let mut codes = Vec::new();
    for i in 0..30 {
        let reply = jd
            .request(
                "react",
                json!({"room": "storm", "id": comment["id"], "emoji": "🎉", "on": i % 2 == 0}),
            )
            .await;
        codes.push(if reply["type"] == "ack" {
            "ack".to_owned()
        } else {
            reply["payload"]["code"].as_str().expect("code").to_owned()
        });
    }
    assert!(codes[..20].iter().all(|c| c == "ack"), "{codes:?}");
    assert!(codes[20..].iter().all(|c| c == "rate_limited"), "{codes:?}");
    // Another user is not affected, and the counts are what the accepted ones made.
    let counts = react(&mut admin, "storm", &comment["id"], "😢", true).await;
    assert_eq!(counts, json!({"😢": 1}), "20 toggles end with 🎉 off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_users_at_most_every_two_seconds() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("t").await;
    let mut jd_tab = app.client(Some(&user_token("JD"))).await;
    jd_tab.subscribe("t").await;
    let mut admin = app.client(Some(&admin_token())).await;
    admin.subscribe("t").await;
    let mut guest = app.client(None).await;
    guest.subscribe("t").await;

    // Anonymous, unsubscribed and malformed: errors, nothing relayed.
    assert_eq!(
        error_code(&mut guest, "typing", json!({"room": "t"})).await,
        "unauthorized"
    );
    let mut elsewhere = app.client(Some(&user_token("BadComedian"))).await;
    assert_eq!(
        error_code(&mut elsewhere, "typing", json!({"room": "t"})).await,
        "not_subscribed"
    );
    assert_eq!(
        error_code(&mut jd, "typing", json!({})).await,
        "bad_request"
    );
    assert_eq!(
        error_code(&mut jd, "typing", json!({"room": "t", "user": "Admin"})).await,
        "bad_request"
    );
    admin.silent_for(Duration::from_millis(200)).await;

    jd.send(json!({"type": "typing", "payload": {"room": "t"}}))
        .await;
    let expected = json!({"room": "t", "user": {"id": "JD", "name": "JD Fullname"}});
    assert_eq!(admin.until("typing").await["payload"], expected);
    assert_eq!(guest.until("typing").await["payload"], expected);
    // No reply to the typer, nothing to the typer's other tab; a second one within 2 s is
    // dropped silently.
    jd.send(json!({"type": "typing", "payload": {"room": "t"}}))
        .await;
    jd.silent_for(Duration::from_millis(300)).await;
    jd_tab.silent_for(Duration::from_millis(300)).await;
    admin.silent_for(Duration::from_millis(300)).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    jd.send(json!({"type": "typing", "payload": {"room": "t"}}))
        .await;
    assert_eq!(admin.until("typing").await["payload"], expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_each_user_once_and_each_guest() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.keep_presence = true;
    jd.subscribe("p").await;
    let first = jd.recv().await;
    assert_eq!(
        first,
        json!({"type": "presence", "payload": {"room": "p", "readers": 1, "users": [{"id": "JD", "name": "JD Fullname"}]}}),
        "presence right after subscribed"
    );
    let mut tab = app.client(Some(&user_token("JD"))).await;
    tab.keep_presence = true;
    tab.subscribe("p").await;
    assert_eq!(
        tab.recv().await["payload"]["readers"],
        1,
        "one user, two tabs"
    );
    let mut guest = app.client(None).await;
    guest.keep_presence = true;
    guest.subscribe("p").await;
    let seen = guest.recv().await;
    assert_eq!(seen["type"], "presence");
    assert_eq!(seen["payload"]["readers"], 2);
    assert_eq!(
        seen["payload"]["users"],
        json!([{"id": "JD", "name": "JD Fullname"}])
    );
    let mut admin = app.client(Some(&admin_token())).await;
    admin.subscribe("p").await;

    let (status, body) = get(&app, "/rooms/p/presence").await;
    assert_eq!(status, 200);
    assert_eq!(body["readers"], 3);
    assert_eq!(
        body["users"],
        json!([{"id": "JD", "name": "JD Fullname"}, {"id": "Admin", "name": "The Admin"}]),
        "earliest first"
    );
    let (status, body) = get(&app, "/rooms/empty/presence").await;
    assert_eq!((status, body), (200, json!({"readers": 0, "users": []})));
    let (status, _) = get(&app, "/rooms/a%20b/presence").await;
    assert_eq!(status, 400);

    // Leaving: unsubscribe, close; the others see it (at most one presence a second).
    guest.close().await;
    let unsub = admin.request("unsubscribe", json!({"room": "p"})).await;
    assert_eq!(unsub["type"], "unsubscribed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let frame = jd.until("presence").await;
        if frame["payload"]["readers"] == 1 {
            assert_eq!(
                frame["payload"]["users"],
                json!([{"id": "JD", "name": "JD Fullname"}])
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {frame}");
    }
    tab.close().await;
    let (_, body) = get(&app, "/rooms/p/presence").await;
    assert_eq!(body["readers"], 1, "JD still has a tab");
}
