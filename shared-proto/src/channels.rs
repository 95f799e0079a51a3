//! Redis pub/sub channel names and the events gateway instances exchange over them.

use serde::{Deserialize, Serialize};

use crate::comment::Comment;
use crate::ids::RoomId;
use crate::reaction::Reactions;
use crate::ws::UserRef;

/// Default prefix of every channel the gateway uses.
pub const DEFAULT_CHANNEL_PREFIX: &str = "comments:";

/// Channel naming shared by all gateway instances: `{prefix}room:{room}` per room and
/// `{prefix}notice` for admin notices to every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    prefix: String,
}

impl Default for Channels {
    fn default() -> Self {
        Self::new(DEFAULT_CHANNEL_PREFIX)
    }
}

impl Channels {
    /// Channel names under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The channel carrying one room's events.
    pub fn room(&self, room: &RoomId) -> String {
        format!("{}room:{}", self.prefix, room)
    }

    /// The channel carrying notices for every connection.
    pub fn notice(&self) -> String {
        format!("{}notice", self.prefix)
    }

    /// The room a room channel belongs to, if `channel` is one.
    pub fn room_of(&self, channel: &str) -> Option<RoomId> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix("room:")?;
        RoomId::parse(rest).ok()
    }
}

/// One event on a gateway channel. `origin` is the publishing instance, so it can skip its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusEvent {
    /// A comment was stored.
    Comment {
        /// Publishing instance.
        origin: String,
        /// The stored comment.
        comment: Comment,
    },
    /// A comment was deleted.
    Deleted {
        /// Publishing instance.
        origin: String,
        /// Its room.
        room: RoomId,
        /// The deleted comment's id.
        id: String,
        /// The deleted comment's seq (orders the event after the comment; 0 from older peers).
        #[serde(default)]
        seq: u64,
    },
    /// An admin notice, for one room or (without `room`) for everyone.
    Notice {
        /// Publishing instance.
        origin: String,
        /// The notice text.
        text: String,
        /// Only subscribers of this room, when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomId>,
    },
    /// A comment's text was edited.
    Edited {
        /// Publishing instance.
        origin: String,
        /// The comment as stored after the edit.
        comment: Comment,
        /// The comment's change counter after this edit (edits and reactions share it), so a
        /// receiver can drop a change that arrives after a newer one.
        #[serde(default)]
        rev: u64,
    },
    /// A comment's reaction counts changed.
    Reactions {
        /// Publishing instance.
        origin: String,
        /// Its room.
        room: RoomId,
        /// The comment's id.
        id: String,
        /// The comment's seq (orders the event after the comment).
        #[serde(default)]
        seq: u64,
        /// The counts after the change.
        reactions: Reactions,
        /// The comment's change counter after this change (see `Edited::rev`).
        #[serde(default)]
        rev: u64,
    },
    /// A signed-in reader of the room is typing (already throttled by the origin).
    Typing {
        /// Publishing instance.
        origin: String,
        /// Its room.
        room: RoomId,
        /// Who types.
        user: UserRef,
    },
    /// The origin's readers of the room changed: read the room's presence again.
    Presence {
        /// Publishing instance.
        origin: String,
        /// Its room.
        room: RoomId,
    },
}

impl BusEvent {
    /// The instance that published the event.
    pub fn origin(&self) -> &str {
        match self {
            BusEvent::Comment { origin, .. }
            | BusEvent::Deleted { origin, .. }
            | BusEvent::Notice { origin, .. }
            | BusEvent::Edited { origin, .. }
            | BusEvent::Reactions { origin, .. }
            | BusEvent::Typing { origin, .. }
            | BusEvent::Presence { origin, .. } => origin,
        }
    }

    /// The room the event belongs to; `None` for a notice to everyone.
    pub fn room(&self) -> Option<&RoomId> {
        match self {
            BusEvent::Comment { comment, .. } | BusEvent::Edited { comment, .. } => {
                Some(&comment.room)
            }
            BusEvent::Notice { room, .. } => room.as_ref(),
            BusEvent::Deleted { room, .. }
            | BusEvent::Reactions { room, .. }
            | BusEvent::Typing { room, .. }
            | BusEvent::Presence { room, .. } => Some(room),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let channels = Channels::default();
        let room = RoomId::parse("42").expect("valid");
        assert_eq!(channels.room(&room), "comments:room:42");
        assert_eq!(channels.notice(), "comments:notice");
        assert_eq!(channels.room_of("comments:room:42"), Some(room));
        assert_eq!(channels.room_of("comments:notice"), None);
        assert_eq!(channels.room_of("other:room:42"), None);
        assert_eq!(Channels::new("t1:").room(&RoomId::index()), "t1:room:index");
    }

    #[test]
    fn bus_event_shape() {
        let event = BusEvent::Deleted {
            origin: "gw-1".into(),
            room: RoomId::index(),
            id: "c1".into(),
            seq: 3,
        };
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["kind"], "deleted");
        assert_eq!(
            serde_json::from_value::<BusEvent>(json).expect("parses"),
            event
        );
    }

    #[test]
    fn discussion_events_round_trip() {
        let room = RoomId::parse("7").expect("valid");
        let events = [
            BusEvent::Reactions {
                origin: "gw-1".into(),
                room: room.clone(),
                id: "c1".into(),
                seq: 4,
                reactions: crate::reaction::reactions_from_counts([(crate::Emoji::Heart, 2)]),
                rev: 9,
            },
            BusEvent::Typing {
                origin: "gw-2".into(),
                room: room.clone(),
                user: UserRef {
                    id: "JD".into(),
                    name: "John Doe".into(),
                },
            },
            BusEvent::Presence {
                origin: "gw-2".into(),
                room: room.clone(),
            },
        ];
        for event in events {
            let json = serde_json::to_value(&event).expect("serializes");
            assert_eq!(event.room(), Some(&room));
            assert_eq!(
                serde_json::from_value::<BusEvent>(json).expect("parses"),
                event
            );
        }
        let json = serde_json::json!({"kind": "reactions", "origin": "o", "room": "7", "id": "c", "reactions": {"❤️": 1}});
        let BusEvent::Reactions { rev, .. } = serde_json::from_value(json).expect("parses") else {
            panic!("not reactions")
        };
        assert_eq!(rev, 0);
    }
}
