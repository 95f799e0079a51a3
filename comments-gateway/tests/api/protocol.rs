//! The WebSocket protocol on one instance: every message type and every bad input.

use std::time::Duration;

use serde_json::json;
use shared_proto::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_names_the_user_or_null() {
    let app = spawn_app(&Backends::mongo_only()).await;

    let anonymous = app.client(None).await;
    assert!(anonymous.welcome["payload"]["user"].is_null());
    assert_eq!(anonymous.welcome["payload"]["heartbeatMs"], 15000);
    assert!(anonymous.welcome["payload"]["connectionId"].is_string());

    let jd = app.client(Some(&user_token("JD"))).await;
    assert_eq!(
        jd.welcome["payload"]["user"],
        json!({"id": "JD", "name": "JD Fullname", "role": "user"})
    );
    let admin = app.client(Some(&admin_token())).await;
    assert_eq!(admin.welcome["payload"]["user"]["role"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_expired_tokens_get_401_before_the_upgrade() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let expired = token_for("JD", "x", Role::User, -30);
    let wrong_key = token_signed("JD", "x", Role::User, 3600, "another-secret");
    for token in ["garbage", expired.as_str(), wrong_key.as_str()] {
        let request = app
            .ws_url(Some(token))
            .into_client_request()
            .expect("request");
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 401);
                let body: serde_json::Value =
                    serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                        .expect("JSON body");
                assert_eq!(body["error"]["code"], "unauthorized");
            }
            other => panic!("expected 401, got {:?}", other.map(|(_, r)| r.status())),
        }
    }
    // A plain GET without the upgrade is a JSON 400, not a crash.
    let resp = reqwest::get(app.http("/ws")).await.expect("answers");
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_bad_frames_keep_the_connection_open() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut client = app.client(None).await;

    let pong = client.request("ping", json!({})).await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["payload"], json!({}));

    client.send_raw(Message::text("not json")).await;
    let err = client.recv().await;
    assert_eq!(
        (err["type"].as_str(), err["payload"]["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );

    client
        .send(json!({"type": "shout", "ref": 7, "payload": {}}))
        .await;
    let err = client.recv().await;
    assert_eq!(err["payload"]["code"], "bad_request");
    assert_eq!(err["ref"], 7);

    client.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    let err = client.recv().await;
    assert_eq!(err["payload"]["code"], "bad_request");

    client
        .send(json!({"type": "subscribe", "ref": "s", "payload": {"room": "a/b"}}))
        .await;
    let err = client.recv().await;
    assert_eq!(
        (err["payload"]["code"].as_str(), err["ref"].as_str()),
        (Some("bad_request"), Some("s"))
    );

    let pong = client.request("ping", json!({})).await;
    assert_eq!(pong["type"], "pong", "still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_64_kib_close_with_1009() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut client = app.client(None).await;
    let at_limit = format!(
        "{{\"type\":\"ping\",\"payload\":{{}},\"ref\":\"{}\"}}",
        "x".repeat(10)
    );
    client.send_raw(Message::text(at_limit)).await;
    assert_eq!(client.recv().await["type"], "pong");

    client.send_raw(Message::text("y".repeat(65_537))).await;
    match client.ended().await {
        Ended::Closed(code) => assert_eq!(code, Some(1009)),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_rules_and_post_preconditions() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut anonymous = app.client(None).await;
    anonymous.subscribe("1").await;
    let reply = anonymous
        .request("post", json!({"room": "1", "text": "hi"}))
        .await;
    assert_eq!(reply["payload"]["code"], "unauthorized");

    let mut jd = app.client(Some(&user_token("JD"))).await;
    let reply = jd.request("post", json!({"room": "1", "text": "hi"})).await;
    assert_eq!(reply["payload"]["code"], "not_subscribed");

    jd.subscribe("1").await;
    let reply = jd
        .request("post", json!({"room": "1", "text": "   "}))
        .await;
    assert_eq!(reply["payload"]["code"], "bad_request");
    let reply = jd
        .request("post", json!({"room": "1", "text": "ж".repeat(2001)}))
        .await;
    assert_eq!(reply["payload"]["code"], "too_large");

    let long = jd.post("1", &format!("  {}  ", "ж".repeat(2000))).await;
    assert_eq!(long["text"].as_str().map(|t| t.chars().count()), Some(2000));
    let markup = jd.post("1", "<script>alert(1)</script> & co").await;
    assert_eq!(markup["text"], "<script>alert(1)</script> & co");
    assert_eq!(markup["author"], json!({"id": "JD", "name": "JD Fullname"}));
    assert_eq!(markup["room"], "1");
    assert!(
        markup["createdAt"]
            .as_str()
            .is_some_and(|t| t.len() == 24 && t.ends_with('Z'))
    );
    assert!(markup["seq"].as_u64() > long["seq"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn author_gets_ack_before_comment_and_every_subscriber_gets_it_once() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut reader = app.client(None).await;
    reader.subscribe("index").await;
    let mut other_room = app.client(None).await;
    other_room.subscribe("2").await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("index").await;

    jd.send(json!({"type": "post", "ref": "p", "payload": {"room": "index", "text": "hello"}}))
        .await;
    let ack = jd.recv().await;
    assert_eq!(
        (ack["type"].as_str(), ack["ref"].as_str()),
        (Some("ack"), Some("p"))
    );
    let own = jd.recv().await;
    assert_eq!(own["type"], "comment");
    assert_eq!(own["payload"], ack["payload"]["comment"]);
    let seen = reader.recv().await;
    assert_eq!(seen["payload"], ack["payload"]["comment"]);

    reader.silent_for(Duration::from_millis(300)).await;
    other_room.silent_for(Duration::from_millis(10)).await;
    jd.silent_for(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_backlog_since_history_and_unsubscribe() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("7").await;
    for i in 1..=5 {
        jd.post("7", &format!("c{i}")).await;
        jd.until("comment").await;
    }
    let mut reader = app.client(None).await;
    let latest = reader
        .request("subscribe", json!({"room": "7", "limit": 2}))
        .await;
    assert_eq!(seqs(&latest["payload"]["comments"]), vec![4, 5]);
    assert_eq!(latest["payload"]["truncated"], true);
    let all = reader.request("subscribe", json!({"room": "7"})).await;
    assert_eq!(seqs(&all["payload"]["comments"]), vec![1, 2, 3, 4, 5]);
    assert_eq!(all["payload"]["truncated"], false);
    let since = reader
        .request("subscribe", json!({"room": "7", "since": 2, "limit": 1}))
        .await;
    assert_eq!(seqs(&since["payload"]["comments"]), vec![3, 4, 5]);
    assert_eq!(since["payload"]["truncated"], false);

    let history = reader
        .request("history", json!({"room": "7", "before": 5, "limit": 2}))
        .await;
    assert_eq!(history["type"], "history");
    assert_eq!(seqs(&history["payload"]["comments"]), vec![3, 4]);
    assert_eq!(history["payload"]["more"], true);
    let history = reader
        .request("history", json!({"room": "7", "before": 3}))
        .await;
    assert_eq!(seqs(&history["payload"]["comments"]), vec![1, 2]);
    assert_eq!(history["payload"]["more"], false);
    let bad = reader
        .request("history", json!({"room": "7", "before": 3, "limit": 0}))
        .await;
    assert_eq!(bad["payload"]["code"], "bad_request");
    let bad = reader
        .request("subscribe", json!({"room": "7", "limit": 201}))
        .await;
    assert_eq!(bad["payload"]["code"], "bad_request");

    // Subscribed three times: still one live copy.
    jd.post("7", "six").await;
    let live = reader.recv().await;
    assert_eq!(
        (live["type"].as_str(), live["payload"]["seq"].as_u64()),
        (Some("comment"), Some(6))
    );
    reader.silent_for(Duration::from_millis(300)).await;

    let reply = reader.request("unsubscribe", json!({"room": "7"})).await;
    assert_eq!(reply["type"], "unsubscribed");
    assert_eq!(reply["payload"]["room"], "7");
    jd.post("7", "seven").await;
    reader.silent_for(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_fifty_rooms_per_connection() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut client = app.client(None).await;
    for i in 0..50 {
        client.subscribe(&format!("r{i}")).await;
    }
    let refused = client.request("subscribe", json!({"room": "r50"})).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["payload"]["code"], "bad_request");
    client.subscribe("r49").await;
    client.request("unsubscribe", json!({"room": "r0"})).await;
    client.subscribe("r50").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_rules_and_broadcast() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("3").await;
    let first = jd.post("3", "first").await;
    let second = jd.post("3", "second").await;
    let mut reader = app.client(None).await;
    reader.subscribe("3").await;

    let mut other = app.client(Some(&user_token("BadComedian"))).await;
    let reply = other
        .request("delete", json!({"room": "3", "id": first["id"]}))
        .await;
    assert_eq!(reply["payload"]["code"], "forbidden");
    let reply = reader
        .request("delete", json!({"room": "3", "id": first["id"]}))
        .await;
    assert_eq!(reply["payload"]["code"], "unauthorized");

    let reply = jd
        .request("delete", json!({"room": "3", "id": first["id"]}))
        .await;
    assert_eq!(reply["type"], "ack");
    assert_eq!(reply["payload"], json!({"id": first["id"]}));
    let gone = reader.until("comment_deleted").await;
    assert_eq!(gone["payload"], json!({"room": "3", "id": first["id"]}));

    let reply = jd
        .request("delete", json!({"room": "3", "id": first["id"]}))
        .await;
    assert_eq!(reply["payload"]["code"], "not_found");
    let reply = jd
        .request("delete", json!({"room": "3", "id": "nope"}))
        .await;
    assert_eq!(reply["payload"]["code"], "not_found");
    let reply = jd
        .request("delete", json!({"room": "4", "id": second["id"]}))
        .await;
    assert_eq!(reply["payload"]["code"], "not_found", "wrong room");

    let mut admin = app.client(Some(&admin_token())).await;
    let reply = admin
        .request("delete", json!({"room": "3", "id": second["id"]}))
        .await;
    assert_eq!(reply["type"], "ack");

    let backlog = reader.request("subscribe", json!({"room": "3"})).await;
    assert_eq!(backlog["payload"]["comments"], json!([]));
    let third = jd.post("3", "third").await;
    assert_eq!(third["seq"], 3, "a deleted seq is never reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_client_id_returns_the_first_comment() {
    let app = spawn_app(&Backends::mongo_only()).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("5").await;
    let mut reader = app.client(None).await;
    reader.subscribe("5").await;

    let first = jd
        .request(
            "post",
            json!({"room": "5", "text": "once", "clientId": "c-1"}),
        )
        .await;
    let again = jd
        .request(
            "post",
            json!({"room": "5", "text": "once more", "clientId": "c-1"}),
        )
        .await;
    assert_eq!(again["type"], "ack");
    assert_eq!(again["payload"]["comment"], first["payload"]["comment"]);
    // Another user may use the same clientId.
    let mut bc = app.client(Some(&user_token("BadComedian"))).await;
    bc.subscribe("5").await;
    let theirs = bc
        .request(
            "post",
            json!({"room": "5", "text": "mine", "clientId": "c-1"}),
        )
        .await;
    assert_ne!(
        theirs["payload"]["comment"]["id"],
        first["payload"]["comment"]["id"]
    );

    assert_eq!(reader.recv().await["payload"]["text"], "once");
    assert_eq!(reader.recv().await["payload"]["text"], "mine");
    reader.silent_for(Duration::from_millis(300)).await;
    let backlog = reader.request("subscribe", json!({"room": "5"})).await;
    assert_eq!(seqs(&backlog["payload"]["comments"]), vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_over_the_rate_limit_are_refused_and_not_stored() {
    let mut settings = settings(&Backends::mongo_only());
    settings.post_burst = 2;
    settings.post_rate_per_sec = 0.5;
    let app = spawn_with(settings).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("9").await;
    // Refused posts do not count.
    jd.request("post", json!({"room": "9", "text": " "})).await;
    jd.post("9", "one").await;
    jd.post("9", "two").await;
    let refused = jd
        .request("post", json!({"room": "9", "text": "three"}))
        .await;
    assert_eq!(refused["payload"]["code"], "rate_limited");
    // Per user: another user still may post.
    let mut bc = app.client(Some(&user_token("BadComedian"))).await;
    bc.subscribe("9").await;
    bc.post("9", "other").await;
    let backlog = bc.request("subscribe", json!({"room": "9"})).await;
    let texts: Vec<&str> = backlog["payload"]["comments"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect();
    assert_eq!(texts, vec!["one", "two", "other"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peers_are_dropped_after_two_heartbeats() {
    let mut settings = settings(&Backends::mongo_only());
    settings.heartbeat_ms = 200;
    let app = spawn_with(settings).await;
    let mut client = app.client(None).await;
    assert_eq!(client.welcome["payload"]["heartbeatMs"], 200);
    // Not reading means not answering pings.
    tokio::time::sleep(Duration::from_millis(900)).await;
    match client.ended().await {
        Ended::Closed(_) | Ended::Dropped => {}
    }
    // A reading client answers pings and stays.
    let mut alive = app.client(None).await;
    alive.silent_for(Duration::from_millis(900)).await;
    assert_eq!(alive.request("ping", json!({})).await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_keep_up_is_closed_with_1013() {
    let mut settings = settings(&Backends::mongo_only());
    settings.client_queue_max = 8;
    let app = spawn_with(settings).await;
    // A tiny receive buffer, and then no reading: the server's queue fills up.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket
        .connect(format!("127.0.0.1:{}", app.port).parse().expect("addr"))
        .await
        .expect("connects");
    let (mut slow, _) = tokio_tungstenite::client_async(app.ws_url(None), stream)
        .await
        .expect("upgrade");
    let mut fast = app.client(None).await;
    let fast_reader = tokio::spawn(async move {
        for _ in 0..1200 {
            assert_eq!(fast.until("notice").await["type"], "notice");
        }
    });

    // 8 KB per notice (2000 four-byte code points): more than the kernel buffers hold.
    let text = "😀".repeat(2000);
    let client = reqwest::Client::new();
    for _ in 0..1200 {
        let status = client
            .post(app.http("/admin/notice"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"text": text}))
            .send()
            .await
            .expect("answers")
            .status();
        assert_eq!(status.as_u16(), 202);
    }
    fast_reader
        .await
        .expect("the client that keeps up gets every notice");
    use futures_util::StreamExt;
    let mut code = None;
    let mut frames = 0;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(WAIT, slow.next()).await {
        frames += 1;
        if let Message::Close(frame) = msg {
            code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    let metrics0 = reqwest::get(app.http("/metrics"))
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    assert_eq!(code, Some(1013), "after {frames} frames; {metrics0}");
    let metrics = reqwest::get(app.http("/metrics"))
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("gateway_slow_client_closes_total{service=\"comments-gateway\"} 1"),
        "{metrics}"
    );
}
