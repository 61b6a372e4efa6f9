//! One viewer: the HTTP response body fed by its channel.
//!
//! The body asks for its next batch (`Ready`) as soon as hyper starts writing the
//! current one, so that the round trip through the channel task overlaps the write
//! instead of following it: at most one batch is being written and one more is queued.
//! It asks again only once hyper polls past the end of the current batch, so a viewer
//! that stops reading stops asking after at most one batch more, and its channel drops
//! it after the stall timeout (or when it falls out of the ring).

use std::collections::VecDeque;

use acemux_core::channel::StartFailure;
use acemux_core::fanout::ViewerId;
use axum::body::Body;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::{ChannelKey, ChannelMsg, JoinError};
use crate::metrics::{ChannelLabels, Metrics};

/// Messages queued for one viewer. The channel hands a viewer one batch per `Ready` and
/// the body has at most one `Ready` outstanding, so at most one batch (or keepalive)
/// waits here besides a closing message: a small queue never fills for a live viewer.
pub(super) const VIEWER_QUEUE: usize = 4;

/// What a channel tells a viewer.
pub(super) enum ViewerMsg {
    /// The viewer's first media, from the channel that serves it (its mailbox takes
    /// the viewer's `Ready` and `Leave` from now on).
    Started {
        chunks: Vec<Bytes>,
        mailbox: mpsc::Sender<ChannelMsg>,
    },
    /// Media (or keepalive null packets).
    Data(Vec<Bytes>),
    /// The channel could not start.
    Failed(StartFailure),
    /// The channel refused the viewer (capacity).
    Refused(String),
    /// The viewer was dropped or the channel ended.
    Closed(&'static str),
}

/// Sends `Leave` when the viewer's body is dropped (client gone, or stream over).
struct LeaveGuard {
    viewer: ViewerId,
    mailbox: mpsc::Sender<ChannelMsg>,
}

impl Drop for LeaveGuard {
    fn drop(&mut self) {
        // When the mailbox is full the channel still notices: the viewer stops asking for
        // data and is dropped as stalled.
        let _ = self.mailbox.try_send(ChannelMsg::Leave(self.viewer));
    }
}

/// A viewer that has its first media and can become a response body.
pub struct ViewerStream {
    pending: VecDeque<Bytes>,
    /// Whether a `Ready` was sent whose batch has not been received yet.
    asked: bool,
    rx: mpsc::Receiver<ViewerMsg>,
    guard: LeaveGuard,
    bytes_out: Counter,
}

impl std::fmt::Debug for ViewerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerStream")
            .field("viewer", &self.guard.viewer)
            .finish_non_exhaustive()
    }
}

/// Waits for a joining viewer's first media. The channel answers every viewer it
/// took, by its start timeout at the latest; a channel that is gone drops the queue.
pub(super) async fn first_media(
    mut rx: mpsc::Receiver<ViewerMsg>,
    viewer: ViewerId,
    mailbox: mpsc::Sender<ChannelMsg>,
    metrics: std::sync::Arc<Metrics>,
    key: &ChannelKey,
) -> Result<ViewerStream, JoinError> {
    let mut guard = LeaveGuard { viewer, mailbox };
    let started = tokio::time::Instant::now();
    match rx.recv().await {
        Some(ViewerMsg::Started { chunks, mailbox }) => {
            guard.mailbox = mailbox;
            metrics
                .time_to_first_byte
                .observe(started.elapsed().as_secs_f64());
            let bytes_out = metrics
                .channel_bytes_out
                .get_or_create(&ChannelLabels::new(key))
                .clone();
            Ok(ViewerStream {
                pending: chunks.into(),
                asked: false,
                rx,
                guard,
                bytes_out,
            })
        }
        Some(ViewerMsg::Failed(failure)) => Err(JoinError::Start(failure)),
        Some(ViewerMsg::Refused(message)) => Err(JoinError::Capacity(message)),
        Some(ViewerMsg::Data(_) | ViewerMsg::Closed(_)) | None => Err(JoinError::Ended),
    }
}

impl ViewerStream {
    /// The response body: media as it arrives, until the viewer is dropped or the
    /// channel ends.
    pub fn into_body(self) -> Body {
        let stream = futures::stream::unfold(self, |mut viewer| async move {
            loop {
                if let Some(chunk) = viewer.pending.pop_front() {
                    if !viewer.asked {
                        // Ask for the next batch while this one is written. A full mailbox
                        // is no reason to hold this chunk back: ask again once the batch
                        // is out.
                        let ready = ChannelMsg::Ready(viewer.guard.viewer);
                        viewer.asked = viewer.guard.mailbox.try_send(ready).is_ok();
                    }
                    viewer.bytes_out.inc_by(chunk.len() as u64);
                    return Some((Ok::<_, std::io::Error>(chunk), viewer));
                }
                if !viewer.asked {
                    let ready = ChannelMsg::Ready(viewer.guard.viewer);
                    if viewer.guard.mailbox.send(ready).await.is_err() {
                        return None;
                    }
                }
                let message = viewer.rx.recv().await;
                viewer.asked = false;
                match message {
                    Some(ViewerMsg::Data(chunks) | ViewerMsg::Started { chunks, .. }) => {
                        viewer.pending.extend(chunks)
                    }
                    Some(ViewerMsg::Closed(reason)) => {
                        tracing::debug!(viewer = %viewer.guard.viewer, reason, "viewer closed");
                        return None;
                    }
                    Some(ViewerMsg::Failed(_) | ViewerMsg::Refused(_)) | None => return None,
                }
            }
        });
        Body::from_stream(stream)
    }
}
