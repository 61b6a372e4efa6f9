//! Tests of the fan-out: behaviour by behaviour in `unit`, random input sequences in
//! `prop`. Both drive the machine through [`Harness`], a fake-clock driver that checks
//! every output against an independent model as it drains it.

mod prop;
mod unit;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::{
    DropReason, Fanout, FanoutConfig, FanoutError, FanoutStats, Input, Output, ViewerId,
    KEEPALIVE_PACKETS,
};
use crate::time::{Duration, Instant};
use crate::ts::{self, Packet, PacketAligner, PACKET_LEN, PAT_PID};

/// PID of the fixture video stream.
const VIDEO_PID: u16 = 0x0100;

/// Builds realistic TS packets with running continuity counters and distinct payloads.
#[derive(Debug, Default)]
pub(super) struct Stream {
    pat_counter: u8,
    video_counter: u8,
    /// Stamped into payloads so that no two packets are alike.
    serial: u32,
}

impl Stream {
    /// A PAT: PID 0, payload unit start, one program pointing at PMT PID 0x1000.
    pub(super) fn pat(&mut self) -> Vec<u8> {
        let mut packet = self.header(PAT_PID, true, &mut 0);
        self.pat_counter = self.pat_counter.wrapping_add(1);
        packet[3] = 0x10 | (self.pat_counter & 0x0F);
        let section = [
            0x00, // pointer field
            0x00, 0xB0, 0x0D, // table id, section length 13
            0x00, 0x01, 0xC1, 0x00, 0x00, // stream id 1, version, section numbers
            0x00, 0x01, 0xF0, 0x00, // program 1 → PMT PID 0x1000
            0x2A, 0xB1, 0x04, 0xB2, // CRC (not checked by anyone here)
        ];
        packet[4..4 + section.len()].copy_from_slice(&section);
        packet[4 + section.len()..].fill(0xFF);
        packet
    }

    /// A video packet that starts a keyframe: adaptation field with the
    /// random_access_indicator set, then a PES start.
    pub(super) fn keyframe(&mut self) -> Vec<u8> {
        let mut counter = self.video_counter;
        let mut packet = self.header(VIDEO_PID, true, &mut counter);
        self.video_counter = counter;
        packet[3] |= 0x20; // adaptation field and payload
        packet[4] = 1; // adaptation field length
        packet[5] = 0x40; // random_access_indicator
        packet[6..10].copy_from_slice(&[0x00, 0x00, 0x01, 0xE0]); // video PES start code
        packet
    }

    /// A video packet in the middle of a frame.
    pub(super) fn frame(&mut self) -> Vec<u8> {
        let mut counter = self.video_counter;
        let packet = self.header(VIDEO_PID, false, &mut counter);
        self.video_counter = counter;
        packet
    }

    /// A PAT, a keyframe and `frames` more video packets.
    pub(super) fn gop(&mut self, frames: usize) -> Vec<u8> {
        let mut bytes = self.pat();
        bytes.extend(self.keyframe());
        for _ in 0..frames {
            bytes.extend(self.frame());
        }
        bytes
    }

    /// `count` plain video packets.
    pub(super) fn frames(&mut self, count: usize) -> Vec<u8> {
        (0..count).flat_map(|_| self.frame()).collect()
    }

    fn header(&mut self, pid: u16, unit_start: bool, counter: &mut u8) -> Vec<u8> {
        let mut packet = vec![0u8; PACKET_LEN];
        packet[0] = ts::SYNC_BYTE;
        packet[1] = (u8::from(unit_start) << 6) | ((pid >> 8) as u8 & 0x1F);
        packet[2] = pid as u8;
        packet[3] = 0x10 | (*counter & 0x0F);
        *counter = counter.wrapping_add(1);
        self.serial += 1;
        for (i, byte) in packet[4..].iter_mut().enumerate() {
            // Payload bytes never equal the sync byte, so garbage tests stay readable.
            *byte = (self.serial as u8).wrapping_add(i as u8) & 0x3F;
        }
        packet
    }
}

/// `s` seconds after the driver started.
pub(super) fn secs(s: u64) -> Instant {
    Instant::from_micros(s * 1_000_000)
}

/// `ms` milliseconds after the driver started.
pub(super) fn ms(ms: u64) -> Instant {
    Instant::from_micros(ms * 1_000)
}

/// What the harness knows about one joined viewer.
#[derive(Clone, Debug)]
pub(super) struct Seen {
    /// Where it joined.
    pub(super) join_offset: u64,
    /// Where its stream starts: its join point, or where its wait for a clean start
    /// ended (while it waits, its join point).
    pub(super) start_offset: u64,
    /// Waiting for a clean start: handed nothing yet.
    pub(super) waiting: bool,
    /// Offset of the next byte it must be handed.
    pub(super) next_offset: u64,
    /// Every delivered byte, in order.
    pub(super) received: Vec<u8>,
    /// Ready for more (nothing in flight).
    pub(super) ready: bool,
    /// When it joined or was last handed something.
    pub(super) last_sent: Instant,
    /// When keepalives arrived.
    pub(super) keepalives: Vec<Instant>,
    /// Size of every delivery.
    pub(super) deliveries: Vec<usize>,
}

/// A fake-clock driver around a [`Fanout`] that checks every output against a model:
/// the aligned upstream bytes (from an independent [`PacketAligner`] fed the same
/// chunks) and the state of each viewer as learned from the outputs.
pub(super) struct Harness {
    pub(super) fanout: Fanout,
    pub(super) config: FanoutConfig,
    pub(super) now: Instant,
    mirror: PacketAligner,
    /// Every aligned byte since offset 0.
    pub(super) aligned: Vec<u8>,
    /// Length of the newest non-empty aligned chunk (the one eviction always keeps).
    newest_chunk_len: usize,
    bytes_in: u64,
    pub(super) viewers: BTreeMap<ViewerId, Seen>,
    /// Viewers that answer every delivery and keepalive with `Ready` at once.
    fast: BTreeSet<ViewerId>,
    /// Drops seen, in order, with their time.
    pub(super) drops: Vec<(ViewerId, DropReason, Instant)>,
    /// Records of viewers that were dropped or left, in order.
    pub(super) gone: Vec<(ViewerId, Seen)>,
}

impl Harness {
    pub(super) fn new(config: FanoutConfig) -> Self {
        Harness {
            fanout: Fanout::new(config.clone()),
            config,
            now: Instant::ZERO,
            mirror: PacketAligner::new(),
            aligned: Vec::new(),
            newest_chunk_len: 0,
            bytes_in: 0,
            viewers: BTreeMap::new(),
            fast: BTreeSet::new(),
            drops: Vec::new(),
            gone: Vec::new(),
        }
    }

    /// Feeds upstream bytes.
    pub(super) fn data(&mut self, bytes: impl Into<Bytes>) {
        self.input(Input::Data(bytes.into()))
            .expect("data is never refused");
    }

    /// Joins `id`; the harness checks the join point against a scan of the ring, and
    /// whether it waits for a clean start against the rule.
    pub(super) fn join(&mut self, id: ViewerId) -> Result<(), FanoutError> {
        self.input(Input::Join(id))
    }

    /// Joins `id` and marks it fast: it reports `Ready` after everything it is handed.
    pub(super) fn join_fast(&mut self, id: ViewerId) {
        self.fast.insert(id);
        self.join(id).expect("room for the viewer");
        self.ready(id).expect("just joined");
    }

    pub(super) fn ready(&mut self, id: ViewerId) -> Result<(), FanoutError> {
        self.input(Input::Ready(id))
    }

    pub(super) fn leave(&mut self, id: ViewerId) -> Result<(), FanoutError> {
        self.input(Input::Leave(id))
    }

    /// Makes `id` fast (or slow) from now on.
    pub(super) fn set_fast(&mut self, id: ViewerId, fast: bool) {
        if fast {
            self.fast.insert(id);
        } else {
            self.fast.remove(&id);
        }
    }

    /// Applies `input`, checking its result against the model, then drains.
    pub(super) fn input(&mut self, input: Input) -> Result<(), FanoutError> {
        let expected = self.expected_result(&input);
        let before = (self.fanout.stats(), self.fanout.poll_timeout());
        let chunk_start = self.aligned.len() as u64;
        if let Input::Data(bytes) = &input {
            self.bytes_in += bytes.len() as u64;
            let aligned = self.mirror.push(bytes.clone());
            if !aligned.is_empty() {
                self.newest_chunk_len = aligned.len();
                self.aligned.extend_from_slice(&aligned);
            }
        }
        if let Input::NewStream = &input {
            self.mirror.new_stream();
        }
        let result = self.fanout.handle_input(self.now, input.clone());
        assert_eq!(result, expected, "result of {input:?}");
        if result.is_err() {
            let after = (self.fanout.stats(), self.fanout.poll_timeout());
            assert_eq!(before, after, "a refused {input:?} changed the fan-out");
        }
        match (&input, &result) {
            (Input::Data(_), Ok(())) => self.end_waits(chunk_start),
            (Input::Join(id), Ok(())) => self.joined(*id),
            (Input::Ready(id), Ok(())) => {
                if let Some(seen) = self.viewers.get_mut(id) {
                    seen.ready = true;
                }
            }
            (Input::Leave(id), Ok(())) => {
                let seen = self
                    .viewers
                    .remove(id)
                    .expect("result checked against model");
                self.gone.push((*id, seen));
            }
            _ => {}
        }
        self.settle();
        result
    }

    /// Moves the clock to `at` without waking the machine.
    pub(super) fn set_now(&mut self, at: Instant) {
        assert!(at >= self.now, "time never goes backwards");
        self.now = at;
    }

    /// Moves the clock by `by` and wakes the machine.
    pub(super) fn advance(&mut self, by: Duration) {
        self.set_now(self.now + by);
        self.wake();
    }

    /// Calls `handle_timeout` now, drains, and checks that nothing is left overdue.
    pub(super) fn wake(&mut self) {
        self.fanout.handle_timeout(self.now);
        self.settle();
        let overdue: Vec<_> = self
            .viewers
            .iter()
            .filter(|(_, seen)| self.deadline(seen) <= self.now)
            .map(|(id, _)| *id)
            .collect();
        assert!(
            overdue.is_empty(),
            "overdue after handle_timeout: {overdue:?}"
        );
    }

    /// Runs timers (quinn-style) until `at`, then sets the clock to `at`.
    pub(super) fn run_until(&mut self, at: Instant) {
        for _ in 0..100_000 {
            match self.fanout.poll_timeout() {
                Some(deadline) if deadline <= at => {
                    self.set_now(deadline.max(self.now));
                    self.wake();
                }
                _ => {
                    self.set_now(at);
                    return;
                }
            }
        }
        panic!("livelock: timers keep firing before {at}");
    }

    pub(super) fn stats(&self) -> FanoutStats {
        self.fanout.stats()
    }

    /// The aligned upstream bytes from `offset` to the live edge.
    pub(super) fn upstream_from(&self, offset: u64) -> &[u8] {
        &self.aligned[offset as usize..]
    }

    pub(super) fn seen(&self, id: ViewerId) -> &Seen {
        self.viewers
            .get(&id)
            .or_else(|| {
                let mut gone = self.gone.iter().rev();
                gone.find(|(gone, _)| *gone == id).map(|(_, seen)| seen)
            })
            .expect("a viewer the harness saw")
    }

    /// The deadline the machine must report for a viewer in this state.
    fn deadline(&self, seen: &Seen) -> Instant {
        if seen.ready {
            seen.last_sent + self.config.keepalive_interval
        } else {
            seen.last_sent + self.config.viewer_stall_timeout
        }
    }

    fn expected_result(&self, input: &Input) -> Result<(), FanoutError> {
        match *input {
            Input::Data(_) | Input::NewStream => Ok(()),
            Input::Join(id) | Input::JoinAwaiting(id) if self.viewers.contains_key(&id) => {
                Err(FanoutError::DuplicateViewer(id))
            }
            Input::Join(_) | Input::JoinAwaiting(_)
                if self.viewers.len() >= self.config.max_viewers =>
            {
                Err(FanoutError::Capacity {
                    limit: self.config.max_viewers,
                })
            }
            Input::Join(_) | Input::JoinAwaiting(_) => Ok(()),
            Input::Ready(id) | Input::Leave(id) if !self.viewers.contains_key(&id) => {
                Err(FanoutError::UnknownViewer(id))
            }
            Input::Ready(_) | Input::Leave(_) => Ok(()),
        }
    }

    fn joined(&mut self, id: ViewerId) {
        let join_offset = self.fanout.viewer_offset(id).expect("just joined");
        let (expected, clean) = self.expected_join_point();
        assert_eq!(join_offset, expected, "join point of {id}");
        let live = self.fanout.stats().live_offset;
        let waiting = !clean && live - join_offset < self.config.max_sync_wait_bytes as u64;
        let seen = Seen {
            join_offset,
            start_offset: join_offset,
            waiting,
            next_offset: join_offset,
            received: Vec::new(),
            ready: false,
            last_sent: self.now,
            keepalives: Vec::new(),
            deliveries: Vec::new(),
        };
        self.viewers.insert(id, seen);
    }

    /// The join point by definition, from a scan of the held packets, and whether it is
    /// a clean start (a PAT followed by a keyframe).
    fn expected_join_point(&self) -> (u64, bool) {
        let stats = self.fanout.stats();
        let start = stats.ring_start_offset as usize;
        let held = &self.aligned[start..];
        let mut newest_pat = None;
        let mut pat_before_keyframe = None;
        for (i, bytes) in held.chunks_exact(PACKET_LEN).enumerate() {
            let packet = Packet::new(bytes).expect("aligned bytes are packets");
            let offset = (start + i * PACKET_LEN) as u64;
            if packet.starts_video_keyframe() && newest_pat.is_some() {
                pat_before_keyframe = newest_pat;
            }
            if packet.starts_pat() {
                newest_pat = Some(offset);
            }
        }
        match (pat_before_keyframe, newest_pat) {
            (Some(pat), _) => (pat, true),
            (None, Some(pat)) => (pat, false),
            (None, None) => (stats.live_offset, false),
        }
    }

    /// Applies the rule for waiting viewers after the aligned chunk from `chunk_start` to
    /// the live edge arrived (the ring already trimmed): the wait ends at the first clean
    /// start made by a keyframe of the chunk (the newest PAT before it) that is held and
    /// at or after the cursor; else, once `max_sync_wait_bytes` arrived past the cursor
    /// or the ring moved past it, at the newest held PAT at or after the cursor, else at
    /// the cursor or the ring start, whichever is later.
    fn end_waits(&mut self, chunk_start: u64) {
        if self.viewers.values().all(|seen| !seen.waiting) {
            return;
        }
        let stats = self.fanout.stats();
        let (ring_start, live) = (stats.ring_start_offset, stats.live_offset);
        let packet_at = |offset: u64| {
            let at = offset as usize;
            Packet::new(&self.aligned[at..at + PACKET_LEN]).expect("aligned bytes are packets")
        };
        let newest_pat_in = |from: u64, to: u64| {
            let mut offset = to;
            while offset >= from + PACKET_LEN as u64 {
                offset -= PACKET_LEN as u64;
                if packet_at(offset).starts_pat() {
                    return Some(offset);
                }
            }
            None
        };
        let clean_starts: Vec<u64> = (chunk_start..live)
            .step_by(PACKET_LEN)
            .filter(|&offset| packet_at(offset).starts_video_keyframe())
            .filter_map(|keyframe| newest_pat_in(0, keyframe))
            .collect();
        let max_wait = self.config.max_sync_wait_bytes as u64;
        for seen in self.viewers.values_mut().filter(|seen| seen.waiting) {
            let cursor = seen.next_offset;
            let from = cursor.max(ring_start);
            let clean = clean_starts.iter().copied().find(|&pat| pat >= from);
            let start = clean.or_else(|| {
                let over = cursor < ring_start || live - cursor >= max_wait;
                over.then(|| newest_pat_in(from, live).unwrap_or(from))
            });
            if let Some(start) = start {
                assert!(start >= cursor, "a wait ended before the cursor");
                seen.waiting = false;
                seen.start_offset = start;
                seen.next_offset = start;
            }
        }
    }

    /// Whether a PAT at or after `offset` is followed by a keyframe in the ring.
    fn clean_start_held_from(&self, offset: u64) -> bool {
        let mut pat_seen = false;
        for bytes in self.aligned[offset as usize..].chunks_exact(PACKET_LEN) {
            let packet = Packet::new(bytes).expect("aligned bytes are packets");
            if packet.starts_video_keyframe() && pat_seen {
                return true;
            }
            pat_seen |= packet.starts_pat();
        }
        false
    }

    /// Drains every output, checking each, answering for fast viewers; then checks the
    /// machine's state against the model.
    fn settle(&mut self) {
        for _ in 0..1_000_000 {
            let Some(output) = self.fanout.poll_output() else {
                self.check_state();
                return;
            };
            if let Some(id) = self.check_output(output) {
                if self.fast.contains(&id) {
                    let result = self.fanout.handle_input(self.now, Input::Ready(id));
                    assert_eq!(result, Ok(()), "fast viewer {id} reports Ready");
                    self.viewers.get_mut(&id).expect("just handed data").ready = true;
                }
            }
        }
        panic!("livelock: outputs never stop");
    }

    /// Checks one output against the model and applies it; returns the viewer that was
    /// put in flight, if any.
    fn check_output(&mut self, output: Output) -> Option<ViewerId> {
        let now = self.now;
        let stats = self.fanout.stats();
        let config = self.config.clone();
        match output {
            Output::Deliver {
                viewer,
                offset,
                chunks,
            } => {
                let seen = self.viewers.get_mut(&viewer);
                let seen = seen.unwrap_or_else(|| panic!("deliver to unknown viewer {viewer}"));
                assert!(seen.ready, "deliver to {viewer} while in flight");
                assert!(
                    !seen.waiting,
                    "deliver to {viewer} while it waits for a start"
                );
                assert_eq!(offset, seen.next_offset, "offset of delivery to {viewer}");
                assert!(chunks.iter().all(|c| !c.is_empty()), "empty chunk");
                let bytes: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
                assert!(!bytes.is_empty(), "empty delivery to {viewer}");
                assert!(bytes.len() <= config.max_delivery_bytes.max(1), "too big");
                if config.max_delivery_bytes >= PACKET_LEN {
                    assert_eq!(offset as usize % PACKET_LEN, 0, "delivery mid-packet");
                    assert_eq!(bytes.len() % PACKET_LEN, 0, "delivery of partial packet");
                }
                let end = offset as usize + bytes.len();
                assert!(end <= self.aligned.len(), "delivery beyond the live edge");
                assert!(
                    bytes == self.aligned[offset as usize..end],
                    "delivery to {viewer} at {offset} differs from upstream"
                );
                seen.received.extend_from_slice(&bytes);
                seen.deliveries.push(bytes.len());
                seen.next_offset = end as u64;
                seen.ready = false;
                seen.last_sent = now;
                Some(viewer)
            }
            Output::Keepalive { viewer, chunk } => {
                let keepalive = config.keepalive_interval;
                let seen = self.viewers.get_mut(&viewer);
                let seen = seen.unwrap_or_else(|| panic!("keepalive to unknown viewer {viewer}"));
                assert!(seen.ready, "keepalive to {viewer} while in flight");
                assert!(seen.last_sent + keepalive <= now, "early keepalive");
                if !seen.waiting {
                    assert_eq!(
                        seen.next_offset, stats.live_offset,
                        "keepalive while behind"
                    );
                }
                assert_eq!(chunk, ts::null_packets(KEEPALIVE_PACKETS));
                seen.keepalives.push(now);
                seen.ready = false;
                seen.last_sent = now;
                Some(viewer)
            }
            Output::Drop { viewer, reason } => {
                let seen = self.viewers.remove(&viewer);
                let seen = seen.unwrap_or_else(|| panic!("drop of unknown viewer {viewer}"));
                match reason {
                    DropReason::FellBehind => {
                        assert!(!seen.waiting, "{viewer} dropped as behind while waiting");
                        assert!(
                            seen.next_offset < stats.ring_start_offset,
                            "{viewer} dropped as behind at {} with the ring at {}",
                            seen.next_offset,
                            stats.ring_start_offset
                        );
                    }
                    DropReason::Stalled => {
                        assert!(!seen.ready, "{viewer} dropped as stalled while ready");
                        let deadline = seen.last_sent + config.viewer_stall_timeout;
                        assert!(deadline <= now, "{viewer} dropped as stalled early");
                    }
                }
                self.drops.push((viewer, reason, now));
                self.gone.push((viewer, seen));
                None
            }
        }
    }

    /// Invariants that hold whenever the outputs are drained.
    fn check_state(&self) {
        let stats = self.fanout.stats();
        assert_eq!(stats.bytes_in, self.bytes_in);
        assert_eq!(stats.live_offset, self.aligned.len() as u64);
        assert_eq!(stats.discarded_bytes, self.mirror.discarded_bytes());
        assert_eq!(
            stats.ring_start_offset + stats.ring_bytes as u64,
            stats.live_offset
        );
        assert!(
            stats.ring_bytes <= self.config.ring_capacity_bytes
                || stats.ring_bytes == self.newest_chunk_len,
            "ring holds {} bytes, capacity {}",
            stats.ring_bytes,
            self.config.ring_capacity_bytes
        );
        assert_eq!(stats.viewers, self.viewers.len());
        assert_eq!(self.fanout.viewer_count(), self.viewers.len());
        let dropped = |reason| self.drops.iter().filter(|d| d.1 == reason).count() as u64;
        assert_eq!(stats.dropped_behind, dropped(DropReason::FellBehind));
        assert_eq!(stats.dropped_stalled, dropped(DropReason::Stalled));
        for (&id, seen) in &self.viewers {
            assert!(self.fanout.has_viewer(id));
            assert_eq!(self.fanout.viewer_offset(id), Some(seen.next_offset));
            assert!(
                seen.next_offset >= stats.ring_start_offset,
                "{id} outside ring"
            );
            assert_eq!(self.fanout.viewer_waiting(id), seen.waiting, "{id} waiting");
            if seen.waiting {
                // Held back only while the rule allows: no clean start at or after its
                // cursor is held, and fewer than `max_sync_wait_bytes` arrived past it.
                assert!(seen.received.is_empty(), "{id} waits after media");
                assert_eq!(
                    seen.next_offset, seen.join_offset,
                    "{id} moved while waiting"
                );
                assert!(
                    !self.clean_start_held_from(seen.next_offset),
                    "{id} waits with a clean start held after its cursor"
                );
                assert!(
                    stats.live_offset - seen.next_offset < self.config.max_sync_wait_bytes as u64,
                    "{id} waits past max_sync_wait_bytes"
                );
            } else if seen.ready {
                assert_eq!(
                    seen.next_offset, stats.live_offset,
                    "{id} ready but held back"
                );
            }
            assert!(seen.start_offset >= seen.join_offset, "{id} started early");
            assert_eq!(
                seen.next_offset - seen.start_offset,
                seen.received.len() as u64,
                "{id} did not receive a contiguous stream from its start"
            );
        }
        let expected = self.viewers.values().map(|seen| self.deadline(seen)).min();
        assert_eq!(self.fanout.poll_timeout(), expected, "poll_timeout");
    }
}
