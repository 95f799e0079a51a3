//! Presence arithmetic: one instance's readers of a room (a [`Snapshot`], the value each
//! instance shares through Redis) and the room's total over all instances.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shared_proto::ws::{MAX_PRESENCE_USERS, PresenceCounts, UserRef};

/// One signed-in reader as an instance reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reader {
    /// Username.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Unix ms since when they read the room on that instance.
    pub since: i64,
}

/// One instance's readers of one room.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Anonymous connections (each counts once).
    pub anon: u32,
    /// Signed-in users (each once, however many connections).
    pub users: Vec<Reader>,
}

/// A local signed-in reader: how many of their connections read the room, since when.
#[derive(Debug, Clone)]
pub struct LocalReader {
    /// Full name.
    pub name: String,
    /// Unix ms of their first connection still reading.
    pub since: i64,
    /// Their connections reading the room here.
    pub conns: u32,
}

/// This instance's readers of a room.
#[derive(Debug, Default)]
pub struct LocalReaders {
    /// Signed-in users by username.
    pub users: HashMap<String, LocalReader>,
    /// Anonymous connections.
    pub anon: u32,
}

impl LocalReaders {
    /// A connection starts reading; true when the room's reader set changed.
    pub fn add(&mut self, user: Option<&UserRef>, now_ms: i64) -> bool {
        match user {
            None => {
                self.anon = self.anon.saturating_add(1);
                true
            }
            Some(user) => {
                let entry = self
                    .users
                    .entry(user.id.clone())
                    .or_insert_with(|| LocalReader {
                        name: user.name.clone(),
                        since: now_ms,
                        conns: 0,
                    });
                entry.conns += 1;
                entry.conns == 1
            }
        }
    }

    /// A connection stops reading; true when the room's reader set changed.
    pub fn remove(&mut self, user: Option<&UserRef>) -> bool {
        match user {
            None => {
                self.anon = self.anon.saturating_sub(1);
                true
            }
            Some(user) => match self.users.get_mut(&user.id) {
                Some(entry) if entry.conns > 1 => {
                    entry.conns -= 1;
                    false
                }
                Some(_) => {
                    self.users.remove(&user.id);
                    true
                }
                None => false,
            },
        }
    }

    /// True when nobody reads the room here.
    pub fn is_empty(&self) -> bool {
        self.anon == 0 && self.users.is_empty()
    }

    /// The value shared with the other instances.
    pub fn snapshot(&self) -> Snapshot {
        let mut users: Vec<Reader> = self
            .users
            .iter()
            .map(|(id, r)| Reader {
                id: id.clone(),
                name: r.name.clone(),
                since: r.since,
            })
            .collect();
        users.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.id.cmp(&b.id)));
        Snapshot {
            anon: self.anon,
            users,
        }
    }
}

/// The room's readers over all instances: anonymous connections add up, a user counts once
/// (with their earliest `since`); `users` are the earliest [`MAX_PRESENCE_USERS`].
pub fn merge<'a>(snapshots: impl IntoIterator<Item = &'a Snapshot>) -> PresenceCounts {
    let mut anon: u64 = 0;
    let mut users: HashMap<&str, (&str, i64)> = HashMap::new();
    for snapshot in snapshots {
        anon += u64::from(snapshot.anon);
        for reader in &snapshot.users {
            users
                .entry(reader.id.as_str())
                .and_modify(|seen| {
                    if reader.since < seen.1 {
                        *seen = (reader.name.as_str(), reader.since);
                    }
                })
                .or_insert((reader.name.as_str(), reader.since));
        }
    }
    let readers = u32::try_from(anon + users.len() as u64).unwrap_or(u32::MAX);
    let mut listed: Vec<(&str, &str, i64)> = users
        .into_iter()
        .map(|(id, (name, since))| (id, name, since))
        .collect();
    listed.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(b.0)));
    PresenceCounts {
        readers,
        users: listed
            .into_iter()
            .take(MAX_PRESENCE_USERS)
            .map(|(id, name, _)| UserRef {
                id: id.to_owned(),
                name: name.to_owned(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRef {
        UserRef {
            id: id.into(),
            name: format!("{id} name"),
        }
    }

    #[test]
    fn a_user_with_several_connections_counts_once() {
        let mut local = LocalReaders::default();
        assert!(local.add(Some(&user("JD")), 10));
        assert!(!local.add(Some(&user("JD")), 20));
        assert!(local.add(None, 30));
        assert!(local.add(None, 40));
        let counts = merge([&local.snapshot()]);
        assert_eq!(counts.readers, 3);
        assert_eq!(counts.users, vec![user("JD")]);
        assert!(!local.remove(Some(&user("JD"))));
        assert!(local.remove(Some(&user("JD"))));
        assert!(local.remove(None));
        assert!(local.remove(None));
        assert!(local.is_empty());
        assert!(!local.remove(Some(&user("nobody"))));
    }

    #[test]
    fn instances_merge_by_user_and_keep_the_earliest_fifty() {
        let a = Snapshot {
            anon: 2,
            users: (0..40)
                .map(|i| Reader {
                    id: format!("u{i:02}"),
                    name: format!("U{i}"),
                    since: 100 + i,
                })
                .collect(),
        };
        let b = Snapshot {
            anon: 1,
            users: (30..70)
                .map(|i| Reader {
                    id: format!("u{i:02}"),
                    name: format!("U{i}"),
                    since: 50 + i,
                })
                .collect(),
        };
        let counts = merge([&a, &b]);
        assert_eq!(counts.readers, 3 + 70);
        assert_eq!(counts.users.len(), MAX_PRESENCE_USERS);
        // u30..u39 are on both; b saw them earlier (80..89), before a's u00 (100).
        assert_eq!(counts.users[0].id, "u30");
        assert_eq!(merge([]).readers, 0);
    }
}
