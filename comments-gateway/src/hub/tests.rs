use super::member::Member;
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
    let mut member = Member::new(conn.clone());
    // Live 521 and 522 arrive while the backlog 1..500 (truncated) is read.
    member.offer(&c(521), 16, &m);
    member.offer(&c(522), 16, &m);
    member.activate(500, true, &m);
    member.offer(&c(523), 16, &m);
    assert!(received(&conn).is_empty(), "nothing ahead of 501..520");
    // An update of a comment it has still goes out.
    member.offer(&u(400), 16, &m);
    assert_eq!(received(&conn), ["u400"]);
    // Subscribe again with since=500: backlog 501..523, then only what follows.
    member.rejoin();
    member.offer(&c(524), 16, &m);
    member.activate(523, false, &m);
    member.offer(&c(525), 16, &m);
    member.offer(&c(524), 16, &m);
    assert_eq!(received(&conn), ["c524", "c525"]);
}

#[test]
fn joining_members_get_only_what_their_backlog_lacks_and_updates_after() {
    let m = metrics();
    let conn = ConnTx::detached(64);
    let mut member = Member::new(conn.clone());
    member.offer(&c(10), 16, &m);
    member.offer(&u(10), 16, &m);
    member.offer(&c(11), 16, &m);
    member.offer(&u(11), 16, &m);
    member.offer(&u(12), 16, &m);
    member.activate(10, false, &m);
    assert_eq!(received(&conn), ["u10", "c11", "u11"]);
}

#[test]
fn a_joining_member_that_holds_too_much_is_closed_as_too_slow() {
    let m = metrics();
    let conn = ConnTx::detached(64);
    let mut member = Member::new(conn.clone());
    for seq in 1..=4 {
        member.offer(&c(seq), 3, &m);
    }
    assert!(conn.closing().is_some());
}
