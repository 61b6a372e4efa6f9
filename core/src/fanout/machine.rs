//! The fan-out machine.

use std::collections::VecDeque;

use bytes::Bytes;

use super::ring::Ring;
use super::sync::SyncPoints;
use super::viewer::{TimerKind, Viewer, Viewers};
use super::{
    DropReason, FanoutConfig, FanoutError, FanoutStats, Input, Output, ViewerId, KEEPALIVE_PACKETS,
};
use crate::planted::Bug;
use crate::time::Instant;
use crate::ts::{self, PacketAligner, PACKET_LEN};

/// The TS fan-out of one channel: one upstream stream, many viewers.
///
/// Sans-io: after every [`handle_input`](Self::handle_input) or
/// [`handle_timeout`](Self::handle_timeout) call, drain [`poll_output`](Self::poll_output),
/// then read [`poll_timeout`](Self::poll_timeout). `now` must never go backwards;
/// calling `handle_timeout` early is harmless. See the [module docs](super) for the
/// per-viewer contract.
#[derive(Debug)]
pub struct Fanout {
    config: FanoutConfig,
    aligner: PacketAligner,
    ring: Ring,
    sync: SyncPoints,
    viewers: Viewers,
    outputs: VecDeque<Output>,
    /// The keepalive chunk, built once and shared by every keepalive.
    keepalive: Bytes,
    bytes_in: u64,
    dropped_stalled: u64,
    dropped_behind: u64,
}

impl Fanout {
    /// A fan-out with no data and no viewers.
    pub fn new(config: FanoutConfig) -> Self {
        Fanout {
            config,
            aligner: PacketAligner::new(),
            ring: Ring::default(),
            sync: SyncPoints::default(),
            viewers: Viewers::default(),
            outputs: VecDeque::new(),
            keepalive: ts::null_packets(KEEPALIVE_PACKETS),
            bytes_in: 0,
            dropped_stalled: 0,
            dropped_behind: 0,
        }
    }

    /// Applies one input. Errors leave the fan-out unchanged.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), FanoutError> {
        match input {
            Input::Data(bytes) => {
                self.data(now, bytes);
                Ok(())
            }
            Input::Join(id) => self.join(now, id, false),
            Input::JoinAwaiting(id) => self.join(now, id, true),
            Input::Ready(id) => self.ready(now, id),
            Input::Leave(id) => self
                .viewers
                .remove(id)
                .map(|_| ())
                .ok_or(FanoutError::UnknownViewer(id)),
            Input::NewStream => {
                self.aligner.new_stream();
                Ok(())
            }
        }
    }

    /// Applies [`Input::Data`] and returns the whole packets it brought (possibly none),
    /// as the ring holds them: the same allocation, so that whoever keeps parts of them
    /// (the HLS segments a channel cuts) shares the ring's memory instead of copying.
    pub fn push_data(&mut self, now: Instant, bytes: Bytes) -> Bytes {
        self.data(now, bytes)
    }

    /// Drops the viewers stalled at `now` and sends keepalives that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        for id in self.viewers.due(now) {
            let Some(&viewer) = self.viewers.get(id) else {
                continue;
            };
            let Some((kind, _)) = viewer.timer else {
                continue;
            };
            match kind {
                TimerKind::Stall => self.drop_viewer(id, DropReason::Stalled),
                TimerKind::Keepalive => {
                    self.outputs.push_back(Output::Keepalive {
                        viewer: id,
                        chunk: self.keepalive.clone(),
                    });
                    let stall = now + self.config.viewer_stall_timeout;
                    self.viewers.update(id, |viewer| {
                        viewer.ready = false;
                        viewer.last_sent = now;
                        viewer.timer = Some((TimerKind::Stall, stall));
                    });
                }
            }
        }
    }

    /// The next thing for the driver to do.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called: the earliest
    /// stall deadline of a viewer in flight or keepalive deadline of a ready one. It may
    /// lie in the past (call at once); `None` without viewers.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.viewers.next_deadline()
    }

    /// Counters and levels.
    pub fn stats(&self) -> FanoutStats {
        FanoutStats {
            bytes_in: self.bytes_in,
            live_offset: self.ring.end_offset(),
            ring_bytes: self.ring.bytes(),
            ring_start_offset: self.ring.start_offset(),
            viewers: self.viewers.len(),
            dropped_stalled: self.dropped_stalled,
            dropped_behind: self.dropped_behind,
            discarded_bytes: self.aligner.discarded_bytes(),
        }
    }

    /// Viewers joined now.
    pub fn viewer_count(&self) -> usize {
        self.viewers.len()
    }

    /// Stream offset at which a viewer joining now would start (before any wait for a
    /// clean start moves it forward).
    pub fn join_point(&self) -> u64 {
        self.sync.join_point(self.ring.end_offset())
    }

    /// Every viewer joined now, in id order.
    pub fn viewer_ids(&self) -> Vec<ViewerId> {
        self.viewers.ids()
    }

    /// Whether `viewer` is joined (not left, not dropped).
    pub fn has_viewer(&self, viewer: ViewerId) -> bool {
        self.viewers.get(viewer).is_some()
    }

    /// Stream offset of the next byte `viewer` will be handed; right after its join,
    /// its join point. While the viewer waits for a clean start it stays at its join
    /// point; when the wait ends it moves forward to where the viewer starts.
    pub fn viewer_offset(&self, viewer: ViewerId) -> Option<u64> {
        self.viewers.get(viewer).map(|viewer| viewer.cursor)
    }

    /// Whether `viewer` is joined and still waiting for a clean start (see the
    /// [module docs](super)): it has been handed no media yet.
    pub fn viewer_waiting(&self, viewer: ViewerId) -> bool {
        self.viewers
            .get(viewer)
            .is_some_and(|viewer| viewer.waiting)
    }

    /// Aligns and stores `bytes`, ends the waits it allows, drops the viewers the ring
    /// moved past, and publishes to every ready viewer. Returns the aligned bytes.
    fn data(&mut self, now: Instant, bytes: Bytes) -> Bytes {
        self.bytes_in += bytes.len() as u64;
        let aligned = self.aligner.push(bytes);
        if aligned.is_empty() {
            return aligned;
        }
        self.sync.observe(&aligned, self.ring.end_offset());
        self.ring.push(aligned.clone());
        let evicted = self.ring.evict(self.config.ring_capacity_bytes);
        if evicted {
            self.sync.trim(self.ring.start_offset());
        }
        // Before the eviction drops: a waiting viewer whose cursor was evicted starts
        // inside the ring instead of falling behind.
        for id in self.viewers.waiting_ids() {
            self.end_wait(id);
        }
        if evicted {
            for id in self.viewers.before(self.ring.start_offset()) {
                self.drop_viewer(id, DropReason::FellBehind);
            }
        }
        if !self.held_by_a_slow_viewer(None) {
            // Ready viewers sit at the previous live edge, which the ring still holds
            // (the newest chunk is never evicted), or have just ended their wait inside
            // the ring.
            for id in self.viewers.ready_ids() {
                self.deliver(now, id);
            }
        }
        aligned
    }

    /// Ends the wait of `id` for a clean start when the newest chunk allows: at the first
    /// clean start it made at or after the cursor; else, when
    /// [`max_sync_wait_bytes`](super::FanoutConfig::max_sync_wait_bytes) have arrived past
    /// the cursor or the ring has moved past it, at the newest PAT at or after the
    /// cursor, else at the cursor (or the ring start, when that is later).
    fn end_wait(&mut self, id: ViewerId) {
        let Some(&viewer) = self.viewers.get(id) else {
            return;
        };
        let from = viewer.cursor.max(self.ring.start_offset());
        let start = match self.sync.fresh_clean_start(from) {
            Some(pat) => pat,
            None if viewer.cursor < self.ring.start_offset()
                || self.sync_wait_over(viewer.cursor) =>
            {
                self.sync.newest_pat_from(from).unwrap_or(from)
            }
            None => return,
        };
        self.viewers.update(id, |viewer| {
            viewer.cursor = start;
            viewer.waiting = false;
        });
    }

    /// Whether a viewer waiting at `cursor` has waited long enough for a clean start.
    fn sync_wait_over(&self, cursor: u64) -> bool {
        let waited = self.ring.end_offset().saturating_sub(cursor);
        waited >= u64::try_from(self.config.max_sync_wait_bytes).unwrap_or(u64::MAX)
    }

    fn join(&mut self, now: Instant, id: ViewerId, awaiting: bool) -> Result<(), FanoutError> {
        if self.viewers.get(id).is_some() {
            return Err(FanoutError::DuplicateViewer(id));
        }
        if self.viewers.len() >= self.config.max_viewers {
            return Err(FanoutError::Capacity {
                limit: self.config.max_viewers,
            });
        }
        let cursor = self.sync.join_point(self.ring.end_offset());
        let viewer = Viewer {
            cursor,
            waiting: !self.sync.join_point_is_clean() && !self.sync_wait_over(cursor),
            last_sent: now,
            // An awaiting viewer wants its first media at once and has no timer until
            // then: nothing is in flight, and no response exists to keep alive.
            ready: awaiting,
            timer: (!awaiting).then(|| (TimerKind::Stall, now + self.config.viewer_stall_timeout)),
        };
        self.viewers.insert(id, viewer);
        if awaiting && !viewer.waiting && viewer.cursor < self.ring.end_offset() {
            // Ready at once, with media held after its join point: hand it over now.
            self.deliver(now, id);
        }
        Ok(())
    }

    fn ready(&mut self, now: Instant, id: ViewerId) -> Result<(), FanoutError> {
        let viewer = *self.viewers.get(id).ok_or(FanoutError::UnknownViewer(id))?;
        if viewer.ready {
            // A repeated Ready: it is already waiting for data.
            return Ok(());
        }
        if self.held_by_a_slow_viewer(Some(id)) {
            let keepalive = viewer.last_sent + self.config.keepalive_interval;
            self.viewers.update(id, |viewer| {
                viewer.ready = true;
                viewer.timer = Some((TimerKind::Keepalive, keepalive));
            });
        } else if self.config.planted.has(Bug::ChannelWaitsForSlowestViewer) {
            // The last slow one is done: everybody gets what waited.
            let keepalive = viewer.last_sent + self.config.keepalive_interval;
            self.viewers.update(id, |viewer| {
                viewer.ready = true;
                viewer.timer = Some((TimerKind::Keepalive, keepalive));
            });
            for ready in self.viewers.ready_ids() {
                let Some(&viewer) = self.viewers.get(ready) else {
                    continue;
                };
                if !viewer.waiting && viewer.cursor < self.ring.end_offset() {
                    self.deliver(now, ready);
                }
            }
        } else if !viewer.waiting && viewer.cursor < self.ring.end_offset() {
            self.deliver(now, id);
        } else {
            let keepalive = viewer.last_sent + self.config.keepalive_interval;
            self.viewers.update(id, |viewer| {
                viewer.ready = true;
                viewer.timer = Some((TimerKind::Keepalive, keepalive));
            });
        }
        Ok(())
    }

    /// Hands `id` the bytes after its cursor, up to the delivery budget, and puts it in
    /// flight. Callers make sure it is not waiting and there is something after the
    /// cursor.
    fn deliver(&mut self, now: Instant, id: ViewerId) {
        let Some(&viewer) = self.viewers.get(id) else {
            return;
        };
        let (chunks, len) = self.ring.read(viewer.cursor, self.delivery_budget());
        if len == 0 {
            // Unreachable: cursors before the ring are dropped on eviction, and callers
            // only deliver below the live edge. Should it happen, the viewer has lost its
            // place in the stream.
            if viewer.cursor < self.ring.start_offset() {
                self.drop_viewer(id, DropReason::FellBehind);
            }
            return;
        }
        self.outputs.push_back(Output::Deliver {
            viewer: id,
            offset: viewer.cursor,
            chunks,
        });
        let stall = now + self.config.viewer_stall_timeout;
        self.viewers.update(id, |viewer| {
            viewer.cursor += len as u64;
            viewer.ready = false;
            viewer.last_sent = now;
            viewer.timer = Some((TimerKind::Stall, stall));
        });
    }

    /// Bytes per delivery: whole packets when the limit allows one, and never zero, so
    /// that every delivery makes progress.
    /// With [`Bug::ChannelWaitsForSlowestViewer`] planted: whether a viewer other than
    /// `except` is still writing its last delivery, holding everyone up.
    fn held_by_a_slow_viewer(&self, except: Option<ViewerId>) -> bool {
        self.config.planted.has(Bug::ChannelWaitsForSlowestViewer)
            && self.viewers.ids().into_iter().any(|id| {
                Some(id) != except
                    && self
                        .viewers
                        .get(id)
                        .is_some_and(|viewer| matches!(viewer.timer, Some((TimerKind::Stall, _))))
            })
    }

    fn delivery_budget(&self) -> usize {
        let max = self.config.max_delivery_bytes;
        if max >= PACKET_LEN {
            max - max % PACKET_LEN
        } else {
            max.max(1)
        }
    }

    fn drop_viewer(&mut self, id: ViewerId, reason: DropReason) {
        if self.viewers.remove(id).is_none() {
            return;
        }
        match reason {
            DropReason::FellBehind => self.dropped_behind += 1,
            DropReason::Stalled => self.dropped_stalled += 1,
        }
        self.outputs.push_back(Output::Drop { viewer: id, reason });
    }
}
