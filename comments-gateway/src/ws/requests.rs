//! Requests that wait for the store, each run as its own task off the connection loop and
//! answered through the connection's queue.

use std::sync::Arc;

use crate::transport::Frame;
use shared_proto::ws::{
    Ack, Delete, Edit, History, HistoryPage, MAX_SINCE_BATCH, Post, React, Ref, ServerFrame,
    ServerMessage, Subscribe, Subscribed,
};
use shared_proto::{Claims, RoomId};
use tokio::sync::oneshot;

use crate::comments::READ_PATIENCE;
use crate::error::GatewayError;
use crate::hub::ConnId;
use crate::state::AppState;
use crate::store::Slice;

/// First and longest pause between two tries of a subscribe whose store failed.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(200);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);
use crate::transport::ConnTx;

/// What a request task needs of its connection.
pub(super) struct Ctx {
    pub(super) state: Arc<AppState>,
    pub(super) id: ConnId,
    pub(super) out: ConnTx,
    pub(super) user: Option<Arc<Claims>>,
    pub(super) shared: Arc<super::connection::Shared>,
}

impl Ctx {
    fn reply(&self, reference: Option<Ref>, message: ServerMessage) {
        let frame = ServerFrame::reply(reference, message);
        self.out
            .push(Frame::text(frame.encode()), &self.state.metrics);
    }
}

/// A request that waits for the store.
pub(super) enum Request {
    /// `subscribe`, already joined in the hub (in frame order).
    Subscribe {
        sub: Subscribe,
        already: bool,
        ready: oneshot::Receiver<bool>,
    },
    Post(Post),
    Delete(Delete),
    History(History),
    Edit(Edit),
    React(React),
    /// `typing` in a room (the connection checked sign-in and subscription).
    Typing(RoomId),
}

impl Request {
    /// Runs the request and answers it (or its error).
    pub(super) async fn run(self, ctx: Ctx, reference: Option<Ref>) {
        let result = match self {
            Request::Subscribe {
                sub,
                already,
                ready,
            } => subscribe(&ctx, reference.clone(), sub, already, ready).await,
            Request::Post(post) => self::post(&ctx, reference.clone(), post).await,
            Request::Delete(delete) => self::delete(&ctx, reference.clone(), delete).await,
            Request::History(history) => self::history(&ctx, reference.clone(), history).await,
            Request::Edit(edit) => self::edit(&ctx, reference.clone(), edit).await,
            Request::React(react) => self::react(&ctx, reference.clone(), react).await,
            Request::Typing(room) => self::typing(&ctx, &room).await,
        };
        if let Err(e) = result {
            if let GatewayError::Internal(cause) = &e {
                tracing::error!(error = ?cause, "request failed");
            }
            let frame = ServerFrame::error(reference, e.code(), e.to_string());
            ctx.out
                .push(Frame::text(frame.encode()), &ctx.state.metrics);
        }
    }
}

async fn subscribe(
    ctx: &Ctx,
    reference: Option<Ref>,
    sub: Subscribe,
    already: bool,
    ready: oneshot::Receiver<bool>,
) -> Result<(), GatewayError> {
    let room = sub.room;
    let undo = || {
        if already {
            ctx.state.hub.cancel_join(&room, ctx.id);
        } else {
            ctx.shared.remove_room(&room);
            ctx.state.hub.leave(&room, ctx.id);
            ctx.state.discussions.leave(&room, ctx.id);
        }
    };
    // The client gets its backlog late rather than an error: the room's start and the read
    // are retried while the store fails, for at most READ_PATIENCE in all.
    let until = tokio::time::Instant::now() + READ_PATIENCE;
    let mut backoff = RETRY_FIRST;
    let mut ready = Some(ready);
    loop {
        let Some(rx) = ready
            .take()
            .or_else(|| ctx.state.hub.wait_ready(&room, ctx.id))
        else {
            // The connection left the room meanwhile: nobody waits for the answer.
            return Ok(());
        };
        match tokio::time::timeout_at(until, rx).await {
            Ok(Ok(true)) => break,
            Ok(_) if tokio::time::Instant::now() + backoff < until => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
            _ => {
                undo();
                return Err(GatewayError::Unavailable("storage"));
            }
        }
    }
    let slice = match (sub.since, sub.limit) {
        (Some(since), _) => Slice::After {
            after: since,
            upto: None,
            max: MAX_SINCE_BATCH,
        },
        (None, limit) => Slice::Latest {
            limit: limit.unwrap_or(shared_proto::ws::DEFAULT_PAGE_LIMIT),
        },
    };
    let mut backoff = RETRY_FIRST;
    let page = loop {
        // The room's recent comments answer most resumes without a store read.
        if let Some(page) = ctx.state.hub.backlog(&room, slice) {
            ctx.state.metrics.backlogs_from_memory.inc();
            break page;
        }
        let patience = until.saturating_duration_since(tokio::time::Instant::now());
        match ctx.state.comments.read_within(&room, slice, patience).await {
            Ok(page) => {
                ctx.state.metrics.backlogs_from_store.inc();
                break page;
            }
            Err(GatewayError::Unavailable(_))
                if tokio::time::Instant::now() + backoff < until
                    && ctx.state.hub.is_member(&room, ctx.id) =>
            {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
            Err(e) => {
                undo();
                return Err(e);
            }
        }
    };
    let mine = match ctx
        .state
        .discussions
        .mine(ctx.user.as_deref(), &page.comments)
        .await
    {
        Ok(mine) => mine,
        Err(e) => {
            undo();
            return Err(e);
        }
    };
    let last = covered_up_to(page.comments.last().map(|c| c.seq), sub.since);
    // Only a `since` backlog that stops short leaves live comments out until the next one.
    let behind = sub.since.is_some() && page.more;
    ctx.reply(
        reference,
        ServerMessage::Subscribed(Subscribed {
            room: room.clone(),
            comments: page.comments,
            truncated: page.more,
            mine,
        }),
    );
    ctx.state.hub.activate(&room, ctx.id, last, behind);
    ctx.state.discussions.activate(&room, ctx.id);
    Ok(())
}

/// The highest seq a connection has once its backlog went out: the backlog's last, or `since`
/// when that is higher (the client got up to `since` on an earlier connection, perhaps on
/// another instance whose live stream ran ahead of this one's: without this, this instance's
/// late events below `since` would reach it a second time).
fn covered_up_to(backlog_last: Option<u64>, since: Option<u64>) -> u64 {
    backlog_last.unwrap_or(0).max(since.unwrap_or(0))
}

async fn post(ctx: &Ctx, reference: Option<Ref>, post: Post) -> Result<(), GatewayError> {
    let inserted = ctx.state.comments.post(ctx.user.as_deref(), post).await?;
    let comment = inserted.comment;
    // The author's ack is queued before the comment reaches the room.
    ctx.reply(
        reference,
        ServerMessage::Ack(Ack::Posted {
            comment: comment.clone(),
        }),
    );
    ctx.state
        .discussions
        .posted(&comment.room, &comment.author.id);
    ctx.state.comments.happened(comment).await;
    Ok(())
}

async fn delete(ctx: &Ctx, reference: Option<Ref>, delete: Delete) -> Result<(), GatewayError> {
    let seq = ctx
        .state
        .comments
        .delete(ctx.user.as_deref(), &delete)
        .await?;
    ctx.reply(
        reference,
        ServerMessage::Ack(Ack::Deleted {
            id: delete.id.clone(),
        }),
    );
    ctx.state
        .comments
        .deleted(delete.room, delete.id, seq)
        .await;
    Ok(())
}

async fn history(ctx: &Ctx, reference: Option<Ref>, history: History) -> Result<(), GatewayError> {
    let page = ctx
        .state
        .comments
        .read(
            &history.room,
            Slice::Before {
                before: history.before,
                limit: history.limit,
            },
        )
        .await?;
    let mine = ctx
        .state
        .discussions
        .mine(ctx.user.as_deref(), &page.comments)
        .await?;
    ctx.reply(
        reference,
        ServerMessage::History(HistoryPage {
            room: history.room,
            comments: page.comments,
            more: page.more,
            mine,
        }),
    );
    Ok(())
}

/// The user of a request the connection already checked for sign-in.
fn signed_in(ctx: &Ctx) -> Result<&Claims, GatewayError> {
    ctx.user
        .as_deref()
        .ok_or_else(|| GatewayError::Unauthorized("sign in first".into()))
}

async fn edit(ctx: &Ctx, reference: Option<Ref>, edit: Edit) -> Result<(), GatewayError> {
    let user = signed_in(ctx)?;
    // Edits count against the post rate limit.
    if let Some(limiter) = ctx.state.comments.limiter()
        && limiter.check_key(&user.sub.to_string()).is_err()
    {
        return Err(GatewayError::RateLimited);
    }
    let comment = ctx.state.discussions.edit(user, edit).await?;
    ctx.reply(reference, ServerMessage::Ack(Ack::Posted { comment }));
    Ok(())
}

async fn react(ctx: &Ctx, reference: Option<Ref>, react: React) -> Result<(), GatewayError> {
    let user = signed_in(ctx)?;
    if !ctx.state.discussions.allow_react(user) {
        return Err(GatewayError::Throttled(
            "too many reactions; at most 20 in 10 seconds",
        ));
    }
    let id = react.id.to_string();
    let reactions = ctx.state.discussions.react(user, react).await?;
    ctx.reply(
        reference,
        ServerMessage::Ack(Ack::Reacted { id, reactions }),
    );
    Ok(())
}

async fn typing(ctx: &Ctx, room: &RoomId) -> Result<(), GatewayError> {
    let user = signed_in(ctx)?;
    ctx.state.discussions.typing(user, room).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::covered_up_to;

    #[test]
    fn a_resume_covers_at_least_its_since() {
        assert_eq!(
            covered_up_to(None, Some(40)),
            40,
            "empty backlog after since=40"
        );
        assert_eq!(covered_up_to(Some(45), Some(40)), 45);
        assert_eq!(covered_up_to(Some(7), None), 7);
        assert_eq!(covered_up_to(None, None), 0);
    }
}
