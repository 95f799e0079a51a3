//! One connection's membership in one room: what it has been sent, and what waits for it.

use crate::metrics::GatewayMetrics;
use crate::sequencer::Event;
use crate::transport::ConnTx;

/// Where a member stands.
pub(super) enum MemberState {
    /// Its backlog is being read: live events wait here (bounded).
    Joining(Vec<Event>),
    /// Gets every comment above `last_seq`.
    Active,
    /// Its last backlog was truncated: live comments are not sent until it resubscribes
    /// with `since` (updates of comments it has are).
    Behind,
}

/// A connection in a room.
pub(super) struct Member {
    conn: ConnTx,
    state: MemberState,
    /// The highest comment seq this connection has (backlog or live).
    last_seq: u64,
}

impl Member {
    pub(super) fn new(conn: ConnTx) -> Self {
        Self {
            conn,
            state: MemberState::Joining(Vec::new()),
            last_seq: 0,
        }
    }

    pub(super) fn conn(&self) -> &ConnTx {
        &self.conn
    }

    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Subscribing again: live events wait until the new backlog has gone out.
    pub(super) fn rejoin(&mut self) {
        if !matches!(self.state, MemberState::Joining(_)) {
            self.state = MemberState::Joining(Vec::new());
        }
    }

    /// Offers one ordered event; true when a frame was queued.
    pub(super) fn offer(
        &mut self,
        event: &Event,
        joining_max: usize,
        metrics: &GatewayMetrics,
    ) -> bool {
        match &mut self.state {
            MemberState::Joining(held) => {
                if held.len() < joining_max {
                    held.push(event.clone());
                } else {
                    self.conn.overflow(metrics);
                }
                false
            }
            MemberState::Active => self.send(event, metrics),
            MemberState::Behind => match event {
                Event::Comment { .. } => false,
                Event::Update { .. } => self.send(event, metrics),
            },
        }
    }

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

    /// The backlog went out, ending at `backlog_last`: held events it lacks follow, unless
    /// it was truncated (then the member is behind until its next `since`).
    pub(super) fn activate(
        &mut self,
        backlog_last: u64,
        truncated: bool,
        metrics: &GatewayMetrics,
    ) {
        let previous = std::mem::replace(
            &mut self.state,
            if truncated {
                MemberState::Behind
            } else {
                MemberState::Active
            },
        );
        self.last_seq = self.last_seq.max(backlog_last);
        if truncated {
            self.last_seq = backlog_last;
        }
        if let MemberState::Joining(held) = previous {
            let mut queued = 0;
            for event in &held {
                let go = match &self.state {
                    MemberState::Behind => matches!(event, Event::Update { .. }),
                    _ => true,
                };
                if go {
                    queued += u64::from(self.send(event, metrics));
                }
            }
            metrics.messages_out.inc_by(queued);
        }
    }
}
