//! One viewer: the slot its channel fills, and the stream that empties it.
//!
//! The channel hands a viewer one batch per `Ready`. The viewer asks for its next batch
//! (`Ready`) as soon as it takes the current one, before writing it, so that the round
//! trip through the channel task overlaps the write instead of following it: at most
//! one batch is being written and one more waits in the slot. A viewer that stops
//! reading stops taking, so it stops asking after at most one batch more, and its
//! channel drops it after the stall timeout (or when it falls out of the ring).
//!
//! The slot is a few words behind one lock, not a queue: a crowd of ten thousand
//! viewers costs ten thousand of them. Its one reader is the viewer's task, so a change
//! wakes that task through one waker slot (no waiter list to lock): a wait checks the
//! slot, registers its waker, and checks again.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use acemux_core::channel::StartFailure;
use acemux_core::fanout::ViewerId;
use axum::body::Body;
use bytes::Bytes;
use futures::task::AtomicWaker;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::{ChannelKey, ChannelMsg, JoinError};
use crate::metrics::{ChannelLabels, Metrics};

/// Batches a slot holds at most. The channel hands one per `Ready` and a viewer has at
/// most one `Ready` outstanding, so a live viewer's slot holds one batch, rarely two (a
/// keepalive beside it); one holding more has stopped taking and is treated as gone.
const MAX_BATCHES: u8 = 3;

/// How a viewer's stream ends.
#[derive(Clone, Debug)]
pub(super) enum End {
    /// The channel could not start.
    Failed(StartFailure),
    /// The channel refused the viewer (capacity).
    Refused(String),
    /// The channel ended: media already handed over is still written.
    Closed(&'static str),
    /// The channel dropped the viewer (stalled, or fell out of the ring): its writes
    /// stop at once, even one in progress.
    Dropped(&'static str),
}

#[derive(Debug, Default)]
struct SlotState {
    /// The mailbox of the channel that serves the viewer, set with its first media
    /// (the channel it joined may have handed it to a successor).
    serving: Option<mpsc::Sender<ChannelMsg>>,
    /// Media handed over and not taken yet.
    chunks: Vec<Bytes>,
    /// Batches in `chunks`.
    batches: u8,
    end: Option<End>,
    /// The viewer's side is gone: nothing handed over will be taken.
    gone: bool,
}

/// What a channel hands one viewer, and the viewer takes.
#[derive(Debug, Default)]
pub(super) struct Slot {
    state: Mutex<SlotState>,
    /// Wakes the viewer's one task after every change.
    changed: AtomicWaker,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Hands `chunks` over, with the serving channel's mailbox for a first batch. False
    /// when the viewer is gone or has stopped taking (it holds the bound of batches).
    pub(super) fn deliver(
        &self,
        chunks: Vec<Bytes>,
        serving: Option<mpsc::Sender<ChannelMsg>>,
    ) -> bool {
        let mut state = self.state();
        if state.gone || state.end.is_some() || state.batches >= MAX_BATCHES {
            return false;
        }
        if serving.is_some() {
            state.serving = serving;
        }
        // A taken slot is empty: the batch moves in whole, no copy of its list.
        if state.chunks.is_empty() {
            state.chunks = chunks;
        } else {
            state.chunks.extend(chunks);
        }
        state.batches += 1;
        drop(state);
        self.changed.wake();
        true
    }

    /// Ends the viewer's stream; false when the viewer was gone already.
    pub(super) fn end(&self, end: End) -> bool {
        let mut state = self.state();
        if state.end.is_none() {
            state.end = Some(end);
        }
        let gone = state.gone;
        drop(state);
        self.changed.wake();
        !gone
    }

    /// Resolves with what `check` finds in the slot, once it finds something: checked
    /// now, and again after every change. Only the viewer's own task waits on a slot.
    async fn until<T>(&self, mut check: impl FnMut(&Slot) -> Option<T>) -> T {
        poll_fn(|cx| {
            if let Some(found) = check(self) {
                return Poll::Ready(found);
            }
            self.changed.register(cx.waker());
            // A change between the first check and the registration woke nobody.
            match check(self) {
                Some(found) => Poll::Ready(found),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Waits for the first media: the serving channel's mailbox, or how the join ended.
    async fn started(&self) -> Result<mpsc::Sender<ChannelMsg>, End> {
        self.until(|slot| {
            let state = slot.state();
            if let Some(serving) = &state.serving {
                return Some(Ok(serving.clone()));
            }
            state.end.clone().map(Err)
        })
        .await
    }

    /// Waits until something is handed over (media or the end).
    async fn handed(&self) {
        self.until(|slot| {
            let state = slot.state();
            (!state.chunks.is_empty() || state.end.is_some()).then_some(())
        })
        .await;
    }

    /// What is handed over now: media, else the end, else nothing yet.
    fn take(&self) -> Taken {
        let mut state = self.state();
        if let Some(end @ End::Dropped(_)) = &state.end {
            return Taken::End(end.clone());
        }
        if !state.chunks.is_empty() {
            state.batches = 0;
            return Taken::Media(std::mem::take(&mut state.chunks));
        }
        match &state.end {
            Some(end) => Taken::End(end.clone()),
            None => Taken::Nothing,
        }
    }

    fn dropped_now(&self) -> bool {
        matches!(self.state().end, Some(End::Dropped(_)))
    }

    fn leave(&self) {
        let mut state = self.state();
        state.gone = true;
        state.chunks = Vec::new();
    }
}

enum Taken {
    Media(Vec<Bytes>),
    End(End),
    Nothing,
}

/// Sends `Leave` when the viewer's stream is dropped (client gone, or stream over).
struct LeaveGuard {
    viewer: ViewerId,
    slot: Arc<Slot>,
    mailbox: mpsc::Sender<ChannelMsg>,
}

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        self.slot.leave();
        // When the mailbox is full the channel still notices: the slot refuses the next
        // batch, and the channel lets the viewer go.
        let _ = self.mailbox.try_send(ChannelMsg::Leave(self.viewer));
    }
}

/// A viewer that has its first media: batches of it until the stream ends.
pub struct ViewerStream {
    guard: LeaveGuard,
    /// Whether a `Ready` was sent whose batch has not been taken yet.
    asked: bool,
    /// The stream has ended (how is the slot's).
    ended: bool,
    bytes_out: Counter,
    /// Its place in its channel's viewer list (bytes and rate), once listed.
    listed: Option<super::viewers::TsRegistration>,
}

impl std::fmt::Debug for ViewerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerStream")
            .field("viewer", &self.guard.viewer)
            .finish_non_exhaustive()
    }
}

/// Waits for a joining viewer's first media. The channel answers every viewer it
/// took, by its start timeout at the latest.
pub(super) async fn first_media(
    slot: Arc<Slot>,
    viewer: ViewerId,
    mailbox: mpsc::Sender<ChannelMsg>,
    metrics: &Metrics,
    key: &ChannelKey,
) -> Result<ViewerStream, JoinError> {
    let mut guard = LeaveGuard {
        viewer,
        slot,
        mailbox,
    };
    let started = tokio::time::Instant::now();
    match guard.slot.started().await {
        Ok(serving) => {
            guard.mailbox = serving;
            metrics
                .time_to_first_byte
                .observe(started.elapsed().as_secs_f64());
            let bytes_out = metrics
                .channel_bytes_out
                .get_or_create(&ChannelLabels::new(key))
                .clone();
            Ok(ViewerStream {
                guard,
                asked: false,
                ended: false,
                bytes_out,
                listed: None,
            })
        }
        Err(End::Failed(failure)) => Err(JoinError::Start(failure)),
        Err(End::Refused(message)) => Err(JoinError::Capacity(message)),
        Err(End::Closed(_) | End::Dropped(_)) => Err(JoinError::Ended),
    }
}

impl ViewerStream {
    /// Lists the viewer with its channel until the stream is dropped.
    pub(super) fn register(&mut self, listed: super::viewers::TsRegistration) {
        self.listed = Some(listed);
    }

    fn ask(&mut self) {
        if !self.asked {
            let ready = ChannelMsg::Ready(self.guard.viewer);
            // A full mailbox is no reason to hold this batch back: ask again once it
            // is out.
            self.asked = self.guard.mailbox.try_send(ready).is_ok();
        }
    }

    /// The next batch of media, asking for the one after it at once; `None` once the
    /// stream has ended (see [`was_dropped`](Self::was_dropped)).
    pub async fn next_batch(&mut self) -> Option<Vec<Bytes>> {
        if self.ended {
            return None;
        }
        loop {
            match self.guard.slot.take() {
                Taken::Media(chunks) => {
                    // What arrived answers the outstanding `Ready`.
                    self.asked = false;
                    self.ask();
                    let bytes: usize = chunks.iter().map(Bytes::len).sum();
                    self.bytes_out.inc_by(bytes as u64);
                    if let Some(listed) = &self.listed {
                        listed.sent(bytes as u64);
                    }
                    return Some(chunks);
                }
                Taken::End(end) => {
                    if let End::Closed(reason) | End::Dropped(reason) = &end {
                        tracing::debug!(viewer = %self.guard.viewer, reason, "viewer closed");
                    }
                    self.ended = true;
                    return None;
                }
                Taken::Nothing => {
                    if !self.asked {
                        let ready = ChannelMsg::Ready(self.guard.viewer);
                        if self.guard.mailbox.send(ready).await.is_err() {
                            self.ended = true;
                            return None;
                        }
                        self.asked = true;
                    }
                    self.guard.slot.handed().await;
                }
            }
        }
    }

    /// Resolves once the channel drops the viewer: a write in progress is abandoned.
    pub async fn dropped(&self) {
        self.guard
            .slot
            .until(|slot| slot.dropped_now().then_some(()))
            .await;
    }

    /// Whether the stream ended because the channel dropped the viewer (rather than
    /// because the channel ended).
    pub fn was_dropped(&self) -> bool {
        self.guard.slot.dropped_now()
    }

    /// The response body: media as it arrives, until the viewer is dropped or the
    /// channel ends.
    pub fn into_body(self) -> Body {
        let stream = futures::stream::unfold(
            (self, VecDeque::new()),
            |(mut viewer, mut pending)| async move {
                loop {
                    if let Some(chunk) = pending.pop_front() {
                        return Some((Ok::<Bytes, std::io::Error>(chunk), (viewer, pending)));
                    }
                    pending.extend(viewer.next_batch().await?);
                }
            },
        );
        Body::from_stream(stream)
    }
}
