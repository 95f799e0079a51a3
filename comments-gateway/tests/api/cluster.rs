//! Gateways on a Redis Cluster (three masters of the test's own): sharded pub/sub per room, a
//! master restarted mid-test, readiness, and the one-Redis-or-a-cluster rule.

use std::time::{Duration, Instant};

use comments_gateway::Application;
use serde_json::{Value, json};
use test_harness::RedisCluster;

use crate::helpers::*;

/// Recovery after a master restart may take a while on a loaded machine.
const RECOVERY: Duration = Duration::from_secs(60);

fn cluster_backends(cluster: &RedisCluster) -> (Backends, comments_gateway::Settings) {
    let backends = Backends::mongo_only();
    let settings = comments_gateway::Settings {
        redis_cluster_nodes: Some(cluster.seed_nodes()),
        ..settings(&backends)
    };
    (backends, settings)
}

/// Two gateway instances on `cluster`, both ready.
async fn two_ready_gateways(cluster: &RedisCluster) -> (Backends, TestApp, TestApp) {
    let (backends, settings) = cluster_backends(cluster);
    let a = spawn_with(settings.clone()).await;
    let b = spawn_with(settings).await;
    a.wait_ready_within(200, RECOVERY).await;
    b.wait_ready_within(200, RECOVERY).await;
    (backends, a, b)
}

/// A room name whose channel lives on node `node` (and differs from `not`).
fn room_on(cluster: &RedisCluster, prefix: &str, node: usize, not: &[String]) -> String {
    (0..10_000)
        .map(|i| format!("r{i}"))
        .find(|room| {
            !not.contains(room) && cluster.node_for_key(&format!("{prefix}room:{room}")) == node
        })
        .expect("a room on every node")
}

async fn shardnumsub(url: &str, channel: &str) -> i64 {
    let client = redis::Client::open(url).expect("node url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("node answers");
    let reply: Vec<Value> = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query_async::<Vec<redis::Value>>(&mut conn)
        .await
        .expect("shardnumsub")
        .into_iter()
        .map(|v| match v {
            redis::Value::Int(n) => json!(n),
            _ => Value::Null,
        })
        .collect();
    reply.get(1).and_then(Value::as_i64).unwrap_or(0)
}

async fn wait_shardnumsub(url: &str, channel: &str, want: i64) {
    let started = Instant::now();
    loop {
        let count = shardnumsub(url, channel).await;
        if count == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{channel} has {count} shard subscribers, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn comments(client: &mut Client, count: usize, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "only {out:?} arrived");
        let frame = client.recv_within(Duration::from_secs(5)).await;
        if let Some(frame) = frame
            && frame["type"] == "comment"
        {
            out.push(frame["payload"].clone());
        }
    }
    out
}

fn texts(comments: &[Value]) -> Vec<String> {
    comments
        .iter()
        .filter_map(|c| c["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_cluster_deliver_once_in_order_on_sharded_channels() {
    let cluster = RedisCluster::start(3);
    let (backends, a, b) = two_ready_gateways(&cluster).await;
    let urls = cluster.node_urls();
    // One room on each master.
    let mut rooms: Vec<String> = Vec::new();
    for node in 0..3 {
        let room = room_on(&cluster, &backends.prefix, node, &rooms);
        rooms.push(room);
    }
    for (node, room) in rooms.iter().enumerate() {
        let channel = format!("{}room:{room}", backends.prefix);
        wait_shardnumsub(&urls[node], &channel, 0).await;
    }
    let mut readers = Vec::new();
    for room in &rooms {
        for app in [&a, &b] {
            let mut reader = app.client(None).await;
            reader.subscribe(room).await;
            readers.push((room.clone(), reader));
        }
    }
    for (node, room) in rooms.iter().enumerate() {
        // One sharded subscription per instance, on the master that owns the slot only.
        let channel = format!("{}room:{room}", backends.prefix);
        wait_shardnumsub(&urls[node], &channel, 2).await;
    }

    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for room in &rooms {
        for (i, app) in [&a, &b].into_iter().enumerate() {
            let mut poster = app.client(Some(&user_token(&format!("user{i}")))).await;
            poster.subscribe(room).await;
            let room = room.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..EACH {
                    let reply = poster
                        .request(
                            "post",
                            json!({"room": room, "text": format!("p{i}-{n}"), "clientId": format!("{room}-k{n}")}),
                        )
                        .await;
                    assert_eq!(reply["type"], "ack", "{reply}");
                }
                poster
            }));
        }
    }
    let mut posters = Vec::new();
    for task in tasks {
        posters.push(task.await.expect("poster"));
    }
    let total = 2 * EACH;
    for (room, reader) in &mut readers {
        let got = comments(reader, total, Duration::from_secs(60)).await;
        let seqs: Vec<u64> = got
            .iter()
            .map(|c| c["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "room {room}: in order, none missing, none twice"
        );
        reader.silent_for(Duration::from_millis(300)).await;
    }

    // Admin notices reach every instance.
    assert_eq!(
        a.notice(Some(ADMIN_TOKEN), json!({"text": "everyone"}))
            .await,
        202
    );
    for (_, reader) in &mut readers {
        let notice = reader.until("notice").await;
        assert_eq!(
            notice["payload"],
            json!({"text": "everyone", "from": "admin"})
        );
    }

    // Channels go away with their last local subscriber.
    for poster in posters {
        poster.close().await;
    }
    for (_, reader) in readers {
        reader.close().await;
    }
    for (node, room) in rooms.iter().enumerate() {
        let channel = format!("{}room:{room}", backends.prefix);
        wait_shardnumsub(&urls[node], &channel, 0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_recovers_its_rooms_while_the_others_stay_live() {
    let mut cluster = RedisCluster::start(3);
    let (backends, settings) = cluster_backends(&cluster);
    let a = spawn_with(settings.clone()).await;
    let b = spawn_with(settings).await;
    a.wait_ready_within(200, RECOVERY).await;
    b.wait_ready_within(200, RECOVERY).await;
    let down_room = room_on(&cluster, &backends.prefix, 1, &[]);
    // A second room on the same master: its channels span two slots, so they must be
    // resubscribed one by one (one SSUBSCRIBE for both would fail with CROSSSLOT).
    let down_room_2 = room_on(
        &cluster,
        &backends.prefix,
        1,
        std::slice::from_ref(&down_room),
    );
    let live_room = room_on(&cluster, &backends.prefix, 2, &[]);

    let mut poster = a.client(Some(&user_token("JD"))).await;
    poster.subscribe(&down_room).await;
    poster.subscribe(&live_room).await;
    let mut down_reader = b.client(None).await;
    down_reader.subscribe(&down_room).await;
    let mut live_reader = b.client(None).await;
    live_reader.subscribe(&live_room).await;
    poster.subscribe(&down_room_2).await;
    let mut down_reader_2 = b.client(None).await;
    down_reader_2.subscribe(&down_room_2).await;
    poster.post(&down_room, "before").await;
    poster.post(&live_room, "before").await;
    assert_eq!(
        texts(&comments(&mut down_reader, 1, RECOVERY).await),
        ["before"]
    );
    assert_eq!(
        texts(&comments(&mut live_reader, 1, RECOVERY).await),
        ["before"]
    );

    cluster.stop_node(1);
    // Stored while the room's shard is away: the publishes cannot reach the other instance.
    poster.post(&down_room, "gap-1").await;
    poster.post(&down_room, "gap-2").await;
    poster.post(&down_room_2, "gap-a").await;
    // The other shards never notice: live delivery, no gap, instances stay ready.
    for n in 0..3 {
        poster.post(&live_room, &format!("live-{n}")).await;
        let got = comments(&mut live_reader, 1, Duration::from_secs(10)).await;
        assert_eq!(texts(&got), [format!("live-{n}")]);
    }
    assert_eq!(a.ready().await.0, 200);
    assert_eq!(b.ready().await.0, 200);

    cluster.start_node(1);
    // The room on the restarted master catches up from the store, in order, once each.
    let got = comments(&mut down_reader, 2, RECOVERY).await;
    assert_eq!(texts(&got), ["gap-1", "gap-2"]);
    let got = comments(&mut down_reader_2, 1, RECOVERY).await;
    assert_eq!(texts(&got), ["gap-a"]);
    // And it is live again.
    let started = Instant::now();
    loop {
        poster.post(&down_room, "after").await;
        let got = comments(&mut down_reader, 1, RECOVERY).await;
        if texts(&got) == ["after"] {
            break;
        }
        assert!(
            started.elapsed() < RECOVERY,
            "the room never came back live"
        );
    }
    down_reader.silent_for(Duration::from_millis(500)).await;
    poster.post(&down_room_2, "after-a").await;
    assert_eq!(
        texts(&comments(&mut down_reader_2, 1, RECOVERY).await),
        ["after-a"]
    );
    down_reader_2.silent_for(Duration::from_millis(300)).await;
    poster.post(&live_room, "still").await;
    assert_eq!(
        texts(&comments(&mut live_reader, 1, RECOVERY).await),
        ["still"]
    );
    live_reader.silent_for(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_redis_while_the_cluster_cannot_serve() {
    // Full coverage required: one master down stops the whole cluster.
    let mut cluster = RedisCluster::start_with(3, true);
    let (_backends, settings) = cluster_backends(&cluster);
    let app = spawn_with(settings).await;
    app.wait_ready_within(200, RECOVERY).await;
    cluster.stop_node(0);
    let body = app.wait_ready_within(503, RECOVERY).await;
    assert!(body.to_string().contains("redis"), "{body}");
    cluster.start_node(0);
    app.wait_ready_within(200, RECOVERY).await;
}

#[tokio::test]
async fn redis_url_and_cluster_nodes_together_are_a_start_up_error() {
    let backends = Backends::mongo_only();
    let both = comments_gateway::Settings {
        redis_url: Some("redis://127.0.0.1:1".into()),
        redis_cluster_nodes: Some("127.0.0.1:2".into()),
        ..settings(&backends)
    };
    let err = Application::build(both)
        .await
        .err()
        .expect("refused at start-up");
    let message = format!("{err:#}");
    assert!(
        message.contains("REDIS_URL") && message.contains("REDIS_CLUSTER_NODES"),
        "{message}"
    );
    let bad = comments_gateway::Settings {
        redis_cluster_nodes: Some("not-a-node".into()),
        ..settings(&backends)
    };
    let err = Application::build(bad)
        .await
        .err()
        .expect("bad seed refused");
    assert!(format!("{err:#}").contains("REDIS_CLUSTER_NODES"));
}

/// Presence is shared through the cluster as through one Redis: readers on two instances are
/// counted together in rooms whose keys live on each of the three masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_readers_of_both_instances_on_every_shard() {
    let cluster = RedisCluster::start(3);
    let (_backends, a, b) = two_ready_gateways(&cluster).await;
    let mut rooms: Vec<String> = Vec::new();
    for node in 0..3 {
        // The presence keys of a room hash on `{room}`.
        let room = (0..10_000)
            .map(|i| format!("p{i}"))
            .find(|room| {
                !rooms.contains(room) && cluster.node_for_key(&format!("{{{room}}}")) == node
            })
            .expect("a room on every node");
        rooms.push(room);
    }
    let mut readers = Vec::new();
    for room in &rooms {
        let mut on_a = a.client(Some(&user_token("JD"))).await;
        on_a.subscribe(room).await;
        let mut on_b = b.client(None).await;
        on_b.subscribe(room).await;
        readers.push((on_a, on_b));
    }
    for room in &rooms {
        for app in [&a, &b] {
            let started = Instant::now();
            loop {
                let presence: Value = reqwest::get(app.http(&format!("/rooms/{room}/presence")))
                    .await
                    .expect("answers")
                    .json()
                    .await
                    .expect("json");
                if presence["readers"] == 2 && presence["users"][0]["id"] == "JD" {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "room {room} on port {}: {presence}",
                    app.port
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
