//! Edits and reactions in the MongoDB `comments` collection.
//!
//! Who gave which reaction is kept in the comment document itself (`reactors.<emoji key>`: the
//! usernames), next to the counts (`reactions.<emoji key>`). A change is one conditional
//! single-document update (`$addToSet` only when the user is not in the list yet, `$pull` only
//! when they are) that moves the count and `rev` with it, so counts stay exact with any number
//! of instances writing at once. `reactors` is never read with a comment.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use serde::Deserialize;
use shared_proto::{Comment, Emoji, Mine, MyReactions, RoomId};

use super::{Doc, MongoStore, unavailable};
use crate::store::{EditOutcome, ReactOutcome, StoreError, counts_to_reactions};

/// What a reaction change reads back.
#[derive(Debug, Deserialize)]
struct Counts {
    #[serde(default)]
    seq: i64,
    #[serde(default)]
    reactions: BTreeMap<String, i64>,
    #[serde(default)]
    rev: i64,
}

/// What `mine` reads back.
#[derive(Debug, Deserialize)]
struct Reactors {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    reactors: BTreeMap<String, Vec<String>>,
}

/// Leaves the reactor lists out of a read.
pub(super) fn without_reactors() -> Document {
    doc! {"reactors": 0}
}

fn live(room: &RoomId, id: &str) -> Document {
    doc! {"_id": id, "room": room.as_str(), "deleted": {"$ne": true}}
}

fn rev_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl MongoStore {
    async fn live_doc(&self, room: &RoomId, id: &str) -> Result<Option<Doc>, StoreError> {
        self.comments
            .find_one(live(room, id))
            .projection(without_reactors())
            .await
            .map_err(unavailable)
    }

    /// The live comment `id` of `room`.
    pub(in crate::store) async fn get(
        &self,
        room: &RoomId,
        id: &str,
    ) -> Result<Option<Comment>, StoreError> {
        Ok(self.live_doc(room, id).await?.and_then(Doc::into_comment))
    }

    /// Sets a new text if `actor` wrote the comment less than `window_ms` ago.
    pub(in crate::store) async fn edit(
        &self,
        room: &RoomId,
        id: &str,
        actor: &str,
        text: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<EditOutcome, StoreError> {
        let Some(found) = self.live_doc(room, id).await? else {
            return Ok(EditOutcome::NotFound);
        };
        if found.author_id != actor {
            return Ok(EditOutcome::NotAuthor);
        }
        if now_ms.saturating_sub(found.created_at.timestamp_millis()) > window_ms {
            return Ok(EditOutcome::TooLate);
        }
        let updated = self
            .comments
            .find_one_and_update(
                live(room, id),
                doc! {
                    "$set": {"text": text, "editedAt": DateTime::from_millis(now_ms)},
                    "$inc": {"rev": 1_i64},
                },
            )
            .return_document(ReturnDocument::After)
            .projection(without_reactors())
            .await
            .map_err(unavailable)?;
        let Some(updated) = updated else {
            return Ok(EditOutcome::NotFound);
        };
        let rev = rev_of(updated.rev);
        Ok(match updated.into_comment() {
            Some(comment) => EditOutcome::Edited {
                comment: Box::new(comment),
                rev,
            },
            None => EditOutcome::NotFound,
        })
    }

    /// Gives (`on`) or takes back a reaction of `user`; counts move only on an actual change.
    pub(in crate::store) async fn react(
        &self,
        room: &RoomId,
        id: &str,
        user: &str,
        emoji: Emoji,
        on: bool,
    ) -> Result<ReactOutcome, StoreError> {
        let users = format!("reactors.{}", emoji.key());
        let count = format!("reactions.{}", emoji.key());
        let mut filter = live(room, id);
        let update = if on {
            filter.insert(users.clone(), doc! {"$ne": user});
            doc! {"$addToSet": {&users: user}, "$inc": {&count: 1_i64, "rev": 1_i64}}
        } else {
            filter.insert(users.clone(), user);
            doc! {"$pull": {&users: user}, "$inc": {&count: -1_i64, "rev": 1_i64}}
        };
        let counts = self.comments.clone_with_type::<Counts>();
        let changed = counts
            .find_one_and_update(filter, update)
            .return_document(ReturnDocument::After)
            .projection(doc! {"reactions": 1, "rev": 1, "seq": 1})
            .await
            .map_err(unavailable)?;
        if let Some(now) = changed {
            return Ok(ReactOutcome::Changed {
                seq: rev_of(now.seq),
                reactions: counts_to_reactions(&now.reactions),
                rev: rev_of(now.rev),
            });
        }
        let current = counts
            .find_one(live(room, id))
            .projection(doc! {"reactions": 1, "rev": 1})
            .await
            .map_err(unavailable)?;
        Ok(match current {
            Some(now) => ReactOutcome::Unchanged {
                reactions: counts_to_reactions(&now.reactions),
            },
            None => ReactOutcome::NotFound,
        })
    }

    /// The emoji `user` gave each of `ids` (only those with at least one).
    pub(in crate::store) async fn mine(
        &self,
        user: &str,
        ids: Vec<String>,
    ) -> Result<Mine, StoreError> {
        if ids.is_empty() {
            return Ok(Mine::new());
        }
        let any: Vec<Document> = Emoji::ALL
            .iter()
            .map(|e| doc! {format!("reactors.{}", e.key()): user})
            .collect();
        let docs: Vec<Reactors> = self
            .comments
            .clone_with_type::<Reactors>()
            .find(doc! {"_id": {"$in": ids}, "$or": any})
            .projection(doc! {"reactors": 1})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let mut mine = Mine::new();
        for found in docs {
            let given: MyReactions = found
                .reactors
                .iter()
                .filter(|(_, users)| users.iter().any(|u| u == user))
                .filter_map(|(key, _)| Emoji::from_key(key))
                .collect();
            if !given.is_empty() {
                mine.insert(found.id, given);
            }
        }
        Ok(mine)
    }
}
