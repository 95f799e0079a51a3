//! The embedded store persists across restarts.

use crate::helpers::{Backend, spawn_app};

#[tokio::test]
async fn counts_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app(Backend::Embedded(dir.path().to_path_buf())).await;
    for _ in 0..5 {
        assert_eq!(app.incr("1").await.0, 200);
    }
    app.stop().await;
    assert!(
        dir.path().join("counter/counts.redb").exists(),
        "kept under DATA_DIR/counter"
    );

    let app = spawn_app(Backend::Embedded(dir.path().to_path_buf())).await;
    let (_, body) = app.get("/counter/1").await;
    assert_eq!(body["count"], 5);
    let (_, body) = app.incr("1").await;
    assert_eq!(body["count"], 6);
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);
    app.stop().await;
}
