//! A room's connections: what each has been sent, and what waits for those still joining.

use std::collections::HashMap;

use crate::metrics::GatewayMetrics;
use crate::sequencer::Event;
use crate::transport::{ConnId, ConnTx};

/// Where a member stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MemberState {
    /// Its backlog is being read: live events wait in [`Members::held`] (bounded).
    Joining,
    /// Gets every comment above `last_seq`.
    Active,
    /// Its last backlog was truncated: live comments are not sent until it resubscribes
    /// with `since` (updates of comments it has are).
    Behind,
}

/// A connection in a room: 24 bytes, because a room may hold tens of thousands of them and
/// the map's spare capacity multiplies every byte.
struct Member {
    conn: ConnTx,
    /// The highest comment seq this connection has (backlog or live).
    last_seq: u64,
    state: MemberState,
}

/// The members of one room.
#[derive(Default)]
pub(super) struct Members {
    members: HashMap<ConnId, Member>,
    /// Live events for members still joining (only those that got one), in order.
    held: HashMap<ConnId, Vec<Event>>,
}

impl Members {
    /// Adds `id` as joining; a member subscribing again waits for its new backlog too.
    pub(super) fn join(&mut self, id: ConnId, conn: ConnTx) {
        self.members
            .entry(id)
            .and_modify(|m| m.state = MemberState::Joining)
            .or_insert(Member {
                conn,
                last_seq: 0,
                state: MemberState::Joining,
            });
    }

    /// Removes `id` and what was held for it.
    pub(super) fn remove(&mut self, id: ConnId) {
        self.members.remove(&id);
        self.held.remove(&id);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(super) fn contains(&self, id: ConnId) -> bool {
        self.members.contains_key(&id)
    }

    /// The highest comment seq `id` has.
    pub(super) fn last_seq(&self, id: ConnId) -> Option<u64> {
        self.members.get(&id).map(|m| m.last_seq)
    }

    /// Every member's connection.
    pub(super) fn conns(&self) -> impl Iterator<Item = &ConnTx> {
        self.members.values().map(|m| &m.conn)
    }

    /// Offers one ordered event to every member; returns the frames queued.
    pub(super) fn offer(
        &mut self,
        event: &Event,
        joining_max: usize,
        metrics: &GatewayMetrics,
    ) -> u64 {
        let mut queued = 0;
        for (id, member) in &mut self.members {
            match member.state {
                MemberState::Joining => {
                    let held = self.held.entry(*id).or_default();
                    if held.len() < joining_max {
                        held.push(event.clone());
                    } else {
                        member.conn.overflow(metrics);
                    }
                }
                MemberState::Active => queued += u64::from(member.send(event, metrics)),
                MemberState::Behind => {
                    if matches!(event, Event::Update { .. }) {
                        queued += u64::from(member.send(event, metrics));
                    }
                }
            }
        }
        queued
    }

    /// `id`'s backlog went out, ending at `backlog_last`: held events it lacks follow, unless
    /// it was truncated (then the member is behind until its next `since`).
    pub(super) fn activate(
        &mut self,
        id: ConnId,
        backlog_last: u64,
        truncated: bool,
        metrics: &GatewayMetrics,
    ) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let was_joining = member.state == MemberState::Joining;
        member.state = if truncated {
            MemberState::Behind
        } else {
            MemberState::Active
        };
        member.last_seq = if truncated {
            backlog_last
        } else {
            member.last_seq.max(backlog_last)
        };
        let held = self.held.remove(&id).unwrap_or_default();
        if !was_joining {
            return;
        }
        let mut queued = 0;
        for event in &held {
            if truncated && !matches!(event, Event::Update { .. }) {
                continue;
            }
            queued += u64::from(member.send(event, metrics));
        }
        metrics.messages_out.inc_by(queued);
    }

    /// A subscribe that failed: `id` goes back to what it had.
    pub(super) fn cancel_join(&mut self, id: ConnId, metrics: &GatewayMetrics) {
        if let Some(last) = self.last_seq(id) {
            self.activate(id, last, false, metrics);
        }
    }
}

#[cfg(test)]
impl Members {
    /// Live events held for `id`.
    pub(super) fn held_for(&self, id: ConnId) -> usize {
        self.held.get(&id).map_or(0, Vec::len)
    }
}

impl Member {
    /// Comments above `last_seq` go out (and move it); updates go out for comments the
    /// connection has.
    fn send(&mut self, event: &Event, metrics: &GatewayMetrics) -> bool {
        match event {
            Event::Comment { seq, frame, .. } => {
                if *seq > self.last_seq {
                    self.last_seq = *seq;
                    self.conn.stage(frame.clone(), metrics)
                } else {
                    false
                }
            }
            Event::Update { seq, frame, .. } => {
                *seq <= self.last_seq && self.conn.stage(frame.clone(), metrics)
            }
        }
    }
}

#[cfg(test)]
mod size_tests {
    #[test]
    fn a_member_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<super::Member>(), 24);
    }
}
