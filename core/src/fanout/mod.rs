//! TS fan-out: one upstream MPEG-TS byte stream, any number of viewers.
//!
//! A [`Fanout`] aligns the upstream bytes into whole packets, keeps the newest of them in
//! a ring bounded in bytes, and hands every viewer zero-copy [`Bytes`] slices of that ring
//! from its own cursor on. It never copies media and never waits: data is published to
//! every waiting viewer the moment it arrives.
//!
//! The contract with the driver, per viewer:
//!
//! - [`Input::Join`] adds a viewer. Its cursor starts at the join point (the newest PAT
//!   that is followed by a keyframe, else the newest PAT, else the live edge). It is not
//!   ready yet: it counts as in flight from the join on, until its first [`Input::Ready`]
//!   (the driver sends that once the response head is written).
//! - A viewer whose join point is not a PAT followed by a keyframe (a packet flagged as
//!   a random access point), because no such point is held (e.g. the first viewer of a
//!   channel, which joins before any data), waits for a clean start, so that its player
//!   never begins mid-GOP: it is handed nothing until a PAT followed by a keyframe
//!   arrives at or after its cursor, and then its cursor moves forward to that PAT (the
//!   first such one) and delivery proceeds as usual. For streams that never flag random
//!   access, the wait ends once [`FanoutConfig::max_sync_wait_bytes`] aligned bytes have
//!   arrived past its cursor, or sooner if the ring is about to drop its cursor: the
//!   viewer then starts at the newest PAT at or after its cursor, else at its cursor (or
//!   the ring start, if that is later). While it waits a ready viewer has nothing to be
//!   handed: it gets keepalives like a viewer at the live edge and is never dropped for
//!   the wait.
//! - Every [`Output::Deliver`] or [`Output::Keepalive`] puts the viewer in flight; nothing
//!   more is handed to it until the driver reports [`Input::Ready`], which it does once
//!   everything handed out has been written.
//! - A viewer in flight for longer than [`FanoutConfig::viewer_stall_timeout`] is dropped
//!   ([`DropReason::Stalled`]); a viewer whose cursor falls out of the ring is dropped
//!   ([`DropReason::FellBehind`]), unless it is waiting for a clean start (it then starts
//!   inside the ring, see above). Either way one slow viewer never holds back the others.
//! - A ready viewer that has had nothing for [`FanoutConfig::keepalive_interval`] (it is
//!   at the live edge, or waiting for a clean start) gets a few TS null packets so that
//!   players and proxies do not time out.
//!
//! Drive order: after every [`Fanout::handle_input`] or [`Fanout::handle_timeout`] call,
//! drain [`Fanout::poll_output`], then read [`Fanout::poll_timeout`] and call
//! `handle_timeout` no later than that (a deadline in the past means "now"). `now` never
//! goes backwards; early `handle_timeout` calls are harmless.
//!
//! ```
//! use acemux_core::fanout::{Fanout, FanoutConfig, Input, Output, ViewerId};
//! use acemux_core::{ts, Instant};
//!
//! let mut fanout = Fanout::new(FanoutConfig::default());
//! let now = Instant::ZERO;
//! let viewer = ViewerId(1);
//! fanout.handle_input(now, Input::Join(viewer)).expect("room for one viewer");
//! // The response head is written: the viewer wants media.
//! fanout.handle_input(now, Input::Ready(viewer)).expect("a known viewer");
//! // The viewer joined before any data, so it waits for a clean start: packets before a
//! // PAT followed by a keyframe are not handed to it (up to `max_sync_wait_bytes`).
//! fanout.handle_input(now, Input::Data(ts::null_packets(10))).expect("data is never refused");
//! assert_eq!(fanout.poll_output(), None);
//! let mut start = ts::null_packets(2).to_vec();
//! start[..4].copy_from_slice(&[0x47, 0x40, 0x00, 0x10]); // a PAT
//! start[188..194].copy_from_slice(&[0x47, 0x41, 0x00, 0x30, 0x01, 0x40]); // a keyframe
//! fanout.handle_input(now, Input::Data(start.into())).expect("data is never refused");
//! while let Some(output) = fanout.poll_output() {
//!     match output {
//!         Output::Deliver { viewer, offset, chunks } => {
//!             // Write `chunks` to the viewer's socket, then send `Input::Ready(viewer)`.
//!             // It starts at the PAT, after the 10 packets before it.
//!             assert_eq!((viewer, offset, chunks.len()), (ViewerId(1), 10 * 188, 1));
//!         }
//!         Output::Keepalive { .. } => { /* write it, then send Ready */ }
//!         Output::Drop { .. } => { /* close the connection */ }
//!     }
//! }
//! if let Some(deadline) = fanout.poll_timeout() {
//!     // Sleep until `deadline`, then call `fanout.handle_timeout(now)`.
//!     let _ = deadline;
//! }
//! ```

mod machine;
mod ring;
mod sync;
mod viewer;

use std::fmt;

use bytes::Bytes;
use thiserror::Error;

use crate::time::Duration;

pub use machine::Fanout;

/// Null packets in one [`Output::Keepalive`]: 7 × 188 = 1316 bytes, one UDP-sized burst.
pub const KEEPALIVE_PACKETS: usize = 7;

/// Identifies one viewer; chosen by the driver, unique among the viewers joined at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ViewerId(pub u64);

impl fmt::Display for ViewerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Limits of a [`Fanout`].
#[derive(Clone, Debug)]
pub struct FanoutConfig {
    /// Aligned bytes kept for viewers that lag behind live and for joins. The newest
    /// upstream chunk is always kept, even when it alone is larger.
    pub ring_capacity_bytes: usize,
    /// How long a viewer may stay in flight (no [`Input::Ready`] since it was last handed
    /// something, or since it joined) before it is dropped as [`DropReason::Stalled`].
    pub viewer_stall_timeout: Duration,
    /// How long a ready viewer may go without being handed anything before it gets an
    /// [`Output::Keepalive`].
    pub keepalive_interval: Duration,
    /// Most bytes handed to one viewer per [`Output::Deliver`]. At 188 bytes or more a
    /// delivery ends on a packet boundary (the limit is rounded down to whole packets);
    /// 0 is taken as 1, so that every delivery makes progress.
    pub max_delivery_bytes: usize,
    /// Most viewers joined at once; more joins get [`FanoutError::Capacity`].
    pub max_viewers: usize,
    /// How long, in aligned bytes, a viewer that joined without a clean start (a PAT
    /// followed by a keyframe) waits for one before it is handed anything. Once this many
    /// bytes have arrived past its cursor without one (a stream that never flags random
    /// access), it starts at the newest PAT at or after its cursor, else at its cursor.
    /// It also stops waiting when the ring is about to drop its cursor, so with a ring
    /// smaller than this the ring is the limit. 0 turns waiting off: viewers start at
    /// their join point at once.
    pub max_sync_wait_bytes: usize,
    /// Bugs planted for the simulation's self-test; none in the product.
    pub planted: crate::planted::Planted,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            ring_capacity_bytes: 16 * 1024 * 1024,
            viewer_stall_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(1),
            max_delivery_bytes: 256 * 1024,
            max_viewers: 16_384,
            max_sync_wait_bytes: 1024 * 1024,
            planted: crate::planted::Planted::NONE,
        }
    }
}

/// What the fan-out is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Raw upstream bytes, in any chunking; they are aligned into whole packets first.
    Data(Bytes),
    /// A new viewer. It starts at the join point (or, when that is not a clean start,
    /// waits for one) and is not ready yet.
    Join(ViewerId),
    /// A new viewer that awaits its first media: like [`Input::Join`] followed by
    /// [`Input::Ready`], except that until its first [`Output::Deliver`] it has no timer
    /// at all (no keepalive, since its driver has no response to keep alive yet, and no
    /// stall, since nothing is in flight). Its driver bounds that wait (the channel's
    /// start timeout).
    JoinAwaiting(ViewerId),
    /// The viewer has written everything handed to it and wants more.
    Ready(ViewerId),
    /// The viewer went away; it is forgotten without any output.
    Leave(ViewerId),
    /// The upstream byte stream ends here and a new one begins (a new playback): a
    /// partial packet left from the old one is dropped, not joined to the new one's
    /// first bytes. Viewers continue at the same offsets.
    NewStream,
}

/// What the fan-out asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write `chunks`, in order, to the viewer; then send [`Input::Ready`].
    Deliver {
        /// Whom to write to.
        viewer: ViewerId,
        /// Stream offset (in aligned bytes since the first) of the first byte of `chunks`.
        offset: u64,
        /// Zero-copy slices of the ring, never empty, at most
        /// [`FanoutConfig::max_delivery_bytes`] in total.
        chunks: Vec<Bytes>,
    },
    /// Write these null packets to the viewer; then send [`Input::Ready`]. They carry
    /// no media and do not advance the viewer's offset.
    Keepalive {
        /// Whom to write to.
        viewer: ViewerId,
        /// [`KEEPALIVE_PACKETS`] null packets.
        chunk: Bytes,
    },
    /// The viewer is removed; close its connection. Later inputs naming it get
    /// [`FanoutError::UnknownViewer`].
    Drop {
        /// Who was removed.
        viewer: ViewerId,
        /// Why.
        reason: DropReason,
    },
}

/// Why a viewer was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// The ring moved past its cursor: it reads slower than the stream arrives.
    FellBehind,
    /// It stayed in flight past [`FanoutConfig::viewer_stall_timeout`]: its writes are stuck.
    Stalled,
}

impl DropReason {
    /// A stable, machine-readable name (for logs and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::FellBehind => "fell_behind",
            DropReason::Stalled => "stalled",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the fan-out refused an input. The fan-out is unchanged after any of these.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FanoutError {
    /// No such viewer (never joined, left, or already dropped; the driver may race with
    /// a drop and can ignore this).
    #[error("unknown viewer {0}")]
    UnknownViewer(ViewerId),
    /// A join for a viewer that is already joined.
    #[error("viewer {0} has already joined")]
    DuplicateViewer(ViewerId),
    /// The viewer limit is reached.
    #[error("too many viewers (limit {limit})")]
    Capacity {
        /// The configured limit.
        limit: usize,
    },
}

/// Counters and levels of a [`Fanout`], for metrics and the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FanoutStats {
    /// Raw upstream bytes received, before alignment.
    pub bytes_in: u64,
    /// Aligned bytes received: the stream offset of the live edge.
    pub live_offset: u64,
    /// Aligned bytes held in the ring.
    pub ring_bytes: usize,
    /// Stream offset of the oldest byte held (equal to `live_offset` when empty).
    pub ring_start_offset: u64,
    /// Viewers joined now.
    pub viewers: usize,
    /// Viewers dropped as [`DropReason::Stalled`].
    pub dropped_stalled: u64,
    /// Viewers dropped as [`DropReason::FellBehind`].
    pub dropped_behind: u64,
    /// Upstream bytes skipped because they were not part of an aligned packet.
    pub discarded_bytes: u64,
}

#[cfg(test)]
mod tests;
