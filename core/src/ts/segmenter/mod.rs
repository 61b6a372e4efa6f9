//! Cutting a live transport stream into HLS segments, so that one engine session's TS
//! serves HLS players too.
//!
//! A [`Segmenter`] is fed the bytes of a channel's playback as they arrive
//! ([`Segmenter::push`]) and puts out [`CutSegment`]s:
//!
//! - **At random-access points.** A segment starts at a video packet whose adaptation
//!   field sets the random-access indicator, that starts a PES of a video stream, and
//!   whose first picture is an IDR (H.264) or IRAP (H.265) picture when the slice header
//!   is in that packet (a packet of parameter sets and SEI alone leaves the flag
//!   trusted; a dependent picture refuses it). The video stream and its codec come from
//!   the PMT. A video PES whose IDR/IRAP slice starts in its first packet is one too,
//!   flag or not (some muxers never set it).
//! - **Close to the target duration.** A segment is cut at the first random-access
//!   point from which the next one (a GOP later, as last measured) would overshoot the
//!   target by more than this one falls short of it; at the latest at the first one
//!   past the target.
//! - **Never longer than the bound.** Without a random-access point, a segment is cut
//!   at the last frame within [`SegmenterConfig::max_duration`], measured on the
//!   stream's timestamps (DTS where given, else PTS) of the video stream (else of the
//!   first stream carrying them). A stream without timestamps is cut by bytes: the
//!   bound × the byte rate observed since its first byte; and no segment grows past
//!   [`SegmenterConfig::max_bytes`].
//! - **Durations from the stream's timestamps**, not from wall time: the difference of
//!   the timestamps at a segment's start and at the next one's (at a flush, the last
//!   frame's plus one frame step). Byte-cut segments last their bytes at the observed
//!   rate.
//! - **PAT and PMT first.** Every segment starts with copies of the latest PAT and PMT
//!   packets (once seen), so that a player can start with any segment; every input
//!   packet follows, in order, in exactly one segment — except those before the first
//!   random-access point of a playback (its start, and each new playback), which no
//!   player could decode: they are dropped when a random-access point comes within the
//!   bound ([`SegmenterStats::skipped_packets`]).
//! - **Discontinuities.** A timestamp jump (backwards by more than
//!   [`SegmenterConfig::max_backward`], or forwards by more than
//!   [`SegmenterConfig::max_forward`]) cuts at once and marks the next segment
//!   `discontinuity`, as does [`Segmenter::discontinuity`] (a new playback: a reconnect
//!   or another engine session). Continuity-counter errors, routine in P2P streams,
//!   change nothing.
//!
//! ```
//! use acemux_core::ts::segmenter::{Segmenter, SegmenterConfig};
//! use acemux_core::Instant;
//! use bytes::Bytes;
//!
//! let mut segmenter = Segmenter::new(SegmenterConfig::default());
//! segmenter.push(Instant::ZERO, Bytes::from_static(&[0x47; 0]));
//! assert!(segmenter.poll_segment().is_none());
//! ```

mod psi;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::ops::Range;

use bytes::Bytes;

pub use psi::Codec;
use psi::{Picture, Tables};

use super::restamp::{timestamps, TIMESTAMP_MODULUS};
use super::{Packet, PacketAligner, PACKET_LEN};
use crate::hls::SegmentBody;
use crate::time::{Duration, Instant};

/// How a [`Segmenter`] cuts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// The duration segments aim at (`--hls-segment-target`).
    pub target_duration: Duration,
    /// The longest a segment lasts, random-access point or not (at least the target).
    pub max_duration: Duration,
    /// The most bytes a segment holds, whatever its duration.
    pub max_bytes: usize,
    /// A timestamp step backwards by more than this is a discontinuity (B-frames move
    /// presentation timestamps back by a few frames; decode timestamps never).
    pub max_backward: Duration,
    /// A timestamp step forwards by more than this (or than `max_duration`) is a
    /// discontinuity.
    pub max_forward: Duration,
}

impl SegmenterConfig {
    /// Cuts aiming at `target`, never longer than three targets.
    pub fn with_target(target: Duration) -> Self {
        SegmenterConfig {
            target_duration: target,
            max_duration: target * 3,
            ..SegmenterConfig::default()
        }
    }
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        SegmenterConfig {
            target_duration: Duration::from_secs(2),
            max_duration: Duration::from_secs(6),
            max_bytes: 32 * 1024 * 1024,
            max_backward: Duration::from_secs(1),
            max_forward: Duration::from_secs(10),
        }
    }
}

/// One segment cut from the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutSegment {
    /// Its bytes: the inserted PAT and PMT packets (one part shared by the segments
    /// cut while the tables stay the same), then its input packets as slices of the
    /// aligned input chunks (one part per run of consecutive packets of a chunk; no
    /// copy).
    pub body: SegmentBody,
    /// Its duration in µs (at least 1).
    pub duration_us: u64,
    /// Whether media before it is missing or from another session or timeline
    /// (`#EXT-X-DISCONTINUITY`).
    pub discontinuity: bool,
    /// Whether its first input packet is a random-access point.
    pub random_access: bool,
    /// How many PSI packets were inserted at its start.
    pub inserted_packets: usize,
}

/// Why a segment ended (for tests and statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CutReason {
    RandomAccess,
    Bound,
    Jump,
    Flush,
}

/// Counters of a [`Segmenter`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmenterStats {
    /// Segments cut.
    pub segments: u64,
    /// Of which cut at a random-access point.
    pub at_random_access: u64,
    /// Of which cut at the duration or byte bound, without one.
    pub at_bound: u64,
    /// Timestamp jumps (each a discontinuity).
    pub jumps: u64,
    /// Flagged random-access points whose picture was not an IDR/IRAP one.
    pub refused_random_access: u64,
    /// IDR/IRAP pictures taken as random-access points without the flag.
    pub unflagged_random_access: u64,
    /// Packets before the first random-access point of a playback, dropped (when one
    /// came within the bound).
    pub skipped_packets: u64,
    /// Bytes that were not TS packets, skipped.
    pub discarded_bytes: u64,
}

/// The segment being filled.
#[derive(Debug, Default)]
struct Current {
    /// Its parts so far, without `run`.
    body: SegmentBody,
    /// Its newest packets: a range of the chunk being pushed, not yet sliced off.
    run: Option<Range<usize>>,
    /// Its bytes, `run` included.
    len: usize,
    /// Input packets in it.
    packets: usize,
    inserted: usize,
    random_access: bool,
    discontinuity: bool,
    /// Clock timestamp of its start, and of its last frame.
    start_ts: Option<u64>,
    last_ts: Option<u64>,
}

/// Cuts a live TS into HLS segments; see the [module docs](self).
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    aligner: PacketAligner,
    tables: Tables,
    current: Current,
    /// The PID whose timestamps measure durations, and how good a clock it is (2: the
    /// declared video stream, 1: a video PES, 0: any PES).
    clock: Option<(u16, u8)>,
    /// Its last timestamp (across segments), and the step before it.
    last_ts: Option<u64>,
    step: Option<u64>,
    /// Its timestamp at the last random-access point, and the interval before it.
    last_random_access: Option<u64>,
    gop: Option<u64>,
    /// The next segment starts after a discontinuity.
    pending_discontinuity: bool,
    /// No segment was cut since the start or the last new playback: what comes before
    /// the first random-access point is dropped (a player could not decode it).
    leading: bool,
    /// The byte rate's reference: the first byte's arrival, and bytes since.
    first_byte_at: Option<Instant>,
    bytes_seen: u64,
    /// The aligned chunk being pushed, whose packets the segments slice.
    input: Bytes,
    out: VecDeque<CutSegment>,
    stats: SegmenterStats,
}

impl Segmenter {
    /// A segmenter at the start of a stream.
    pub fn new(config: SegmenterConfig) -> Self {
        Segmenter {
            config,
            aligner: PacketAligner::new(),
            tables: Tables::default(),
            current: Current::default(),
            clock: None,
            last_ts: None,
            step: None,
            last_random_access: None,
            gop: None,
            pending_discontinuity: false,
            leading: true,
            first_byte_at: None,
            bytes_seen: 0,
            input: Bytes::new(),
            out: VecDeque::new(),
            stats: SegmenterStats::default(),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> SegmenterStats {
        SegmenterStats {
            discarded_bytes: self.aligner.discarded_bytes(),
            ..self.stats.clone()
        }
    }

    /// Bytes of the segment being filled.
    pub fn pending_bytes(&self) -> usize {
        self.current.len
    }

    /// Input packets of the segment being filled.
    pub fn pending_packets(&self) -> usize {
        self.current.packets
    }

    /// The video stream the PMT declares, once seen.
    pub fn video(&self) -> Option<(u16, Codec)> {
        self.tables.video()
    }

    /// Feeds bytes of the stream that arrived at `now` (any chunking; bytes that are
    /// not packets are skipped and counted).
    ///
    /// Segments share the memory of what they are fed: a chunk of whole, aligned
    /// packets (such as what a [`PacketAligner`] puts out, or a fan-out ring holds) is
    /// sliced, not copied; other chunks are aligned first, which copies them once.
    pub fn push(&mut self, now: Instant, bytes: Bytes) {
        let aligned = self.aligner.push(bytes);
        if aligned.is_empty() {
            return;
        }
        self.first_byte_at.get_or_insert(now);
        self.input = aligned;
        let input = self.input.clone();
        for (index, chunk) in input.chunks_exact(PACKET_LEN).enumerate() {
            if let Some(packet) = Packet::new(chunk) {
                self.packet(now, packet, index * PACKET_LEN);
            }
        }
        // The next chunk is another allocation: what this one brought is sliced off.
        self.current.close_run(&self.input);
        self.input = Bytes::new();
        self.bytes_seen += input.len() as u64;
    }

    /// What follows comes from a new playback (a reconnect, another engine session):
    /// the segment being filled is cut, and the next one marked `discontinuity`. The
    /// timestamps start afresh. Nothing happens before any media.
    pub fn discontinuity(&mut self, now: Instant) {
        if self.current.packets > 0 {
            self.cut(now, None, CutReason::Flush);
        }
        if self.stats.segments > 0 || self.current.packets > 0 {
            self.pending_discontinuity = true;
        }
        self.leading = true;
        // A partial packet of the old playback is not the new one's.
        self.aligner.new_stream();
        self.last_ts = None;
        self.step = None;
        self.last_random_access = None;
    }

    /// The next segment cut, oldest first.
    pub fn poll_segment(&mut self) -> Option<CutSegment> {
        self.out.pop_front()
    }

    /// `packet` starts at `at` in the chunk being pushed.
    fn packet(&mut self, now: Instant, packet: Packet<'_>, at: usize) {
        self.tables.observe(packet);
        let video = self.tables.video();
        let pid = packet.pid();
        let stamps = if packet.payload_unit_start() {
            timestamps(packet.bytes())
        } else {
            Default::default()
        };
        let ts = stamps.dts.or(stamps.pts);
        let pes = packet
            .payload_unit_start()
            .then(|| psi::pes_data(packet.payload()))
            .flatten();
        let is_video_pes = pes.is_some_and(|(id, _)| (0xE0..=0xEF).contains(&id));
        // The clock: the declared video stream, else the first video PES with
        // timestamps, else the first stream with timestamps; a better one replaces it.
        let candidate = match video {
            Some((video_pid, _)) => Some((video_pid, 2)),
            None if ts.is_some() => Some((pid, u8::from(is_video_pes))),
            None => None,
        };
        if let Some((candidate, rank)) = candidate {
            match self.clock {
                Some((clock, best)) if rank > best && clock == candidate => {
                    self.clock = Some((clock, rank));
                }
                Some((_, best)) if rank <= best => {}
                _ => {
                    self.clock = Some((candidate, rank));
                    self.last_ts = None;
                    self.step = None;
                    self.last_random_access = None;
                    self.current.start_ts = None;
                    self.current.last_ts = None;
                }
            }
        }
        let clock_ts = ts.filter(|_| self.clock.is_some_and(|(clock, _)| clock == pid));
        let random_access = self.random_access(packet, video, pes);
        if random_access && std::mem::take(&mut self.leading) && self.current.packets > 0 {
            // The stream's start up to its first random-access point: undecodable.
            let dropped = std::mem::take(&mut self.current);
            self.stats.skipped_packets += dropped.packets as u64;
            self.pending_discontinuity |= dropped.discontinuity;
        }

        if let Some(ts) = clock_ts {
            if let Some(last) = self.last_ts {
                let delta = signed_delta(last, ts);
                let backward = ticks(self.config.max_backward);
                let forward = ticks(self.config.max_forward.min(self.config.max_duration));
                // A step that would stretch the segment past the bound is a gap too.
                let max = ticks(self.config.max_duration.max(self.config.target_duration));
                let past_bound = self.current.start_ts.is_some_and(|start| {
                    self.current.packets > 0 && signed_delta(start, ts) > max as i64
                });
                if delta < -(backward as i64) || delta > forward as i64 || past_bound {
                    self.stats.jumps += 1;
                    if self.current.packets > 0 {
                        self.cut(now, None, CutReason::Jump);
                    }
                    self.pending_discontinuity |= self.stats.segments > 0;
                    self.last_random_access = None;
                    self.step = None;
                } else if delta > 0 {
                    self.step = Some(delta as u64);
                }
            }
        }

        if self.current.packets > 0 {
            if let Some(reason) = self.cut_before(now, clock_ts, random_access) {
                self.cut(now, clock_ts, reason);
            }
        }
        if let (true, Some(ts)) = (random_access, clock_ts) {
            if let Some(previous) = self.last_random_access {
                let interval = forward(previous, ts);
                if interval > 0 && interval <= ticks(self.config.max_duration) * 4 {
                    self.gop = Some(interval);
                }
            }
            self.last_random_access = Some(ts);
        }
        if let Some(ts) = clock_ts {
            if self
                .current
                .last_ts
                .is_some_and(|last| signed_delta(last, ts) < 0)
            {
                // Reordered presentation times: keep the latest.
            } else {
                self.current.last_ts = Some(ts);
            }
            self.last_ts = Some(ts);
        }
        self.append(at, random_access, clock_ts);
    }

    /// Whether `packet` is a random-access point of the video stream.
    fn random_access(
        &mut self,
        packet: Packet<'_>,
        video: Option<(u16, Codec)>,
        pes: Option<(u8, &[u8])>,
    ) -> bool {
        if !packet.payload_unit_start() {
            return false;
        }
        let Some((stream_id, data)) = pes else {
            return false;
        };
        if !(0xE0..=0xEF).contains(&stream_id) {
            return false;
        }
        let codec = match video {
            Some((pid, codec)) if pid == packet.pid() => codec,
            Some(_) => return false,
            None => Codec::Other,
        };
        let picture = psi::first_picture(codec, data);
        if !packet.random_access() {
            // A muxer that never sets the flag: an IDR/IRAP picture whose slice starts
            // in this packet is a random-access point all the same.
            let idr = picture == Picture::RandomAccess;
            self.stats.unflagged_random_access += u64::from(idr);
            return idr;
        }
        match picture {
            Picture::RandomAccess | Picture::Unknown => true,
            Picture::Dependent => {
                self.stats.refused_random_access += 1;
                false
            }
        }
    }

    /// Whether the segment being filled ends before this packet.
    fn cut_before(
        &self,
        now: Instant,
        clock_ts: Option<u64>,
        random_access: bool,
    ) -> Option<CutReason> {
        if self.current.len + PACKET_LEN > self.config.max_bytes {
            return Some(CutReason::Bound);
        }
        match (self.current.start_ts, clock_ts) {
            (Some(start), Some(ts)) => {
                let elapsed = forward(start, ts);
                let target = ticks(self.config.target_duration);
                if random_access && elapsed > 0 {
                    // Cut here unless the next point (a GOP on) is nearer the target.
                    let half_gop = self.gop.map_or(0, |gop| gop / 2);
                    if elapsed >= target || (elapsed + half_gop >= target && half_gop > 0) {
                        return Some(CutReason::RandomAccess);
                    }
                }
                let step = self.step.unwrap_or(0);
                let max = ticks(self.config.max_duration).max(target);
                (elapsed + step > max && elapsed > 0).then_some(CutReason::Bound)
            }
            (None, _) if self.clock.is_none() => {
                let rate = self.byte_rate(now)?;
                let bound = rate * self.config.max_duration.as_secs_f64();
                ((self.current.len + PACKET_LEN) as f64 > bound.max(PACKET_LEN as f64))
                    .then_some(CutReason::Bound)
            }
            _ => None,
        }
    }

    /// Bytes per second since the first byte, once a second has passed.
    fn byte_rate(&self, now: Instant) -> Option<f64> {
        let elapsed = now.saturating_duration_since(self.first_byte_at?);
        (elapsed >= Duration::from_secs(1) && self.bytes_seen > 0)
            .then(|| self.bytes_seen as f64 / elapsed.as_secs_f64())
    }

    /// Adds the packet at `at` in the chunk being pushed to the segment being filled.
    fn append(&mut self, at: usize, random_access: bool, clock_ts: Option<u64>) {
        let current = &mut self.current;
        if current.packets == 0 {
            if let Some(psi) = self.tables.packets() {
                current.inserted = psi.len() / PACKET_LEN;
                current.len += psi.len();
                current.body.push(psi);
            }
            current.random_access = random_access;
            current.discontinuity = std::mem::take(&mut self.pending_discontinuity);
        }
        if current.start_ts.is_none() {
            current.start_ts = clock_ts;
        }
        // Consecutive packets of a chunk make one part.
        match &mut current.run {
            Some(run) if run.end == at => run.end = at + PACKET_LEN,
            _ => {
                current.close_run(&self.input);
                current.run = Some(at..at + PACKET_LEN);
            }
        }
        current.len += PACKET_LEN;
        current.packets += 1;
    }

    /// Ends the segment being filled; `end_ts` is the clock timestamp where the next
    /// one starts, if known.
    fn cut(&mut self, now: Instant, end_ts: Option<u64>, reason: CutReason) {
        self.leading = false;
        let mut current = std::mem::take(&mut self.current);
        current.close_run(&self.input);
        let duration_us = match (current.start_ts, end_ts, current.last_ts) {
            (Some(start), Some(end), _) => ticks_to_us(forward(start, end)),
            (Some(start), None, Some(last)) => {
                let span = forward(start, last);
                ticks_to_us(span + self.step.unwrap_or(0))
            }
            _ => match self.byte_rate(now) {
                Some(rate) => (current.len as f64 / rate * 1e6) as u64,
                None => u64::try_from(self.config.target_duration.as_micros()).unwrap_or(u64::MAX),
            },
        };
        self.stats.segments += 1;
        match reason {
            CutReason::RandomAccess => self.stats.at_random_access += 1,
            CutReason::Bound => self.stats.at_bound += 1,
            CutReason::Jump | CutReason::Flush => {}
        }
        self.out.push_back(CutSegment {
            body: current.body,
            duration_us: duration_us.max(1),
            discontinuity: current.discontinuity,
            random_access: current.random_access,
            inserted_packets: current.inserted,
        });
    }
}

impl Current {
    /// Slices the run of packets not yet in `body` off `input`, the chunk it is in.
    fn close_run(&mut self, input: &Bytes) {
        if let Some(run) = self.run.take() {
            self.body.push(input.slice(run));
        }
    }
}

/// `to − from` on the 33-bit timestamp circle, in (−2³², 2³²].
fn signed_delta(from: u64, to: u64) -> i64 {
    let forward = to.wrapping_sub(from) % TIMESTAMP_MODULUS;
    if forward > TIMESTAMP_MODULUS / 2 {
        forward as i64 - TIMESTAMP_MODULUS as i64
    } else {
        forward as i64
    }
}

/// How far `to` is after `from`: 0 when it is before.
fn forward(from: u64, to: u64) -> u64 {
    u64::try_from(signed_delta(from, to)).unwrap_or(0)
}

/// A duration in 90 kHz ticks.
fn ticks(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros() * 9 / 100).unwrap_or(u64::MAX / 2)
}

fn ticks_to_us(ticks: u64) -> u64 {
    ticks.saturating_mul(100) / 9
}
