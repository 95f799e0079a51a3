//! One writer per room per instance: posts of a room queue (boundedly) for the room's writer
//! task, which stores whatever is waiting in one batch (one `insertMany` on MongoDB). Posts of
//! one room never race each other for a seq inside an instance; the writer keeps the room's
//! next seq between batches and exits when the room has been quiet for a while.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use shared_proto::RoomId;
use tokio::sync::{mpsc, oneshot};

use super::Comments;
use crate::error::GatewayError;
use crate::store::{Inserted, NewComment, STORE_DEADLINE, StoreError};

/// Posts waiting per room before new ones are refused (`unavailable`).
pub const QUEUE_PER_ROOM: usize = 512;
/// Most posts stored in one batch.
pub const MAX_BATCH: usize = 100;
/// A writer with nothing to do for this long stops.
const IDLE: Duration = Duration::from_secs(30);

struct Job {
    new: NewComment,
    reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// The running room writers.
#[derive(Default)]
pub(super) struct Writers {
    rooms: Mutex<HashMap<RoomId, mpsc::Sender<Job>>>,
}

impl Writers {
    /// Queues `new` for its room's writer and waits for the result, at most the store deadline.
    pub(super) async fn store(
        &self,
        comments: &Comments,
        new: NewComment,
    ) -> Result<Inserted, GatewayError> {
        let (reply, mut answer) = oneshot::channel();
        self.submit(comments, Job { new, reply })?;
        let deadline = tokio::time::sleep(STORE_DEADLINE);
        tokio::pin!(deadline);
        let result = tokio::select! {
            result = &mut answer => result.ok(),
            _ = &mut deadline => {
                // From now on the writer fans the comment out itself if it is stored after all.
                answer.close();
                answer.try_recv().ok()
            }
        };
        match result {
            Some(Ok(inserted)) => Ok(inserted),
            Some(Err(e)) => Err(e.into()),
            None => Err(GatewayError::Unavailable("storage")),
        }
    }

    fn submit(&self, comments: &Comments, job: Job) -> Result<(), GatewayError> {
        let room = job.new.room.clone();
        let mut job = job;
        for _ in 0..2 {
            let sender = {
                let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
                rooms
                    .entry(room.clone())
                    .or_insert_with(|| start(comments.clone(), room.clone()))
                    .clone()
            };
            match sender.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(GatewayError::Unavailable("the room's post queue"));
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    // The writer stopped for idleness just now: start a new one.
                    job = back;
                    let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
                    if rooms.get(&room).is_some_and(|s| s.same_channel(&sender)) {
                        rooms.remove(&room);
                    }
                }
            }
        }
        Err(GatewayError::Unavailable("the room's writer"))
    }

    /// Removes `room`'s writer if it is `me` and nothing waits for it; true when removed.
    fn retire(
        &self,
        room: &RoomId,
        me: &mpsc::Sender<Job>,
        queue: &mut mpsc::Receiver<Job>,
    ) -> bool {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if !queue.is_empty() {
            return false;
        }
        if rooms.get(room).is_some_and(|s| s.same_channel(me)) {
            rooms.remove(room);
        }
        queue.close();
        true
    }

    /// Rooms with a running writer.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn start(comments: Comments, room: RoomId) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(QUEUE_PER_ROOM);
    let me = tx.clone();
    tokio::spawn(run(comments, room, me, rx));
    tx
}

async fn run(
    comments: Comments,
    room: RoomId,
    me: mpsc::Sender<Job>,
    mut queue: mpsc::Receiver<Job>,
) {
    let mut next = None;
    loop {
        let first = match tokio::time::timeout(IDLE, queue.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(_) => {
                if comments.inner.writers.retire(&room, &me, &mut queue) {
                    // Whatever slipped in meanwhile is answered, not dropped.
                    while let Ok(job) = queue.try_recv() {
                        let _ = job.reply.send(Err(StoreError::Unavailable(anyhow::anyhow!(
                            "the room's writer stopped"
                        ))));
                    }
                    return;
                }
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A poster that already gave up (deadline) gets nothing stored.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (news, replies): (Vec<NewComment>, Vec<_>) =
            batch.into_iter().map(|job| (job.new, job.reply)).unzip();
        let results = comments.store().insert_batch(news, &mut next).await;
        for (reply, result) in replies.into_iter().zip(results) {
            if let Err(Ok(inserted)) = reply.send(result) {
                // Stored after its poster gave up: nobody acks it, but it is fanned out.
                let comments = comments.clone();
                tokio::spawn(async move { comments.happened(inserted.comment).await });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shared_proto::{Author, CommentText};

    use super::*;
    use crate::bus::LocalBus;
    use crate::hub::Hub;
    use crate::metrics::GatewayMetrics;
    use crate::store::{EmbeddedStore, Store};

    #[tokio::test]
    async fn the_queue_per_room_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            EmbeddedStore::open(&dir.path().join("db"), &dir.path().join("none")).expect("open");
        let store = Store::Embedded(store);
        let metrics = GatewayMetrics::new(&prometheus::Registry::new());
        let bus = Arc::new(LocalBus);
        let hub = Hub::new(
            store.clone(),
            bus.clone(),
            metrics.clone(),
            16,
            tokio_util::task::TaskTracker::new(),
        );
        let comments = Comments::new(store, hub, bus, "me".into(), metrics, None);
        let room = RoomId::parse("r").expect("room");
        let mut refused = 0;
        let mut answers = Vec::new();
        // Nothing yields in between (one-thread runtime): the writer cannot take any.
        for i in 0..QUEUE_PER_ROOM + 10 {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                new: NewComment {
                    room: room.clone(),
                    author: Author {
                        id: "JD".into(),
                        name: "JD".into(),
                    },
                    text: CommentText::parse(&format!("post {i}")).expect("text"),
                    client_id: None,
                    created_ms: 0,
                    reply_to: None,
                },
                reply,
            };
            match comments.inner.writers.submit(&comments, job) {
                Ok(()) => answers.push(answer),
                Err(GatewayError::Unavailable(_)) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(refused, 10);
        assert_eq!(comments.inner.writers.len(), 1);
        // The queued ones are stored, with consecutive seqs.
        let mut seqs = Vec::new();
        for answer in answers {
            seqs.push(answer.await.expect("answered").expect("stored").comment.seq);
        }
        let expected: Vec<u64> = (1..=QUEUE_PER_ROOM as u64).collect();
        assert_eq!(seqs, expected);
    }
}
