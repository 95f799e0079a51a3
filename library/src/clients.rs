//! HTTP clients for the other services. Both are optional for the library: every call has a
//! short timeout and a failure only means "unavailable" on the page.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared_proto::Comment;
use shared_proto::counter::{CountResponse, CountsResponse, MAX_IDS};

/// An HTTP client that gives up (connecting or answering) after `timeout`, so a down or
/// hanging peer never holds a page up.
fn short_timeout_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?)
}

/// The `counter` service.
#[derive(Clone)]
pub struct CounterClient {
    http: reqwest::Client,
    base: String,
}

impl CounterClient {
    /// A client for `base` (e.g. `http://127.0.0.1:3001`) giving up after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: short_timeout_client(timeout)?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// One more view of `book_id`; the count after it, or `None` when counter did not answer.
    #[tracing::instrument(skip(self))]
    pub async fn increment(&self, book_id: u64) -> Option<u64> {
        let url = format!("{}/counter/{book_id}/incr", self.base);
        let result = async {
            let response = self.http.post(&url).send().await?.error_for_status()?;
            response.json::<CountResponse>().await
        }
        .await;
        match result {
            Ok(body) => Some(body.count),
            Err(e) => {
                tracing::warn!(error = %e, "counter increment failed");
                None
            }
        }
    }

    /// Counts of `ids` (batched by 500); empty when counter did not answer.
    #[tracing::instrument(skip(self, ids), fields(ids = ids.len()))]
    pub async fn counts(&self, ids: &[u64]) -> BTreeMap<u64, u64> {
        let mut all = BTreeMap::new();
        for chunk in ids.chunks(MAX_IDS) {
            let list = chunk
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let url = format!("{}/counter", self.base);
            let result = async {
                let response = self
                    .http
                    .get(&url)
                    .query(&[("ids", list.as_str())])
                    .send()
                    .await?
                    .error_for_status()?;
                response.json::<CountsResponse>().await
            }
            .await;
            match result {
                Ok(body) => {
                    for (id, count) in body.counts {
                        if let Ok(id) = id.parse::<u64>() {
                            all.insert(id, count);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "counter batch read failed");
                    return BTreeMap::new();
                }
            }
        }
        all
    }
}

/// `GET /rooms/{room}/comments` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct RoomComments {
    /// Oldest first.
    pub comments: Vec<Comment>,
    /// Whether older comments exist.
    #[serde(default)]
    pub more: bool,
    /// Parents of replies that are not among `comments`, read one by one
    /// (`GET /rooms/{room}/comments/{id}`): `Some` when found, `None` when deleted or unknown;
    /// missing when the read failed.
    #[serde(skip)]
    pub parents: BTreeMap<String, Option<Comment>>,
}

/// Parents read for one page at most (the rest show "an earlier comment").
const PARENTS_MAX: usize = 20;

/// `GET /rooms/{room}/presence` answer: distinct readers on all instances, the signed-in ones.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RoomPresence {
    /// Distinct readers (a user once, each anonymous connection once).
    pub readers: u64,
    /// Signed-in readers, earliest first (at most 50).
    #[serde(default)]
    pub users: Vec<PresenceUser>,
}

/// A signed-in reader: `{id, name}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PresenceUser {
    /// Username.
    pub id: String,
    /// Full name.
    #[serde(default)]
    pub name: String,
}

/// The comments gateway's HTTP reads.
#[derive(Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    base: String,
}

impl GatewayClient {
    /// A client for `base` (e.g. `http://127.0.0.1:3003`) giving up after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: short_timeout_client(timeout)?,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The latest comments of `room`, or `None` when the gateway did not answer.
    #[tracing::instrument(skip(self))]
    pub async fn room_comments(&self, room: &str) -> Option<RoomComments> {
        let url = format!("{}/rooms/{room}/comments", self.base);
        let result = async {
            let response = self
                .http
                .get(&url)
                .query(&[("limit", "50")])
                .send()
                .await?
                .error_for_status()?;
            response.json::<RoomComments>().await
        }
        .await;
        let mut body = match result {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(error = %e, "gateway comments read failed");
                return None;
            }
        };
        // Replies whose parent is older than the page quote it all the same.
        let shown: std::collections::HashSet<&str> =
            body.comments.iter().map(|c| c.id.as_str()).collect();
        let mut missing: Vec<String> = Vec::new();
        for c in &body.comments {
            if let Some(parent) = c.reply_to.as_deref()
                && !shown.contains(parent)
                && !missing.iter().any(|m| m == parent)
                && missing.len() < PARENTS_MAX
            {
                missing.push(parent.to_owned());
            }
        }
        let reads = missing.into_iter().map(|id| async move {
            let found = self.comment(room, &id).await;
            (id, found)
        });
        for (id, found) in futures_util::future::join_all(reads).await {
            if let Some(found) = found {
                body.parents.insert(id, found);
            }
        }
        Some(body)
    }

    /// One comment of `room`: `Some(None)` when the gateway says it is deleted or unknown,
    /// `None` when it did not answer.
    async fn comment(&self, room: &str, id: &str) -> Option<Option<Comment>> {
        #[derive(Deserialize)]
        struct One {
            comment: Comment,
        }
        let url = format!("{}/rooms/{room}/comments/{id}", self.base);
        let result = async {
            let response = self.http.get(&url).send().await?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let one = response.error_for_status()?.json::<One>().await?;
            Ok::<_, reqwest::Error>(Some(one.comment))
        }
        .await;
        match result {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::debug!(error = %e, "gateway comment read failed");
                None
            }
        }
    }

    /// Who reads `room` now, or `None` when the gateway did not answer (the page omits it).
    #[tracing::instrument(skip(self))]
    pub async fn room_presence(&self, room: &str) -> Option<RoomPresence> {
        let url = format!("{}/rooms/{room}/presence", self.base);
        let result = async {
            let response = self.http.get(&url).send().await?.error_for_status()?;
            response.json::<RoomPresence>().await
        }
        .await;
        match result {
            Ok(body) => Some(body),
            Err(e) => {
                tracing::debug!(error = %e, "gateway presence read failed");
                None
            }
        }
    }
}
