//! Bodies of the counter API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{BookId, IdError};

/// Most ids one `GET /counter?ids=` may ask for.
pub const MAX_IDS: usize = 500;

/// `{"bookId": "1", "count": 8}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CountResponse {
    /// The book.
    pub book_id: BookId,
    /// Its view count.
    pub count: u64,
}

/// `{"counts": {"1": 8, "2": 0}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CountsResponse {
    /// Count per requested id.
    pub counts: BTreeMap<String, u64>,
}

/// Why an `ids` list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdListError {
    /// No `ids` at all, or an empty value.
    #[error("ids must list at least one book id")]
    Empty,
    /// More than [`MAX_IDS`] items.
    #[error("ids may list at most {MAX_IDS} book ids, got {0}")]
    TooMany(usize),
    /// An item is empty or invalid.
    #[error("invalid item {index} in ids: {source}")]
    BadItem {
        /// Zero-based position in the list.
        index: usize,
        /// Why.
        source: IdError,
    },
}

/// Parses a comma-separated `ids` value; duplicates are kept once, in first-seen order.
pub fn parse_id_list(raw: &str) -> Result<Vec<BookId>, IdListError> {
    if raw.is_empty() {
        return Err(IdListError::Empty);
    }
    let items: Vec<&str> = raw.split(',').collect();
    if items.len() > MAX_IDS {
        return Err(IdListError::TooMany(items.len()));
    }
    let mut ids: Vec<BookId> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let id = BookId::parse(item).map_err(|source| IdListError::BadItem { index, source })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_shapes() {
        let one = CountResponse {
            book_id: BookId::parse("1").expect("valid"),
            count: 8,
        };
        assert_eq!(
            serde_json::to_value(&one).expect("serializes"),
            serde_json::json!({"bookId": "1", "count": 8})
        );
        let mut counts = CountsResponse::default();
        counts.counts.insert("abc".into(), 3);
        assert_eq!(
            serde_json::to_value(&counts).expect("serializes"),
            serde_json::json!({"counts": {"abc": 3}})
        );
    }

    #[test]
    fn id_lists() {
        let ids = parse_id_list("1,2,abc,1").expect("valid");
        assert_eq!(ids.len(), 3);
        assert_eq!(parse_id_list(""), Err(IdListError::Empty));
        assert!(matches!(
            parse_id_list("1,,2"),
            Err(IdListError::BadItem { index: 1, .. })
        ));
        assert!(matches!(
            parse_id_list("1,"),
            Err(IdListError::BadItem { index: 1, .. })
        ));
        assert!(matches!(
            parse_id_list("a/b"),
            Err(IdListError::BadItem { .. })
        ));
        let many = vec!["1"; 501].join(",");
        assert_eq!(parse_id_list(&many), Err(IdListError::TooMany(501)));
        let max: Vec<String> = (0..500).map(|i| i.to_string()).collect();
        assert_eq!(
            parse_id_list(&max.join(",")).expect("500 is fine").len(),
            500
        );
    }
}
