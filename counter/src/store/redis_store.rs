//! Counts in Redis: `INCR` for atomic increments, `MGET` for batches. Keys are
//! `{prefix}{bookId}`; the default empty prefix matches the original Node counter.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use shared_proto::BookId;

use super::StoreError;

/// A Redis-backed store with a self-reconnecting connection.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    address: String,
}

impl RedisStore {
    /// Prepares a lazy connection to `url`; nothing is contacted yet.
    pub fn open(url: &str, prefix: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let address = format!("{}", client.get_connection_info().addr());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            timeout,
            address,
        })
    }

    /// Host and port, without credentials.
    pub fn describe(&self) -> &str {
        &self.address
    }

    fn key(&self, id: &BookId) -> String {
        format!("{}{}", self.prefix, id)
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        bounded(self.timeout, op).await
    }

    /// `INCR {prefix}{id}`.
    pub async fn incr(&self, id: &BookId) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(id);
        let value: i64 = self.bounded(conn.incr(key, 1)).await?;
        u64::try_from(value).map_err(|_| StoreError::Invalid(format!("negative count {value}")))
    }

    /// `MGET` of every id; missing keys count 0.
    pub async fn get_many(&self, ids: &[BookId]) -> Result<Vec<u64>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        let values: Vec<Option<String>> = self
            .bounded(redis::cmd("MGET").arg(&keys).query_async(&mut conn))
            .await?;
        counts(values)
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }
}

/// Runs one Redis operation for at most `timeout`: a wrong reply is [`StoreError::Invalid`],
/// anything else (refused, reset, no answer in time) [`StoreError::Unavailable`].
pub(super) async fn bounded<T>(
    timeout: Duration,
    op: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e))
            if e.kind() == redis::ErrorKind::UnexpectedReturnType
                || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
        {
            Err(StoreError::Invalid(e.to_string()))
        }
        Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {timeout:?}"
        ))),
    }
}

/// Parses `MGET` values: missing keys count 0.
pub(super) fn counts(values: Vec<Option<String>>) -> Result<Vec<u64>, StoreError> {
    values
        .into_iter()
        .map(|v| match v {
            None => Ok(0),
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| StoreError::Invalid(format!("value {s:?} is not a count"))),
        })
        .collect()
}
