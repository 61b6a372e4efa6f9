//! Where a viewer can start decoding: sync points tracked as packets arrive.
//!
//! A clean start is a PAT start that is followed (later in the stream) by a
//! video keyframe (a random-access video PES start); the clean start a keyframe makes is the newest PAT before it.
//!
//! The join point is the newest clean start held in the ring, else the newest PAT start,
//! else the live edge. Two offsets are enough to answer that in O(1) without rescanning
//! the ring:
//!
//! - every PAT older than `pat_before_keyframe` is worse than it, for as long as it is
//!   held, and random-access packets only ever arrive after the PATs already seen;
//! - when `pat_before_keyframe` is evicted, every older PAT is too, and no newer PAT has a
//!   keyframe after it (it would have replaced `pat_before_keyframe`), so `newest_pat` is
//!   the answer if it is still held.
//!
//! Viewers that joined without a clean start wait for one. The clean starts made by the
//! keyframes of the newest chunk are kept, oldest first, in `fresh`: a waiting viewer
//! starts at the first of them at or after its cursor. Every clean start made since such
//! a viewer joined is at or after its cursor (PAT offsets only grow, and its cursor is
//! the newest PAT or the live edge of its join), so one waits no longer than the first
//! keyframe after a PAT at or after its cursor.

use crate::ts::{Packet, PACKET_LEN};

/// Offsets of the sync points that can still be a join point.
#[derive(Debug, Default)]
pub(super) struct SyncPoints {
    /// The newest PAT start.
    newest_pat: Option<u64>,
    /// The newest PAT start with a random-access packet after it.
    pat_before_keyframe: Option<u64>,
    /// The distinct clean starts made by the keyframes of the last observed chunk, in
    /// increasing order (they may lie before that chunk and even before the ring).
    fresh: Vec<u64>,
}

impl SyncPoints {
    /// Notes the PATs and keyframes of aligned `packets`, whose first byte is at stream
    /// offset `offset`, and the clean starts they make.
    pub(super) fn observe(&mut self, packets: &[u8], offset: u64) {
        self.fresh.clear();
        let mut packet_offset = offset;
        for bytes in packets.chunks_exact(PACKET_LEN) {
            if let Some(packet) = Packet::new(bytes) {
                // Keyframe first: a PAT packet that is itself marked random-access is not
                // "followed" by a keyframe.
                if packet.starts_video_keyframe() {
                    if let Some(pat) = self.newest_pat {
                        self.pat_before_keyframe = Some(pat);
                        if self.fresh.last() != Some(&pat) {
                            self.fresh.push(pat);
                        }
                    }
                }
                if packet.starts_pat() {
                    self.newest_pat = Some(packet_offset);
                }
            }
            packet_offset += PACKET_LEN as u64;
        }
    }

    /// Forgets sync points before `ring_start`, which are no longer held.
    pub(super) fn trim(&mut self, ring_start: u64) {
        if self.pat_before_keyframe.is_some_and(|pat| pat < ring_start) {
            self.pat_before_keyframe = None;
        }
        if self.newest_pat.is_some_and(|pat| pat < ring_start) {
            self.newest_pat = None;
        }
    }

    /// Where a viewer joining now starts, given the live edge.
    pub(super) fn join_point(&self, live_offset: u64) -> u64 {
        self.pat_before_keyframe
            .or(self.newest_pat)
            .unwrap_or(live_offset)
    }

    /// Whether the join point is a clean start (a PAT followed by a keyframe).
    pub(super) fn join_point_is_clean(&self) -> bool {
        self.pat_before_keyframe.is_some()
    }

    /// The first clean start made by the last observed chunk at or after `offset`.
    pub(super) fn fresh_clean_start(&self, offset: u64) -> Option<u64> {
        let first = self.fresh.partition_point(|&pat| pat < offset);
        self.fresh.get(first).copied()
    }

    /// The newest PAT start held at or after `offset`.
    pub(super) fn newest_pat_from(&self, offset: u64) -> Option<u64> {
        self.newest_pat.filter(|&pat| pat >= offset)
    }
}
