//! MPEG transport stream basics: packet views, alignment of arbitrary byte chunks
//! into whole packets, and null packets for keepalive.

pub mod restamp;
pub mod segmenter;

use bytes::{Bytes, BytesMut};

/// Bytes in one transport stream packet.
pub const PACKET_LEN: usize = 188;
/// The first byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;
/// The PID of null (stuffing) packets, which players ignore.
pub const NULL_PID: u16 = 0x1FFF;
/// The PID of the program association table.
pub const PAT_PID: u16 = 0x0000;

/// A read-only view of one 188-byte packet.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a>(&'a [u8; PACKET_LEN]);

impl<'a> Packet<'a> {
    /// Views `bytes` as a packet when it is 188 bytes starting with the sync byte.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        let packet: &[u8; PACKET_LEN] = bytes.try_into().ok()?;
        (packet[0] == SYNC_BYTE).then_some(Packet(packet))
    }

    /// The packet identifier.
    pub fn pid(self) -> u16 {
        (u16::from(self.0[1] & 0x1F) << 8) | u16::from(self.0[2])
    }

    /// Whether a PES packet or section starts in this packet.
    pub fn payload_unit_start(self) -> bool {
        self.0[1] & 0x40 != 0
    }

    /// The 4-bit continuity counter.
    pub fn continuity_counter(self) -> u8 {
        self.0[3] & 0x0F
    }

    /// Whether an adaptation field is present.
    pub fn has_adaptation_field(self) -> bool {
        self.0[3] & 0x20 != 0
    }

    /// Whether the adaptation field marks a random access point (typically a keyframe).
    pub fn random_access(self) -> bool {
        self.has_adaptation_field() && self.0[4] > 0 && self.0[5] & 0x40 != 0
    }

    /// The payload (after the header and any adaptation field); empty when absent or
    /// when the adaptation field length is out of range.
    pub fn payload(self) -> &'a [u8] {
        let has_payload = self.0[3] & 0x10 != 0;
        if !has_payload {
            return &[];
        }
        let start = if self.has_adaptation_field() {
            5 + usize::from(self.0[4])
        } else {
            4
        };
        self.0.get(start..).unwrap_or(&[])
    }

    /// Whether this packet starts a video keyframe: flagged as a random access point and
    /// starting a PES packet of a video stream (stream id `0xE0..=0xEF`). Audio frames
    /// are often flagged random-access too; a decoder can only start at a video one.
    pub fn starts_video_keyframe(self) -> bool {
        if !(self.random_access() && self.payload_unit_start()) {
            return false;
        }
        matches!(self.payload(), [0x00, 0x00, 0x01, stream_id, ..] if (0xE0..=0xEF).contains(stream_id))
    }

    /// Whether this packet starts a program association table.
    pub fn starts_pat(self) -> bool {
        self.pid() == PAT_PID && self.payload_unit_start()
    }

    /// The raw bytes.
    pub fn bytes(self) -> &'a [u8; PACKET_LEN] {
        self.0
    }
}

/// Iterates the packets of packet-aligned `bytes` (a trailing partial packet is skipped).
pub fn packets(bytes: &[u8]) -> impl Iterator<Item = Packet<'_>> {
    bytes.chunks_exact(PACKET_LEN).filter_map(Packet::new)
}

/// `count` null packets, for keeping a connection alive without media.
pub fn null_packets(count: usize) -> Bytes {
    let mut packet = [0xFFu8; PACKET_LEN];
    packet[..4].copy_from_slice(&[SYNC_BYTE, 0x1F, 0xFF, 0x10]);
    let mut bytes = BytesMut::with_capacity(count * PACKET_LEN);
    for _ in 0..count {
        bytes.extend_from_slice(&packet);
    }
    bytes.freeze()
}

/// Turns arbitrary chunks of a byte stream into whole, sync-checked packets.
///
/// The stream is taken to start on a packet boundary. While in sync, every whole packet
/// that starts with the sync byte is put out as soon as it is complete. A packet
/// boundary without the sync byte loses sync: bytes are then skipped, and counted,
/// until a sync byte is confirmed by another one a packet later. So which bytes make
/// packets depends only on the stream, never on how it was cut into chunks.
#[derive(Debug)]
pub struct PacketAligner {
    pending: BytesMut,
    discarded_bytes: u64,
    /// Whether `pending` starts on a packet boundary.
    in_sync: bool,
}

impl Default for PacketAligner {
    fn default() -> Self {
        PacketAligner {
            pending: BytesMut::new(),
            discarded_bytes: 0,
            in_sync: true,
        }
    }
}

impl PacketAligner {
    /// An aligner with nothing pending, at the start of a stream.
    pub fn new() -> Self {
        PacketAligner::default()
    }

    /// Adds `chunk`; returns the whole packets now available (possibly none).
    /// When the input is already aligned the returned bytes share its allocation.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.in_sync
            && self.pending.is_empty()
            && chunk.len() % PACKET_LEN == 0
            && aligned(&chunk)
        {
            return chunk;
        }
        self.pending.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        // Bounded: every turn but the last puts out or skips bytes, or gains sync (and
        // the next turn then puts out bytes, or loses sync on a non-empty buffer, or
        // stops).
        while !self.pending.is_empty() {
            if self.in_sync {
                if self.pending[0] != SYNC_BYTE {
                    self.in_sync = false;
                    continue;
                }
                let whole = self.leading_packets();
                if whole == 0 {
                    break;
                }
                out.extend_from_slice(&self.pending.split_to(whole * PACKET_LEN));
            } else {
                let (skip, confirmed) = self.find_sync();
                self.discarded_bytes += skip as u64;
                let _ = self.pending.split_to(skip);
                if !confirmed {
                    break;
                }
                self.in_sync = true;
            }
        }
        out.freeze()
    }

    /// The stream ends here and another begins (on a packet boundary, like every
    /// stream): a partial packet left from the old one is dropped (counted in
    /// [`PacketAligner::discarded_bytes`]) instead of being joined to the new one's first
    /// bytes, which would lose the new stream's first packets to a resync.
    pub fn new_stream(&mut self) {
        self.discarded_bytes += self.pending.len() as u64;
        self.pending.clear();
        self.in_sync = true;
    }

    /// Bytes skipped so far because they were not part of an aligned packet.
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded_bytes
    }

    /// Bytes held back waiting for the rest of their packet (or, out of sync, for the
    /// byte that confirms a packet start): at most one packet's worth.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Out of sync: the offset of the first sync byte in `pending` that another one a
    /// packet later confirms (`true`), else of the first one that has not arrived far
    /// enough to tell (`false`), else the length of `pending`.
    fn find_sync(&self) -> (usize, bool) {
        let data = &self.pending[..];
        for (i, &byte) in data.iter().enumerate() {
            if byte != SYNC_BYTE {
                continue;
            }
            match data.get(i + PACKET_LEN) {
                Some(&SYNC_BYTE) => return (i, true),
                Some(_) => {}
                None => return (i, false),
            }
        }
        (data.len(), false)
    }

    /// Complete packets at the front of `pending` whose sync bytes line up.
    fn leading_packets(&self) -> usize {
        self.pending
            .chunks_exact(PACKET_LEN)
            .take_while(|packet| packet[0] == SYNC_BYTE)
            .count()
    }
}

fn aligned(bytes: &[u8]) -> bool {
    bytes
        .chunks_exact(PACKET_LEN)
        .all(|packet| packet[0] == SYNC_BYTE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, counter: u8) -> Vec<u8> {
        let mut packet = vec![0u8; PACKET_LEN];
        packet[0] = SYNC_BYTE;
        packet[1] = 0x40 | ((pid >> 8) as u8 & 0x1F);
        packet[2] = pid as u8;
        packet[3] = 0x10 | (counter & 0x0F);
        packet
    }

    #[test]
    fn packet_fields_are_read() {
        let bytes = packet(0x0100, 7);
        let view = Packet::new(&bytes).expect("a packet");
        assert_eq!(view.pid(), 0x0100);
        assert!(view.payload_unit_start());
        assert_eq!(view.continuity_counter(), 7);
        assert!(!view.random_access());
        assert!(Packet::new(&bytes[1..]).is_none());
        assert!(Packet::new(&packet(PAT_PID, 0)).expect("PAT").starts_pat());
    }

    #[test]
    fn only_flagged_video_pes_starts_are_keyframes() {
        let mut video = packet(0x0100, 0);
        video[3] |= 0x20;
        video[4] = 1;
        video[5] = 0x40;
        video[6..10].copy_from_slice(&[0x00, 0x00, 0x01, 0xE0]);
        assert!(Packet::new(&video).expect("packet").starts_video_keyframe());
        let mut audio = video.clone();
        audio[9] = 0xC0;
        let audio = Packet::new(&audio).expect("packet");
        assert!(audio.random_access());
        assert!(!audio.starts_video_keyframe());
        let mut unflagged = video.clone();
        unflagged[5] = 0;
        assert!(!Packet::new(&unflagged)
            .expect("packet")
            .starts_video_keyframe());
        let mut bad_length = video;
        bad_length[4] = 250;
        assert!(!Packet::new(&bad_length)
            .expect("packet")
            .starts_video_keyframe());
    }

    #[test]
    fn a_new_stream_drops_the_old_partial_packet_and_keeps_every_new_packet() {
        let old = stream(0x100, 3);
        let new = stream(PAT_PID, 4);
        let mut aligner = PacketAligner::new();
        // The old stream stops 100 bytes into its third packet.
        let first = aligner.push(old.slice(..2 * PACKET_LEN + 100));
        assert_eq!(first.len(), 2 * PACKET_LEN);
        aligner.new_stream();
        assert_eq!(aligner.discarded_bytes(), 100);
        assert_eq!(aligner.push(new.clone()), new);
        // Without the boundary the partial packet swallows the new stream's first.
        let mut joined = PacketAligner::new();
        let _ = joined.push(old.slice(..2 * PACKET_LEN + 100));
        assert_ne!(joined.push(new.clone()), new);
    }

    /// `count` packets of PID `pid` with counters from 0.
    fn stream(pid: u16, count: u8) -> Bytes {
        Bytes::from(
            (0..count)
                .map(|n| packet(pid, n))
                .collect::<Vec<_>>()
                .concat(),
        )
    }

    #[test]
    fn aligned_input_passes_through_without_copy() {
        let mut aligner = PacketAligner::new();
        let input = Bytes::from([packet(1, 0), packet(1, 1)].concat());
        let out = aligner.push(input.clone());
        assert_eq!(out.as_ptr(), input.as_ptr());
        assert_eq!(out.len(), 2 * PACKET_LEN);
    }

    #[test]
    fn split_packets_are_joined() {
        let stream = [packet(1, 0), packet(2, 1), packet(3, 2)].concat();
        let mut aligner = PacketAligner::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(100) {
            out.extend_from_slice(&aligner.push(Bytes::copy_from_slice(chunk)));
        }
        assert_eq!(out, stream);
        assert_eq!(aligner.discarded_bytes(), 0);
        assert_eq!(aligner.pending_bytes(), 0);
    }

    #[test]
    fn garbage_is_skipped_and_counted() {
        let mut stream = b"HTTP junk".to_vec();
        stream.extend([packet(1, 0), packet(2, 1)].concat());
        let mut aligner = PacketAligner::new();
        let out = aligner.push(Bytes::from(stream));
        assert_eq!(out.len(), 2 * PACKET_LEN);
        assert_eq!(aligner.discarded_bytes(), 9);
        assert!(packets(&out).all(|p| p.bytes()[0] == SYNC_BYTE));
    }

    #[test]
    fn the_packet_before_garbage_is_kept_however_the_stream_is_cut() {
        let mut stream = packet(1, 0);
        stream.extend_from_slice(&[0xAA; 50]);
        stream.extend([packet(2, 1), packet(3, 2)].concat());
        let expected = [packet(1, 0), packet(2, 1), packet(3, 2)].concat();
        for size in [1, 7, 100, 188, 189, 250, stream.len()] {
            let mut aligner = PacketAligner::new();
            let mut out = Vec::new();
            for chunk in stream.chunks(size) {
                out.extend_from_slice(&aligner.push(Bytes::copy_from_slice(chunk)));
            }
            assert_eq!(out, expected, "chunks of {size}");
            assert_eq!(aligner.discarded_bytes(), 50, "chunks of {size}");
            assert_eq!(aligner.pending_bytes(), 0, "chunks of {size}");
        }
    }

    #[test]
    fn out_of_sync_a_lone_sync_byte_waits_for_its_confirmation() {
        let mut aligner = PacketAligner::new();
        assert!(aligner.push(Bytes::from_static(b"junk")).is_empty());
        // A sync byte and a packet's worth: not yet known to be a packet start.
        let first = packet(1, 0);
        assert!(aligner.push(Bytes::copy_from_slice(&first)).is_empty());
        assert_eq!(aligner.pending_bytes(), PACKET_LEN);
        // The next sync byte confirms it; from then on packets flow as they complete.
        let out = aligner.push(Bytes::copy_from_slice(&packet(2, 1)));
        assert_eq!(out, [first, packet(2, 1)].concat());
        assert_eq!(aligner.discarded_bytes(), 4);
    }

    #[test]
    fn null_packets_are_valid_null_packets() {
        let nulls = null_packets(3);
        assert_eq!(nulls.len(), 3 * PACKET_LEN);
        assert!(packets(&nulls).all(|p| p.pid() == NULL_PID));
        assert_eq!(packets(&nulls).count(), 3);
    }
}
