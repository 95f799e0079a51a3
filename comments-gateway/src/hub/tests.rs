use super::member::Members;
use crate::metrics::GatewayMetrics;

use crate::transport::ConnTx;

fn metrics() -> GatewayMetrics {
    GatewayMetrics::new(&prometheus::Registry::new())
}

use crate::sequencer::tests::{c, u};

fn received(conn: &ConnTx) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(frame) = conn.try_recv() {
        out.push(String::from_utf8_lossy(frame.payload()).into_owned());
    }
    out
}

#[test]
fn a_truncated_backlog_gets_no_live_comments_until_the_next_since() {
    let m = metrics();
    let conn = ConnTx::detached(64);
    let mut room = Members::default();
    room.join(1, conn.clone());
    // Live 521 and 522 arrive while the backlog 1..500 (truncated) is read.
    room.offer(&c(521), 16, &m);
    room.offer(&c(522), 16, &m);
    room.activate(1, 500, true, &m);
    room.offer(&c(523), 16, &m);
    assert!(received(&conn).is_empty(), "nothing ahead of 501..520");
    // An update of a comment it has still goes out.
    room.offer(&u(400), 16, &m);
    assert_eq!(received(&conn), ["u400"]);
    // Subscribe again with since=500: backlog 501..523, then only what follows.
    room.join(1, conn.clone());
    room.offer(&c(524), 16, &m);
    room.activate(1, 523, false, &m);
    room.offer(&c(525), 16, &m);
    room.offer(&c(524), 16, &m);
    assert_eq!(received(&conn), ["c524", "c525"]);
}

#[test]
fn joining_members_get_only_what_their_backlog_lacks_and_updates_after() {
    let m = metrics();
    let conn = ConnTx::detached(64);
    let mut room = Members::default();
    room.join(1, conn.clone());
    room.offer(&c(10), 16, &m);
    room.offer(&u(10), 16, &m);
    room.offer(&c(11), 16, &m);
    room.offer(&u(11), 16, &m);
    room.offer(&u(12), 16, &m);
    room.activate(1, 10, false, &m);
    assert_eq!(received(&conn), ["u10", "c11", "u11"]);
}

#[test]
fn a_joining_member_that_holds_too_much_is_closed_as_too_slow() {
    let m = metrics();
    let conn = ConnTx::detached(64);
    let mut room = Members::default();
    room.join(1, conn.clone());
    for seq in 1..=4 {
        room.offer(&c(seq), 3, &m);
    }
    assert!(conn.closing().is_some());
}

#[test]
fn held_events_go_with_a_member_that_leaves_or_activates_and_others_are_not_held() {
    let m = metrics();
    let joining = ConnTx::detached(64);
    let active = ConnTx::detached(64);
    let mut room = Members::default();
    room.join(1, joining.clone());
    room.join(2, active.clone());
    room.activate(2, 0, false, &m);
    room.offer(&c(1), 16, &m);
    room.offer(&c(2), 16, &m);
    assert_eq!(received(&active), ["c1", "c2"]);
    assert_eq!(room.held_for(1), 2);
    assert_eq!(room.held_for(2), 0, "an active member holds nothing");
    room.remove(1);
    assert_eq!(
        room.held_for(1),
        0,
        "a member that left leaves nothing held"
    );
    room.join(1, joining.clone());
    room.offer(&c(3), 16, &m);
    room.activate(1, 2, false, &m);
    assert_eq!(room.held_for(1), 0);
    assert_eq!(received(&joining), ["c3"]);
}

mod coalescing {
    use std::sync::Arc;
    use std::time::Duration;

    use shared_proto::{Author, Comment, RoomId};

    use crate::bus::LocalBus;
    use crate::hub::{Hub, comment_frame};
    use crate::store::{EmbeddedStore, Store};
    use crate::transport::ConnTx;
    use crate::transport::test_support::{arrived, pair};

    fn comment(room: &RoomId, seq: u64) -> Comment {
        Comment {
            id: format!("c{seq}"),
            seq,
            room: room.clone(),
            author: Author {
                id: "JD".into(),
                name: "JD".into(),
            },
            text: format!("comment {seq}"),
            created_at: "2026-12-02T00:00:00.000Z".into(),
            reply_to: None,
            edited_at: None,
            reactions: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_busy_room_gathers_comments_until_its_window_ends_and_a_quiet_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            EmbeddedStore::open(&dir.path().join("db"), &dir.path().join("none")).expect("open");
        let hub = Hub::new(
            Store::Embedded(store),
            Arc::new(LocalBus),
            super::metrics(),
            16,
            tokio_util::task::TaskTracker::new(),
        )
        .coalescing(Duration::from_secs(2));
        let (server, client) = pair().await;
        let tx = ConnTx::new(server, 64);
        let room = RoomId::parse("r").expect("room");
        assert!(hub.join(&room, 1, tx.clone()).await.expect("answered"));
        hub.activate(&room, 1, 0, false);
        let frames = |seqs: &[u64]| -> Vec<u8> {
            seqs.iter()
                .flat_map(|&s| comment_frame(&comment(&room, s)).into_bytes().to_vec())
                .collect()
        };

        // Quiet room: written at once.
        hub.comment(&comment(&room, 1));
        assert_eq!(
            arrived(&client, Duration::from_millis(300)).await,
            frames(&[1])
        );
        // Within the window: held, then written together, in order, once.
        hub.comment(&comment(&room, 2));
        hub.comment(&comment(&room, 3));
        assert!(
            arrived(&client, Duration::from_millis(300))
                .await
                .is_empty(),
            "held until the window ends"
        );
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got.len() < frames(&[2, 3]).len() && tokio::time::Instant::now() < deadline {
            got.extend(arrived(&client, Duration::from_millis(200)).await);
        }
        assert_eq!(got, frames(&[2, 3]));
        assert_eq!(tx.queued(), 0);
    }
}
