//! Wire types every service of the book library shares.
//!
//! Everything here is plain data with serde derives and parsing rules: the WebSocket protocol
//! (`ws`), comments (`comment`), the counter API (`counter`), the library's JSON API bodies
//! (`library_api`), reactions (`reaction`), token claims (`auth`), error bodies (`error`), validated ids (`ids`) and the
//! Redis channel names the gateway instances share (`channels`). There is no I/O in this crate.

pub mod auth;
pub mod channels;
pub mod comment;
pub mod counter;
pub mod error;
pub mod ids;
pub mod library_api;
pub mod reaction;
#[cfg(feature = "schema")]
pub mod schema;
pub mod timestamp;
pub mod ws;

pub use auth::{Claims, Role};
pub use comment::{Author, Comment, CommentText, CommentTextError};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use ids::{BookId, ClientId, CommentId, IdError, RoomId, Username};
pub use reaction::{Emoji, EmojiError, Mine, MyReactions, Reactions};
