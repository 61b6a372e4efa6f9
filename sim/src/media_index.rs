//! Where a packet sits in an engine's output: every engine plays the same endless
//! stream (see [`acemux_testkit::emulator::MediaLoop`]), so a viewer's bytes can be checked
//! packet by packet against it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use acemux_core::ts::{PACKET_LEN, PAT_PID};
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
    /// The PMT's PID, from the first PAT.
    pmt_pid: Option<u16>,
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
        let pmt_pid = first_pmt_pid(&media.read(0, 64 * PACKET_LEN));
        MediaIndex {
            media,
            hashes,
            positions,
            pmt_pid,
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

    /// Whether `pid` carries tables (PAT, PMT, SI): what a segmenter repeats at the
    /// start of every segment.
    pub fn is_table_pid(&self, pid: u16) -> bool {
        pid == PAT_PID || (0x10..0x20).contains(&pid) || Some(pid) == self.pmt_pid
    }

    /// The PID of the packet at `position`.
    pub fn pid_at(&self, position: u32) -> u16 {
        let packet = self
            .media
            .read(u64::from(position) * PACKET_LEN as u64, PACKET_LEN);
        pid_of(&packet)
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

/// A packet's PID.
pub fn pid_of(packet: &[u8]) -> u16 {
    (u16::from(packet[1] & 0x1f) << 8) | u16::from(packet[2])
}

/// The PMT PID the first PAT in `bytes` names.
fn first_pmt_pid(bytes: &[u8]) -> Option<u16> {
    let pat = bytes
        .chunks_exact(PACKET_LEN)
        .find(|packet| pid_of(packet) == PAT_PID && packet[1] & 0x40 != 0)?;
    let payload = if pat[3] & 0x20 != 0 {
        5 + usize::from(pat[4])
    } else {
        4
    };
    let section = pat.get(payload + 1 + usize::from(*pat.get(payload)?)..)?;
    // table id, length (2), ts id (2), version, section, last section: 8 bytes; then
    // program number (2) and PID (2) per program.
    let entry = section.get(8..12)?;
    Some((u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]))
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
#[derive(Clone, Debug, Default)]
pub struct SliceTracker {
    pending: Vec<u8>,
    /// Where the next packet may be; empty before the first packet.
    candidates: Vec<Candidate>,
    started: bool,
    /// Outcome so far.
    pub check: SliceCheck,
}

/// A place the stream may be at.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Position of the next expected packet.
    next: u32,
    /// Reached by jumping since the stream was last known to be in one run.
    jumped: bool,
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
        let follows = self
            .candidates
            .iter()
            .any(|candidate| index.is_at(candidate.next, hash));
        // A start or a jump: players join at a PAT, and an engine playback starts at
        // an entry point of its stream, so a new run must begin at one of those. A PAT
        // may also begin a new run while the packets still fit the old one (a new
        // playback's tables can equal the old stream's next ones), so at a PAT both
        // are followed until the stream tells them apart.
        let landing: Vec<Candidate> = if !follows || pid == PAT_PID {
            index
                .positions_of(hash)
                .iter()
                .copied()
                .filter(|&position| pid == PAT_PID || index.is_entry_point(position))
                .filter(|&position| {
                    !self
                        .candidates
                        .iter()
                        .any(|candidate| candidate.next == position)
                })
                .take(MAX_CANDIDATES)
                .map(|position| Candidate {
                    next: position + 1,
                    jumped: self.started,
                })
                .collect()
        } else {
            Vec::new()
        };
        if !follows && landing.is_empty() {
            let what = if index.positions_of(hash).is_empty() {
                "is not in the engine's stream"
            } else {
                "jumps into the middle of the engine's stream (not at a PAT or an entry point)"
            };
            let expected: Vec<u32> = self.candidates.iter().take(4).map(|c| c.next).collect();
            self.check.violation = Some(format!(
                "packet {packet_number} (pid {pid}) {what}; it was expected at {expected:?}, it is at {:?}",
                &index.positions_of(hash)[..index.positions_of(hash).len().min(4)],
            ));
            return;
        }
        // The candidates the packet follows move on by one, in place.
        self.candidates
            .retain(|candidate| index.is_at(candidate.next, hash));
        for candidate in &mut self.candidates {
            candidate.next += 1;
        }
        let room = MAX_CANDIDATES.saturating_sub(self.candidates.len());
        self.candidates.extend(landing.into_iter().take(room));
        self.started = true;
        // Once only runs that jumped remain, the stream did jump: count it once.
        if !self.candidates.is_empty() && self.candidates.iter().all(|candidate| candidate.jumped) {
            self.check.resyncs += 1;
            for candidate in &mut self.candidates {
                candidate.jumped = false;
            }
        }
    }

    /// Continues into a stream that a segmenter may start with tables of its own: the
    /// positions it is expected at move past tables, as `bytes` (the next segment)
    /// leave out its leading ones. `false` when `bytes` do not continue this stream
    /// there (a jump or bytes from elsewhere).
    pub fn continues_into(&mut self, index: &MediaIndex, bytes: &[u8]) -> bool {
        let mut skip = 0;
        while let Some(packet) = bytes.get(skip..skip + PACKET_LEN) {
            if !index.is_table_pid(pid_of(packet)) {
                break;
            }
            skip += PACKET_LEN;
        }
        for candidate in &mut self.candidates {
            while index.is_table_pid(index.pid_at(candidate.next)) {
                candidate.next += 1;
            }
        }
        let resyncs = self.check.resyncs;
        self.feed(index, &bytes[skip..]);
        self.check.violation.is_none() && self.check.resyncs == resyncs
    }

    /// Bytes left over that are not a whole packet.
    pub fn partial_bytes(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PACKET_LEN as u64;

    fn packets(from: u64, count: u64) -> bytes::Bytes {
        MediaIndex::simulated()
            .media()
            .read(from * P, (count * P) as usize)
    }

    fn check(chunks: &[bytes::Bytes]) -> SliceCheck {
        let mut tracker = SliceTracker::default();
        for chunk in chunks {
            // Cut unevenly: packets are followed however the bytes arrive.
            for piece in chunk.chunks(1000) {
                tracker.feed(MediaIndex::simulated(), piece);
            }
        }
        tracker.check
    }

    /// The packet position of the `n`th entry point after the start (one every 2 s).
    fn entry(n: u64) -> u64 {
        let media = MediaIndex::simulated().media();
        let mut offset = 0;
        for _ in 0..n {
            offset = media.entry_point(offset + media.bitrate_bps() / 8 * 5 / 2);
        }
        offset / P
    }

    #[test]
    fn a_run_from_an_entry_point_is_followed_to_its_end() {
        let check = check(&[packets(entry(3), 2000)]);
        assert_eq!(check.violation, None);
        assert_eq!((check.packets, check.resyncs), (2000, 0));
    }

    #[test]
    fn a_jump_to_another_entry_point_is_one_resync() {
        let check = check(&[packets(entry(1), 300), packets(entry(7), 300)]);
        assert_eq!(check.violation, None);
        assert_eq!(check.resyncs, 1);
    }

    #[test]
    fn a_new_run_whose_tables_equal_the_old_runs_next_packets_is_one_resync() {
        // The old run stops right before tables equal to those the new run starts
        // with (same content, same continuity counters).
        let index = MediaIndex::simulated();
        let start = entry(150);
        let pat = (start..start + 10)
            .find(|&position| {
                let packet = packets(position, 1);
                (u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2])) == PAT_PID
            })
            .expect("a PAT right at the entry point");
        let twin = index
            .positions_of(packet_hash(&packets(pat, 1)))
            .iter()
            .map(|&position| u64::from(position))
            .find(|&position| {
                position + 200 < start
                    && position > 100 + (pat - start)
                    && (start..=pat).all(|at| {
                        index.is_at(
                            u32::try_from(position - (pat - at)).expect("fits"),
                            packet_hash(&packets(at, 1)),
                        )
                    })
            })
            .expect("the same tables earlier in the stream");
        let old_end = twin - (pat - start);
        let old_start = index.media().entry_point((old_end - 1) * P) / P;
        let check = check(&[packets(old_start, old_end - old_start), packets(start, 300)]);
        assert_eq!(check.violation, None);
        assert_eq!(check.resyncs, 1);
    }

    #[test]
    fn a_jump_into_the_middle_of_a_picture_is_a_violation() {
        let start = entry(2);
        let check = check(&[packets(start, 100), packets(start + 400 + 7, 50)]);
        let violation = check.violation.expect("caught");
        assert!(violation.contains("jumps into the middle"), "{violation}");
    }

    #[test]
    fn bytes_from_elsewhere_are_a_violation() {
        let mut foreign = packets(entry(2), 20).to_vec();
        foreign[PACKET_LEN * 10 + 100] ^= 0xff;
        let check = check(&[foreign.into()]);
        let violation = check.violation.expect("caught");
        assert!(
            violation.contains("not in the engine's stream"),
            "{violation}"
        );
    }
}
