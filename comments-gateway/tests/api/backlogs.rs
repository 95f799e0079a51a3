//! Backlogs after a fault: resumes inside a room's recent comments are answered from memory
//! (no store read, so a hung store does not delay them), and a resume the store must answer
//! waits for it (late, not never) while the connection's pings go on.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;
use crate::procs;

fn hung_backends(port: u16, db: &str) -> Backends {
    Backends {
        redis: None,
        mongo: Some(format!(
            "mongodb://127.0.0.1:{port}/{db}?directConnection=true"
        )),
        prefix: test_harness::unique_prefix(),
        data_dir: None,
        demo_dir: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_inside_the_recent_comments_needs_no_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = procs::port();
    let mongo = procs::mongo(port, dir.path());
    let app = spawn_app(&hung_backends(port, "ring")).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("r").await;
    let mut seqs = Vec::new();
    for i in 0..5 {
        let ack = jd.post("r", &format!("c{i}")).await;
        seqs.push(ack["seq"].as_u64().expect("seq"));
    }
    let deleted = jd.post("r", "gone soon").await;
    let gone = jd
        .request("delete", json!({"room": "r", "id": deleted["id"]}))
        .await;
    assert_eq!(gone["type"], "ack", "{gone}");

    // The store hangs; reloading readers resume from what they saw.
    mongo.signal("STOP");
    let started = Instant::now();
    let mut reader = app.client(Some(&user_token("Reader"))).await;
    let backlog = reader
        .request("subscribe", json!({"room": "r", "since": seqs[1]}))
        .await;
    let took = started.elapsed();
    assert_eq!(backlog["type"], "subscribed", "{backlog}");
    assert_eq!(
        seqs_of(&backlog),
        seqs[2..].to_vec(),
        "the rest, without the deleted one"
    );
    assert_eq!(backlog["payload"]["truncated"], false);
    let latest = reader
        .request("subscribe", json!({"room": "r", "limit": 2}))
        .await;
    assert_eq!(seqs_of(&latest), seqs[3..].to_vec());
    assert_eq!(latest["payload"]["truncated"], true);
    assert!(
        took < Duration::from_secs(2),
        "read the hung store? {took:?}"
    );
    mongo.signal("CONT");
    let metrics = reqwest::get(app.http("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // JD's first subscribe (the room started empty here) and the reader's two.
    assert!(
        metrics.contains(r#"gateway_backlogs_from_memory_total{service="comments-gateway"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"gateway_backlogs_from_store_total{service="comments-gateway"} 0"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_the_store_must_answer_waits_for_it_while_pings_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = procs::port();
    let mongo = procs::mongo(port, dir.path());
    let app = spawn_app(&hung_backends(port, "late")).await;
    let mut jd = app.client(Some(&user_token("JD"))).await;
    jd.subscribe("l").await;
    jd.post("l", "one").await;
    jd.post("l", "two").await;
    // The room is dropped here: its next start and this backlog need the store.
    let left = jd.request("unsubscribe", json!({"room": "l"})).await;
    assert_eq!(left["type"], "unsubscribed");

    mongo.signal("STOP");
    let mut reader = app.client(Some(&user_token("Reader"))).await;
    reader
        .send(json!({"type": "subscribe", "ref": "s", "payload": {"room": "l", "since": 0}}))
        .await;
    let mut longest = Duration::ZERO;
    let hung = Instant::now();
    // Longer than the store deadline: the subscribe is not refused, it waits.
    while hung.elapsed() < Duration::from_secs(8) {
        let asked = Instant::now();
        reader
            .send(json!({"type": "ping", "ref": "p", "payload": {}}))
            .await;
        loop {
            let frame = reader.recv().await;
            assert_ne!(frame["ref"], "s", "answered while the store hangs: {frame}");
            if frame["ref"] == "p" {
                break;
            }
        }
        longest = longest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        longest < Duration::from_secs(1),
        "pings stalled: {longest:?}"
    );
    mongo.signal("CONT");
    let back = Instant::now();
    let backlog = loop {
        assert!(back.elapsed() < Duration::from_secs(40), "never answered");
        if let Some(frame) = reader.recv_within(Duration::from_secs(1)).await
            && frame["ref"] == "s"
        {
            break frame;
        }
    };
    assert_eq!(backlog["type"], "subscribed", "late, not never: {backlog}");
    assert_eq!(seqs_of(&backlog), vec![1, 2]);
    // Live delivery follows.
    jd.subscribe("l").await;
    jd.post("l", "three").await;
    let live = reader.until("comment").await;
    assert_eq!(live["payload"]["seq"], 3);
}

fn seqs_of(frame: &serde_json::Value) -> Vec<u64> {
    seqs(&frame["payload"]["comments"])
}
