//! The HLS segmenter under a stream built from fuzzer choices: program tables, video
//! frames (random-access or not, IDR or not, with timestamps that step, stall and
//! jump), continuation and raw packets, junk, new playbacks and clock moves.

use bytes::Bytes;

use super::reader::ByteReader;
use super::MAX_STEPS;
use crate::time::{Duration, Instant};
use crate::ts::restamp::write_timestamp;
use crate::ts::segmenter::{Segmenter, SegmenterConfig};
use crate::ts::{self, PacketAligner, PACKET_LEN, SYNC_BYTE};

const MAX_BYTES: usize = 64 * PACKET_LEN;

fn header(pid: u16, start: bool, cc: u8) -> [u8; PACKET_LEN] {
    let mut packet = [0xFFu8; PACKET_LEN];
    packet[0] = SYNC_BYTE;
    packet[1] = (pid >> 8) as u8 & 0x1F | if start { 0x40 } else { 0 };
    packet[2] = pid as u8;
    packet[3] = 0x10 | (cc & 0x0F);
    packet
}

/// One step of the drive: bytes to push (maybe none) and what else happens.
fn step(reader: &mut ByteReader<'_>, dts: &mut u64) -> (Vec<u8>, bool, u64) {
    let cc = reader.u8() & 0x0F;
    let mut bytes = Vec::new();
    let mut new_playback = false;
    let mut advance_ms = 0;
    match reader.below(7) {
        0 => {
            // A PAT naming PMT 0x1000 (or garbage in its place).
            let mut packet = header(0, true, cc);
            let section = [
                0, 0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00, 1, 2, 3, 4,
            ];
            packet[4..4 + section.len()].copy_from_slice(&section);
            let at = 4 + reader.index(section.len());
            packet[at] = reader.u8();
            bytes.extend_from_slice(&packet);
        }
        1 => {
            // A PMT: H.264 or H.265 video on 0x100, audio on 0x101.
            let mut packet = header(0x1000, true, cc);
            let video_type = if reader.bool() { 0x1B } else { 0x24 };
            let section = [
                0, 0x02, 0xB0, 23, 0, 1, 0xC1, 0, 0, 0xE1, 0, 0xF0, 0, video_type, 0xE1, 0x00,
                0xF0, 0, 0x0F, 0xE1, 0x01, 0xF0, 0, 1, 2, 3, 4,
            ];
            packet[4..4 + section.len()].copy_from_slice(&section);
            bytes.extend_from_slice(&packet);
        }
        2 => {
            // A video frame: flagged or not, an IDR, IRAP or dependent picture, its
            // timestamps a frame on, or stalled, or jumping.
            *dts = match reader.below(8) {
                0 => dts.wrapping_sub(reader.below(1 << 24)),
                1 => dts.wrapping_add(reader.below(1 << 30)),
                2 => reader.u64(),
                _ => dts.wrapping_add(3600),
            } % crate::ts::restamp::TIMESTAMP_MODULUS;
            let mut packet = header(0x100, true, cc);
            let mut at = 4;
            if reader.bool() {
                packet[3] |= 0x20;
                packet[4] = 1;
                packet[5] = 0x40;
                at = 6;
            }
            packet[at..at + 9].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10]);
            write_timestamp(&mut packet[at + 9..at + 14], *dts + 3600);
            write_timestamp(&mut packet[at + 14..at + 19], *dts);
            let nal = [0x65, 0x41, 19 << 1, 1 << 1, 0x67, 0x09][reader.index(6)];
            packet[at + 19..at + 23].copy_from_slice(&[0, 0, 1, nal]);
            bytes.extend_from_slice(&packet);
        }
        3 => bytes.extend_from_slice(&header(0x100 + reader.below(3) as u16, false, cc)),
        4 => {
            let len = reader.index(2 * PACKET_LEN);
            bytes.extend_from_slice(reader.bytes(len));
        }
        5 => new_playback = true,
        _ => advance_ms = reader.below(10_000),
    }
    (bytes, new_playback, advance_ms)
}

/// Feeds the segmenter a stream built from `data` and checks, at every step: segments
/// are whole packets within the byte bound, last at least 1 µs, and every aligned
/// input packet is in a segment, skipped before a playback's first random-access
/// point, or in the segment being filled.
pub fn segmenter(data: &[u8]) {
    let mut reader = ByteReader::new(data);
    let target = Duration::from_millis(200 + reader.below(4_000));
    let config = SegmenterConfig {
        max_bytes: MAX_BYTES,
        ..SegmenterConfig::with_target(target)
    };
    let mut segmenter = Segmenter::new(config);
    let mut mirror = PacketAligner::new();
    let mut now = Instant::ZERO;
    let mut dts = reader.u64() % crate::ts::restamp::TIMESTAMP_MODULUS;
    let mut aligned_packets = 0u64;
    let mut output_packets = 0u64;
    let steps = reader.steps(MAX_STEPS, |reader| step(reader, &mut dts));
    for (bytes, new_playback, advance_ms) in steps {
        now = now + Duration::from_millis(advance_ms);
        if new_playback {
            segmenter.discontinuity(now);
            mirror = PacketAligner::new();
        }
        aligned_packets += (mirror.push(Bytes::copy_from_slice(&bytes)).len() / PACKET_LEN) as u64;
        segmenter.push(now, Bytes::from(bytes));
        while let Some(segment) = segmenter.poll_segment() {
            let bytes = segment.body.to_bytes();
            assert_eq!(bytes.len(), segment.body.len());
            assert_eq!(bytes.len() % PACKET_LEN, 0, "whole packets");
            assert!(ts::packets(&bytes).count() * PACKET_LEN == bytes.len());
            assert!(bytes.len() <= MAX_BYTES, "within the byte bound");
            assert!(segment.duration_us >= 1);
            for part in segment.body.parts() {
                assert_eq!(part.len() % PACKET_LEN, 0, "parts are whole packets");
            }
            let packets = bytes.len() / PACKET_LEN;
            assert!(
                packets > segment.inserted_packets,
                "every segment carries input"
            );
            output_packets += (packets - segment.inserted_packets) as u64;
        }
        let pending = segmenter.pending_packets() as u64;
        assert_eq!(
            output_packets + segmenter.stats().skipped_packets + pending,
            aligned_packets,
            "every packet accounted for"
        );
    }
}

/// A toy H.264 program for tests: PAT and PMT, then `frames` video frames at 25 fps
/// from decode time `start_dts` (one packet each, a keyframe every `gop`), each table
/// repeated every second.
#[cfg(test)]
pub(crate) fn gop_stream(start_dts: u64, frames: u64, gop: u64) -> Vec<u8> {
    let pat = {
        let mut packet = header(0, true, 0);
        let section = [
            0, 0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00, 1, 2, 3, 4,
        ];
        packet[4..4 + section.len()].copy_from_slice(&section);
        packet
    };
    let pmt = {
        let mut packet = header(0x1000, true, 0);
        let section = [
            0, 0x02, 0xB0, 18, 0, 1, 0xC1, 0, 0, 0xE1, 0, 0xF0, 0, 0x1B, 0xE1, 0x00, 0xF0, 0, 1, 2,
            3, 4,
        ];
        packet[4..4 + section.len()].copy_from_slice(&section);
        packet
    };
    let mut out = Vec::new();
    for frame in 0..frames {
        if frame % 25 == 0 {
            out.extend_from_slice(&pat);
            out.extend_from_slice(&pmt);
        }
        let keyframe = frame % gop == 0;
        let dts = (start_dts + frame * 3600) % crate::ts::restamp::TIMESTAMP_MODULUS;
        let mut packet = header(0x100, true, frame as u8);
        let mut at = 4;
        if keyframe {
            packet[3] |= 0x20;
            packet[4] = 1;
            packet[5] = 0x40;
            at = 6;
        }
        packet[at..at + 9].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10]);
        write_timestamp(&mut packet[at + 9..at + 14], dts + 3600);
        write_timestamp(&mut packet[at + 14..at + 19], dts);
        let nal = if keyframe { 0x65 } else { 0x41 };
        packet[at + 19..at + 23].copy_from_slice(&[0, 0, 1, nal]);
        out.extend_from_slice(&packet);
    }
    out
}
