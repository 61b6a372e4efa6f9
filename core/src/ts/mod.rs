//! MPEG transport stream basics: packet views, alignment of arbitrary byte chunks
//! into whole packets, and null packets for keepalive.

pub mod restamp;

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
/// Bytes that cannot be aligned (no sync byte at a packet boundary) are skipped until
/// two consecutive sync bytes 188 bytes apart are found again, and counted.
#[derive(Debug, Default)]
pub struct PacketAligner {
    pending: BytesMut,
    discarded_bytes: u64,
}

impl PacketAligner {
    /// An aligner with nothing pending.
    pub fn new() -> Self {
        PacketAligner::default()
    }

    /// Adds `chunk`; returns the whole packets now available (possibly none).
    /// When the input is already aligned the returned bytes share its allocation.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.pending.is_empty() && chunk.len() % PACKET_LEN == 0 && aligned(&chunk) {
            return chunk;
        }
        self.pending.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        loop {
            let start = self.find_sync();
            if start > 0 {
                self.discarded_bytes += start as u64;
                let _ = self.pending.split_to(start);
            }
            let whole = self.leading_packets();
            if whole == 0 {
                break;
            }
            out.extend_from_slice(&self.pending.split_to(whole * PACKET_LEN));
        }
        out.freeze()
    }

    /// Bytes skipped so far because they were not part of an aligned packet.
    pub fn discarded_bytes(&self) -> u64 {
        self.discarded_bytes
    }

    /// Bytes held back waiting for the rest of their packet.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// Offset of the first plausible packet start in `pending`. A sync byte counts when
    /// the byte one packet later is a sync byte too, or lies beyond what has arrived.
    fn find_sync(&self) -> usize {
        let data = &self.pending[..];
        (0..data.len())
            .find(|&i| {
                data[i] == SYNC_BYTE && data.get(i + PACKET_LEN).is_none_or(|&b| b == SYNC_BYTE)
            })
            .unwrap_or(data.len())
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
    fn null_packets_are_valid_null_packets() {
        let nulls = null_packets(3);
        assert_eq!(nulls.len(), 3 * PACKET_LEN);
        assert!(packets(&nulls).all(|p| p.pid() == NULL_PID));
        assert_eq!(packets(&nulls).count(), 3);
    }
}
