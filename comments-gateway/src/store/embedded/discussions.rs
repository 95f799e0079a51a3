//! Edits and reactions in the embedded store. Who gave which reaction is one row per
//! (comment, user) holding a bit per emoji; the counts live in the comment's row. Both change
//! in the writer thread's one transaction, so a count never disagrees with its rows.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use shared_proto::{Comment, Emoji, Mine, MyReactions, RoomId};

use super::{Row, decode, internal};
use crate::store::{EditOutcome, ReactOutcome, StoreError, counts_to_reactions};

/// (comment id, username) -> bit set of the emoji that user gave the comment.
pub(super) const REACTORS: TableDefinition<(&str, &str), u8> =
    TableDefinition::new("comment_reactors");

type Ids<'t> = redb::Table<'t, &'static str, (&'static str, u64)>;
type Comments<'t> = redb::Table<'t, (&'static str, u64), &'static [u8]>;
type Reactors<'t> = redb::Table<'t, (&'static str, &'static str), u8>;

fn bit(emoji: Emoji) -> u8 {
    let index = Emoji::ALL.iter().position(|e| *e == emoji).unwrap_or(0);
    1 << index
}

fn emoji_of(bits: u8) -> MyReactions {
    Emoji::ALL
        .into_iter()
        .filter(|e| bits & bit(*e) != 0)
        .collect()
}

/// The live (not deleted) row of `id` in `room`, with its seq.
fn live_row(
    ids: &impl ReadableTable<&'static str, (&'static str, u64)>,
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    room: &RoomId,
    id: &str,
) -> Result<Option<(u64, Row)>, StoreError> {
    let found = ids.get(id).map_err(internal)?.map(|g| {
        let (r, s) = g.value();
        (r == room.as_str(), s)
    });
    let Some((true, seq)) = found else {
        return Ok(None);
    };
    let row = match table.get((room.as_str(), seq)).map_err(internal)? {
        Some(raw) => decode(raw.value())?,
        None => return Ok(None),
    };
    Ok((!row.deleted).then_some((seq, row)))
}

fn put(table: &mut Comments<'_>, room: &RoomId, seq: u64, row: &Row) -> Result<(), StoreError> {
    let raw = serde_json::to_vec(row).map_err(internal)?;
    table
        .insert((room.as_str(), seq), raw.as_slice())
        .map_err(internal)?;
    Ok(())
}

/// One edit inside the writer's transaction.
#[allow(clippy::too_many_arguments)]
pub(super) fn edit_in(
    ids: &Ids<'_>,
    table: &mut Comments<'_>,
    room: &RoomId,
    id: &str,
    actor: &str,
    text: &str,
    now_ms: i64,
    window_ms: i64,
) -> Result<EditOutcome, StoreError> {
    let Some((seq, mut row)) = live_row(ids, table, room, id)? else {
        return Ok(EditOutcome::NotFound);
    };
    if row.author_id != actor {
        return Ok(EditOutcome::NotAuthor);
    }
    if now_ms.saturating_sub(row.created_ms) > window_ms {
        return Ok(EditOutcome::TooLate);
    }
    row.text = text.to_owned();
    row.edited_ms = Some(now_ms);
    row.rev += 1;
    put(table, room, seq, &row)?;
    let rev = row.rev;
    Ok(EditOutcome::Edited {
        comment: Box::new(row.comment(room, seq)),
        rev,
    })
}

/// One reaction change inside the writer's transaction.
#[allow(clippy::too_many_arguments)]
pub(super) fn react_in(
    ids: &Ids<'_>,
    table: &mut Comments<'_>,
    reactors: &mut Reactors<'_>,
    room: &RoomId,
    id: &str,
    user: &str,
    emoji: Emoji,
    on: bool,
) -> Result<ReactOutcome, StoreError> {
    let Some((seq, mut row)) = live_row(ids, table, room, id)? else {
        return Ok(ReactOutcome::NotFound);
    };
    let had = reactors
        .get((id, user))
        .map_err(internal)?
        .map(|g| g.value())
        .unwrap_or(0);
    let has = if on {
        had | bit(emoji)
    } else {
        had & !bit(emoji)
    };
    if has == had {
        return Ok(ReactOutcome::Unchanged {
            reactions: counts_to_reactions(&row.reactions),
        });
    }
    if has == 0 {
        reactors.remove((id, user)).map_err(internal)?;
    } else {
        reactors.insert((id, user), has).map_err(internal)?;
    }
    let count = row.reactions.entry(emoji.key().to_owned()).or_insert(0);
    if on {
        *count = count.saturating_add(1);
    } else {
        *count = count.saturating_sub(1);
    }
    row.reactions.retain(|_, n| *n > 0);
    row.rev += 1;
    put(table, room, seq, &row)?;
    Ok(ReactOutcome::Changed {
        seq,
        reactions: counts_to_reactions(&row.reactions),
        rev: row.rev,
    })
}

impl super::EmbeddedStore {
    /// The live comment `id` of `room`.
    pub(in crate::store) async fn get(
        &self,
        room: &RoomId,
        id: &str,
    ) -> Result<Option<Comment>, StoreError> {
        let room = room.clone();
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let ids = txn.open_table(super::IDS).map_err(internal)?;
            let table = txn.open_table(super::COMMENTS).map_err(internal)?;
            Ok(live_row(&ids, &table, &room, &id)?.map(|(seq, row)| row.comment(&room, seq)))
        })
        .await
    }

    /// The emoji `user` gave each of `ids` (only those with at least one).
    pub(in crate::store) async fn mine(
        &self,
        user: &str,
        ids: Vec<String>,
    ) -> Result<Mine, StoreError> {
        let user = user.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let reactors = match txn.open_table(REACTORS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Mine::new()),
                Err(e) => return Err(internal(e)),
            };
            let mut mine = Mine::new();
            for id in ids {
                let bits = reactors
                    .get((id.as_str(), user.as_str()))
                    .map_err(internal)?
                    .map(|g| g.value())
                    .unwrap_or(0);
                if bits != 0 {
                    mine.insert(id, emoji_of(bits));
                }
            }
            Ok(mine)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        for emoji in Emoji::ALL {
            assert_eq!(emoji_of(bit(emoji)), [emoji].into_iter().collect());
        }
        assert_eq!(emoji_of(0b10_0001).len(), 2);
    }
}
