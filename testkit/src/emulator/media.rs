//! The endless stream an emulated channel plays: one piece of media looped forever,
//! restamped so that it decodes as one continuous stream.

use std::sync::Arc;
use std::time::Duration;

use acemux_core::ts::restamp::{timestamps, LoopRestamper, RestampError, TICKS_PER_SECOND};
use acemux_core::ts::{Packet, PACKET_LEN};
use bytes::{Bytes, BytesMut};

/// The default media: 8 s of H.264 + AAC test pattern; see `testkit/assets/README.md`.
pub const DEFAULT_MEDIA: &[u8] = include_bytes!("../../assets/emulator.ts");

/// The same structure at about an eighth of the bitrate: 8 s of the same pattern at
/// 160×90, H.264 and AAC, one keyframe every 2 s, PAT/PMT every 0.1 s and before every
/// keyframe; about 142 kbit/s (see `testkit/assets/README.md`). The simulation plays
/// it, so that a simulated second moves fewer bytes through every check.
pub const SMALL_MEDIA: &[u8] = include_bytes!("../../assets/emulator-small.ts");

/// One piece of MPEG-TS media as an endless, deterministic byte stream.
///
/// Byte `n` of the stream is byte `n mod len` of the media, restamped for loop
/// `n / len` (see [`acemux_core::ts::restamp`]). Every reader of the same media sees
/// the same bytes at the same offset. Cheap to clone.
#[derive(Clone)]
pub struct MediaLoop(Arc<Inner>);

struct Inner {
    media: Bytes,
    restamper: LoopRestamper,
    /// Where a player can start: offsets of the PATs that precede a keyframe,
    /// ascending (see [`MediaLoop::entry_point`]).
    entry_offsets: Vec<u64>,
}

impl std::fmt::Debug for MediaLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLoop")
            .field("loop_len_bytes", &self.loop_len_bytes())
            .field("loop_duration", &self.loop_duration())
            .field("bitrate_bps", &self.bitrate_bps())
            .finish()
    }
}

impl MediaLoop {
    /// Loops `media`, which must be whole TS packets with timestamps.
    pub fn new(media: Bytes) -> Result<Self, RestampError> {
        let restamper = LoopRestamper::analyze(&media)?;
        let entry_offsets = entry_offsets(&media);
        Ok(MediaLoop(Arc::new(Inner {
            media,
            restamper,
            entry_offsets,
        })))
    }

    /// The built-in media ([`DEFAULT_MEDIA`]).
    pub fn builtin() -> Self {
        MediaLoop::new(Bytes::from_static(DEFAULT_MEDIA))
            .expect("the built-in media is valid TS with timestamps (tested)")
    }

    /// The small media ([`SMALL_MEDIA`]).
    pub fn small() -> Self {
        MediaLoop::new(Bytes::from_static(SMALL_MEDIA))
            .expect("the small media is valid TS with timestamps (tested)")
    }

    /// Bytes in one loop.
    pub fn loop_len_bytes(&self) -> u64 {
        self.0.media.len() as u64
    }

    /// Duration of one loop in 90 kHz ticks.
    pub fn loop_duration_ticks(&self) -> u64 {
        self.0.restamper.loop_duration_ticks()
    }

    /// Duration of one loop.
    pub fn loop_duration(&self) -> Duration {
        Duration::from_micros(self.loop_duration_ticks() * 1_000_000 / TICKS_PER_SECOND)
    }

    /// The media's own bitrate: its size over its duration.
    pub fn bitrate_bps(&self) -> u64 {
        let bits = u128::from(self.loop_len_bytes()) * 8 * u128::from(TICKS_PER_SECOND);
        let rate = bits / u128::from(self.loop_duration_ticks().max(1));
        u64::try_from(rate).unwrap_or(u64::MAX)
    }

    /// `len` bytes of the endless stream from `offset`.
    pub fn read(&self, offset: u64, len: usize) -> Bytes {
        let media = &self.0.media;
        let loop_len = self.loop_len_bytes();
        let mut out = BytesMut::with_capacity(len);
        let mut position = offset;
        while out.len() < len {
            let loop_index = position / loop_len;
            let within = (position % loop_len) as usize;
            let packet_start = within - within % PACKET_LEN;
            let mut packet: [u8; PACKET_LEN] = media[packet_start..packet_start + PACKET_LEN]
                .try_into()
                .expect("the media is whole packets (checked by analyze)");
            self.0.restamper.restamp(&mut packet, loop_index);
            let from = within - packet_start;
            let take = (PACKET_LEN - from).min(len - out.len());
            out.extend_from_slice(&packet[from..from + take]);
            position += take as u64;
        }
        out.freeze()
    }

    /// The last place at or before `offset` where a player can start decoding: the
    /// PAT before a keyframe (a packet with the random access indicator on the PCR
    /// PID), else any PAT when the media flags no keyframes, else `offset`'s packet.
    /// Stream offset 0 is always one; so is every loop start of media that opens
    /// with tables and a keyframe, as the built-in media does.
    pub fn entry_point(&self, offset: u64) -> u64 {
        let loop_len = self.loop_len_bytes();
        let entries = &self.0.entry_offsets;
        let Some(&last_entry) = entries.last() else {
            return offset - offset % PACKET_LEN as u64;
        };
        let loop_index = offset / loop_len;
        let within = offset % loop_len;
        let before = entries.partition_point(|&entry| entry <= within);
        if before > 0 {
            loop_index * loop_len + entries[before - 1]
        } else if loop_index > 0 {
            (loop_index - 1) * loop_len + last_entry
        } else {
            0
        }
    }
}

/// Offsets of the PATs that most recently precede each keyframe of the PCR PID (the
/// video, as muxers place the PCR); every PAT when no keyframe is flagged.
fn entry_offsets(media: &[u8]) -> Vec<u64> {
    let packets: Vec<Packet<'_>> = media
        .chunks_exact(PACKET_LEN)
        .filter_map(Packet::new)
        .collect();
    let pat_offsets = || {
        packets
            .iter()
            .enumerate()
            .filter(|(_, packet)| packet.starts_pat())
            .map(|(index, _)| (index * PACKET_LEN) as u64)
    };
    let pcr_pid = packets
        .iter()
        .find(|packet| timestamps(packet.bytes()).pcr.is_some())
        .map(|packet| packet.pid());
    let mut entries = Vec::new();
    let mut last_pat = None;
    for (index, packet) in packets.iter().enumerate() {
        if packet.starts_pat() {
            last_pat = Some((index * PACKET_LEN) as u64);
        } else if Some(packet.pid()) == pcr_pid && packet.random_access() {
            if let Some(pat) = last_pat.take() {
                entries.push(pat);
            }
        }
    }
    if entries.is_empty() {
        entries.extend(pat_offsets());
    }
    // Media that opens with tables only (SDT, PAT, PMT) before its first entry
    // point can be entered at its very first byte.
    if let Some(first) = entries.first_mut() {
        let opening = &packets[..*first as usize / PACKET_LEN];
        let tables_only = opening.iter().all(|packet| {
            Some(packet.pid()) != pcr_pid && timestamps(packet.bytes()).pts.is_none()
        });
        if tables_only {
            *first = 0;
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use acemux_core::ts::packets;

    use super::*;

    #[test]
    fn builtin_media_is_eight_seconds_of_real_bitrate() {
        let media = MediaLoop::builtin();
        assert_eq!(media.loop_duration_ticks(), 8 * TICKS_PER_SECOND);
        assert_eq!(media.loop_duration(), Duration::from_secs(8));
        assert_eq!(media.bitrate_bps(), media.loop_len_bytes());
        assert!((800_000..1_600_000).contains(&media.bitrate_bps()));
    }

    #[test]
    fn reads_are_deterministic_and_independent_of_chunking() {
        let media = MediaLoop::builtin();
        let start = media.loop_len_bytes() - 10_000;
        let whole = media.read(start, 50_000);
        let mut pieces = BytesMut::new();
        let mut offset = start;
        for len in [1, 187, 188, 1000, 7, 48_617] {
            pieces.extend_from_slice(&media.read(offset, len));
            offset += len as u64;
        }
        assert_eq!(pieces.freeze(), whole);
        assert_eq!(MediaLoop::builtin().read(start, 50_000), whole);
        assert_eq!(&media.read(0, 1000)[..], &DEFAULT_MEDIA[..1000]);
    }

    #[test]
    fn the_loop_seam_is_continuous() {
        seam_is_continuous(&MediaLoop::builtin());
        seam_is_continuous(&MediaLoop::small());
    }

    #[test]
    fn the_small_media_is_eight_seconds_at_a_low_bitrate() {
        let media = MediaLoop::small();
        assert_eq!(media.loop_duration(), Duration::from_secs(8));
        assert!((100_000..200_000).contains(&media.bitrate_bps()));
        assert!(media.bitrate_bps() * 5 < MediaLoop::builtin().bitrate_bps());
    }

    fn seam_is_continuous(media: &MediaLoop) {
        let len = media.loop_len_bytes();
        let stream = media.read(0, 3 * len as usize);
        let mut last_counter: BTreeMap<u16, u8> = BTreeMap::new();
        let mut last_pcr = 0;
        let mut last_decode: BTreeMap<u16, u64> = BTreeMap::new();
        for packet in packets(&stream) {
            let bytes = packet.bytes();
            if bytes[3] & 0x10 != 0 {
                if let Some(previous) = last_counter.insert(packet.pid(), bytes[3] & 0x0F) {
                    assert_eq!(
                        bytes[3] & 0x0F,
                        (previous + 1) & 0x0F,
                        "PID {}",
                        packet.pid()
                    );
                }
            }
            let found = timestamps(bytes);
            if let Some((base, _)) = found.pcr {
                assert!(base > last_pcr, "PCR went back");
                last_pcr = base;
            }
            if let Some(decode) = found.dts.or(found.pts) {
                let previous = last_decode.insert(packet.pid(), decode);
                assert!(previous.is_none_or(|previous| decode > previous));
            }
        }
        // Three loops of 8 s: timestamps advanced by two loop durations.
        assert!(last_pcr > 2 * media.loop_duration_ticks());
    }

    #[test]
    fn entry_points_are_pats_right_before_keyframes() {
        entry_points_are_tables_before_keyframes(&MediaLoop::builtin());
        entry_points_are_tables_before_keyframes(&MediaLoop::small());
    }

    fn entry_points_are_tables_before_keyframes(media: &MediaLoop) {
        let len = media.loop_len_bytes();
        // One keyframe every 2 s of the 8 s loop.
        assert_eq!(media.0.entry_offsets.len(), 4);
        assert_eq!(media.entry_point(0), 0);
        let two_seconds = media.bitrate_bps() / 4;
        for offset in [1, len / 3, len - 1, len, len + 5, 5 * len + len / 7] {
            let start = media.entry_point(offset);
            assert!(
                start <= offset && offset - start < 2 * two_seconds,
                "{offset} → {start}"
            );
            let head = media.read(start, 4 * PACKET_LEN);
            let found: Vec<_> = packets(&head).collect();
            assert!(
                found[0].starts_pat() || start % len == 0,
                "{offset} → {start}"
            );
            assert!(
                found.iter().any(|packet| packet.random_access()),
                "a keyframe follows the tables"
            );
        }
    }

    #[test]
    fn media_without_timestamps_is_refused() {
        let nulls = acemux_core::ts::null_packets(10);
        assert!(matches!(
            MediaLoop::new(nulls),
            Err(RestampError::NoTimestamps)
        ));
    }
}
