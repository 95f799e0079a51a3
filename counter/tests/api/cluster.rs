//! The counter on a real local Redis Cluster (three masters): atomic increments, batch reads
//! across slots, a master restarted mid-test, and the start-up rule for the two settings.

use std::time::{Duration, Instant};

use counter::{Application, Settings};
use serde_json::json;
use test_harness::RedisCluster;

use crate::helpers::{Backend, TestApp, assert_error, spawn_app};

async fn on_cluster(cluster: &RedisCluster) -> TestApp {
    spawn_app(Backend::Cluster {
        nodes: cluster.seed_nodes(),
        prefix: test_harness::unique_prefix(),
    })
    .await
}

/// Book ids whose keys (under no prefix) sit on every node of the cluster.
fn ids_on_every_node(cluster: &RedisCluster, prefix: &str, nodes: usize) -> Vec<String> {
    let mut seen = vec![None; nodes];
    for i in 0..10_000 {
        let id = format!("book{i}");
        let node = cluster.node_for_key(&format!("{prefix}{id}"));
        if seen[node].is_none() {
            seen[node] = Some(id);
        }
        if seen.iter().all(Option::is_some) {
            break;
        }
    }
    seen.into_iter().flatten().collect()
}

#[tokio::test]
async fn concurrent_increments_on_a_cluster_add_exactly_n_and_batches_read_across_slots() {
    // Arrange
    let cluster = RedisCluster::start(3);
    let prefix = test_harness::unique_prefix();
    let app = spawn_app(Backend::Cluster {
        nodes: cluster.seed_nodes(),
        prefix: prefix.clone(),
    })
    .await;
    let other = spawn_app(Backend::Cluster {
        nodes: cluster.seed_nodes(),
        prefix: prefix.clone(),
    })
    .await;
    let ids = ids_on_every_node(&cluster, &prefix, 3);
    assert_eq!(ids.len(), 3, "one book id per master");

    // Act: 60 concurrent increments of one book through two instances, and one of each other.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let target = if i % 2 == 0 { &app } else { &other };
        let client = target.client.clone();
        let url = target.url(&format!("/counter/{}/incr", ids[0]));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .send()
                .await
                .expect("incr")
                .status()
                .as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("join"), 200);
    }
    assert_eq!(app.incr(&ids[1]).await.0, 200);
    assert_eq!(other.incr(&ids[2]).await.0, 200);

    // Assert
    let (status, body) = app.get(&format!("/counter/{}", ids[0])).await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(60)));
    let query = format!("/counter?ids={},{},{},never", ids[0], ids[1], ids[2]);
    let (status, body) = other.get(&query).await;
    assert_eq!(status, 200, "{body}");
    let mut expected = serde_json::Map::new();
    expected.insert(ids[0].clone(), json!(60));
    expected.insert(ids[1].clone(), json!(1));
    expected.insert(ids[2].clone(), json!(1));
    expected.insert("never".into(), json!(0));
    assert_eq!(body, json!({"counts": expected}));
    assert_eq!(app.get("/readyz").await.0, 200);
    app.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn a_restarted_master_gives_503_then_the_counter_recovers() {
    // Arrange
    let mut cluster = RedisCluster::start(3);
    let prefix = test_harness::unique_prefix();
    let app = spawn_app(Backend::Cluster {
        nodes: cluster.seed_nodes(),
        prefix: prefix.clone(),
    })
    .await;
    let ids = ids_on_every_node(&cluster, &prefix, 3);
    let victim = cluster.node_for_key(&format!("{prefix}{}", ids[0]));
    let survivor = ids
        .iter()
        .find(|id| cluster.node_for_key(&format!("{prefix}{id}")) != victim)
        .expect("a book on another node")
        .clone();
    assert_eq!(app.incr(&ids[0]).await.0, 200);
    assert_eq!(app.incr(&survivor).await.0, 200);

    // Act: the master holding the first book goes away.
    cluster.stop_node(victim);

    // Assert: its books answer 503, readiness names redis, the other shards still count
    // (cluster-require-full-coverage no).
    let (status, body) = app.incr(&ids[0]).await;
    assert_eq!(status, 503, "{body}");
    assert_error(&body, "unavailable");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body, json!({"status": "unavailable", "failing": ["redis"]}));
    let (status, body) = app.incr(&survivor).await;
    assert_eq!((status, body["count"].as_u64()), (200, Some(2)), "{body}");
    assert_eq!(app.get("/healthz").await.0, 200);

    // Act: it comes back (empty: nothing is persisted in the test cluster).
    cluster.start_node(victim);

    // Assert: the counter recovers without a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = app.incr(&ids[0]).await;
        if status == 200 {
            assert_eq!(
                body["count"], 1,
                "a restarted empty master starts from zero"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 30 s: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn starts_while_the_cluster_is_down_and_serves_once_it_is_up() {
    // Seeds where nothing listens yet: the service starts and is not ready.
    let app = on_cluster_nodes(&format!(
        "127.0.0.1:{},redis://127.0.0.1:{}",
        test_harness::free_port(),
        test_harness::free_port()
    ))
    .await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body["failing"], json!(["redis"]));
    assert_eq!(app.incr("1").await.0, 503);
    app.stop().await;

    let cluster = RedisCluster::start(3);
    let app = on_cluster(&cluster).await;
    assert_eq!(app.get("/readyz").await.0, 200);
    app.stop().await;
}

async fn on_cluster_nodes(nodes: &str) -> TestApp {
    spawn_app(Backend::Cluster {
        nodes: nodes.to_owned(),
        prefix: test_harness::unique_prefix(),
    })
    .await
}

#[tokio::test]
async fn redis_url_and_cluster_nodes_together_refuse_to_start() {
    let settings = Settings {
        host: "127.0.0.1".into(),
        port: 0,
        redis_url: Some("redis://127.0.0.1:6379".into()),
        redis_cluster_nodes: Some("127.0.0.1:7000".into()),
        ..Settings::default()
    };
    let error = Application::build(settings)
        .await
        .err()
        .expect("both set is a start-up error");
    let message = format!("{error:#}");
    assert!(
        message.contains("REDIS_URL") && message.contains("REDIS_CLUSTER_NODES"),
        "{message}"
    );
    let settings = Settings {
        port: 0,
        redis_cluster_nodes: Some("not a node".into()),
        ..Settings::default()
    };
    assert!(Application::build(settings).await.is_err());
}
