//! Where a packet sits in an engine's output: every engine plays the same endless
//! stream (see [`acemux_testkit::emulator::MediaLoop`]), so a viewer's bytes can be checked
//! packet by packet against it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use acemux_core::ts::PACKET_LEN;
use acemux_testkit::emulator::MediaLoop;

/// Stream length indexed: over six minutes of the built-in media, more than any scenario
/// runs an engine timeline for.
const INDEXED_SECONDS: u64 = 400;

/// The packets of the first [`INDEXED_SECONDS`] of the engine stream, by content hash.
pub struct MediaIndex {
    media: MediaLoop,
    /// Hash of the packet at each packet position.
    hashes: Vec<u64>,
    /// Positions (packet numbers) of each hash, ascending.
    positions: BTreeMap<u64, Vec<u32>>,
}

impl MediaIndex {
    /// The index of the media simulated engines play ([`MediaLoop::small`]), built once per process.
    pub fn simulated() -> &'static MediaIndex {
        static INDEX: OnceLock<MediaIndex> = OnceLock::new();
        INDEX.get_or_init(|| MediaIndex::new(MediaLoop::small()))
    }

    fn new(media: MediaLoop) -> MediaIndex {
        let packets = media.bitrate_bps() / 8 * INDEXED_SECONDS / PACKET_LEN as u64;
        let mut hashes = Vec::with_capacity(packets as usize);
        let mut positions: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        let chunk_packets = 4096u64;
        let mut at = 0u64;
        while at < packets {
            let count = chunk_packets.min(packets - at);
            let bytes = media.read(at * PACKET_LEN as u64, (count as usize) * PACKET_LEN);
            for packet in bytes.chunks_exact(PACKET_LEN) {
                let hash = packet_hash(packet);
                positions
                    .entry(hash)
                    .or_default()
                    .push(u32::try_from(hashes.len()).expect("index fits u32"));
                hashes.push(hash);
            }
            at += count;
        }
        MediaIndex {
            media,
            hashes,
            positions,
        }
    }

    /// The media indexed.
    pub fn media(&self) -> &MediaLoop {
        &self.media
    }

    /// Packet positions whose packet is `hash`.
    pub fn positions_of(&self, hash: u64) -> &[u32] {
        self.positions.get(&hash).map_or(&[], Vec::as_slice)
    }

    /// Whether an engine playback can start at packet `position`.
    pub fn is_entry_point(&self, position: u32) -> bool {
        let offset = u64::from(position) * PACKET_LEN as u64;
        self.media.entry_point(offset) == offset
    }

    /// Whether the packet at `position` is `hash`.
    pub fn is_at(&self, position: u32, hash: u64) -> bool {
        self.hashes.get(position as usize) == Some(&hash)
    }
}

/// A packet's hash, eight bytes at a time (a multiply-xorshift mix per word, then the
/// tail byte by byte): stable across runs and platforms, and cheap enough to run on
/// every byte every viewer reads.
pub fn packet_hash(packet: &[u8]) -> u64 {
    word_hash(0x243f_6a88_85a3_08d3, packet)
}

/// Folds `bytes` into `state`, eight bytes at a time.
pub fn word_hash(mut state: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let value = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        state = (state ^ value).wrapping_mul(K);
        state ^= state >> 29;
    }
    for &byte in words.remainder() {
        state = (state ^ u64::from(byte)).wrapping_mul(K);
        state ^= state >> 29;
    }
    state
}

/// What a byte stream checked against the engine stream looked like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceCheck {
    /// Packets matched.
    pub packets: u64,
    /// Null (keepalive) packets skipped.
    pub nulls: u64,
    /// Times the stream jumped to another place of the engine stream (at a PAT).
    pub resyncs: u64,
    /// The first problem: bytes not from the engine, a jump into the middle of a
    /// picture, a start that is not an entry point.
    pub violation: Option<String>,
}

/// Follows one byte stream (a TS viewer's body, or one HLS segment) through the engine
/// stream, packet by packet, with every position it could be at.
#[derive(Debug, Default)]
pub struct SliceTracker {
    pending: Vec<u8>,
    /// Positions of the next expected packet; empty before the first packet.
    candidates: Vec<u32>,
    started: bool,
    /// Outcome so far.
    pub check: SliceCheck,
}

/// Candidate positions tracked at most (a packet repeats once per loop).
const MAX_CANDIDATES: usize = 4096;

impl SliceTracker {
    /// Feeds the next bytes.
    pub fn feed(&mut self, index: &MediaIndex, mut bytes: &[u8]) {
        if !self.pending.is_empty() {
            let wanted = (PACKET_LEN - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..wanted]);
            bytes = &bytes[wanted..];
            if self.pending.len() < PACKET_LEN {
                return;
            }
            let packet = std::mem::take(&mut self.pending);
            self.packet(index, &packet);
            self.pending = packet;
            self.pending.clear();
        }
        let mut packets = bytes.chunks_exact(PACKET_LEN);
        for packet in &mut packets {
            self.packet(index, packet);
        }
        self.pending.extend_from_slice(packets.remainder());
    }

    fn packet(&mut self, index: &MediaIndex, packet: &[u8]) {
        if self.check.violation.is_some() {
            return;
        }
        let pid = (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2]);
        if pid == acemux_core::ts::NULL_PID {
            self.check.nulls += 1;
            return;
        }
        let hash = packet_hash(packet);
        let packet_number = self.check.packets;
        self.check.packets += 1;
        // Keep the candidates the packet follows, each moved on by one, in place.
        let followed = self.candidates.len();
        self.candidates
            .retain(|&position| index.is_at(position, hash));
        if !self.candidates.is_empty() {
            for position in &mut self.candidates {
                *position += 1;
            }
            return;
        }
        // A start or a jump: players join at a PAT, and an engine playback starts at
        // an entry point of its stream, so a new run must begin at one of those.
        let landing: Vec<u32> = index
            .positions_of(hash)
            .iter()
            .copied()
            .filter(|&position| pid == 0 || index.is_entry_point(position))
            .take(MAX_CANDIDATES)
            .collect();
        if landing.is_empty() {
            let what = if index.positions_of(hash).is_empty() {
                "is not in the engine's stream"
            } else {
                "jumps into the middle of the engine's stream (not at a PAT or an entry point)"
            };
            self.check.violation = Some(format!(
                "packet {packet_number} (pid {pid}) {what}; it followed {followed} candidate positions"
            ));
            return;
        }
        if self.started {
            self.check.resyncs += 1;
        }
        self.started = true;
        self.candidates = landing.iter().map(|position| position + 1).collect();
    }

    /// Bytes left over that are not a whole packet.
    pub fn partial_bytes(&self) -> usize {
        self.pending.len()
    }
}
