//! Restamping a transport stream that is played in a loop, so that loop after loop
//! forms one continuous stream.
//!
//! Replaying the same bytes twice makes every timestamp jump back and every
//! continuity counter repeat at the seam; decoders then drop or reorder frames. A
//! [`LoopRestamper`] learns once, from the media itself, how long one loop lasts and
//! how far each PID's continuity counter advances per loop. Packet `i` of loop `k` is
//! then rewritten independently of every other packet:
//!
//! - PCR (and OPCR), PTS and DTS are shifted by `k ×` the loop duration, modulo 2³³
//!   as the timestamps themselves wrap;
//! - the continuity counter is advanced by `k ×` its per-loop step, modulo 16.
//!
//! Loop 0 is the media unchanged. Because the rewrite of a packet depends only on the
//! packet and `k`, any byte range of the endless stream can be produced on its own.
//!
//! The loop duration is one value for every stream: each stream's duration is its
//! timestamp span plus one frame (the smallest step between its sorted timestamps),
//! and the loop lasts as long as the longest stream. Shifting audio and video by one
//! common amount keeps them in sync forever; a stream shorter than the loop shows a
//! gap at the seam instead of drifting. Media cut so that audio and video last
//! exactly as long (as the emulator's fixture is) has no gap at all.
//!
//! ```
//! use acemux_core::ts::restamp::LoopRestamper;
//! # fn media() -> Vec<u8> { Vec::new() }
//! let media = media();
//! if let Ok(restamper) = LoopRestamper::analyze(&media) {
//!     let mut second_loop = media.clone();
//!     for packet in second_loop.chunks_exact_mut(188) {
//!         let packet: &mut [u8; 188] = packet.try_into().expect("chunks of 188");
//!         restamper.restamp(packet, 1);
//!     }
//! }
//! ```

use std::collections::BTreeMap;

use thiserror::Error;

use super::{NULL_PID, PACKET_LEN, SYNC_BYTE};

/// PTS, DTS and PCR bases count 90 kHz ticks modulo 2³³.
pub const TIMESTAMP_MODULUS: u64 = 1 << 33;
/// Ticks of the 90 kHz clock per second.
pub const TICKS_PER_SECOND: u64 = 90_000;
/// Spans above this are taken as a wrap inside the media, which is not supported.
const MAX_SPAN_TICKS: u64 = TIMESTAMP_MODULUS / 2;

/// Why media cannot be looped.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RestampError {
    /// No packets at all.
    #[error("the media is empty")]
    Empty,
    /// The length is not a whole number of packets.
    #[error("the media is {len} bytes, not a whole number of 188-byte packets")]
    NotPacketAligned {
        /// Length of the media in bytes.
        len: usize,
    },
    /// A packet does not start with the sync byte.
    #[error("packet {index} does not start with the sync byte")]
    BadSync {
        /// Index of the packet.
        index: usize,
    },
    /// No stream carries two or more timestamps, so no duration can be derived.
    #[error("no elementary stream with at least two timestamps")]
    NoTimestamps,
    /// The timestamps of a stream wrap around within the media.
    #[error("the timestamps of PID {pid} wrap around inside the media")]
    TimestampWrap {
        /// The PID.
        pid: u16,
    },
}

/// The timestamps found in one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timestamps {
    /// Program clock reference as (90 kHz base, 27 MHz extension 0..300).
    pub pcr: Option<(u64, u16)>,
    /// Presentation timestamp, 90 kHz.
    pub pts: Option<u64>,
    /// Decoding timestamp, 90 kHz.
    pub dts: Option<u64>,
}

/// How to rewrite each loop of one piece of media; see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopRestamper {
    duration_ticks: u64,
    stream_durations: BTreeMap<u16, u64>,
    cc_steps: BTreeMap<u16, u8>,
}

impl LoopRestamper {
    /// Learns the loop duration and the continuity counter steps of `media`, which
    /// must be whole packets whose timestamps do not wrap.
    pub fn analyze(media: &[u8]) -> Result<Self, RestampError> {
        if media.is_empty() {
            return Err(RestampError::Empty);
        }
        if media.len() % PACKET_LEN != 0 {
            return Err(RestampError::NotPacketAligned { len: media.len() });
        }
        let mut first_cc: BTreeMap<u16, u8> = BTreeMap::new();
        let mut last_cc: BTreeMap<u16, u8> = BTreeMap::new();
        let mut pts: BTreeMap<u16, Vec<u64>> = BTreeMap::new();
        for (index, packet) in media.chunks_exact(PACKET_LEN).enumerate() {
            if packet[0] != SYNC_BYTE {
                return Err(RestampError::BadSync { index });
            }
            let pid = pid(packet);
            if has_payload(packet) {
                first_cc.entry(pid).or_insert(packet[3] & 0x0F);
                last_cc.insert(pid, packet[3] & 0x0F);
            }
            if let Some(at) = pes_timestamp_offsets(packet).0 {
                pts.entry(pid)
                    .or_default()
                    .push(read_timestamp(&packet[at..at + 5]));
            }
        }
        let mut stream_durations = BTreeMap::new();
        for (pid, mut values) in pts {
            values.sort_unstable();
            values.dedup();
            let (Some(&first), Some(&last)) = (values.first(), values.last()) else {
                continue;
            };
            let Some(frame) = values.windows(2).map(|pair| pair[1] - pair[0]).min() else {
                continue;
            };
            if last - first > MAX_SPAN_TICKS {
                return Err(RestampError::TimestampWrap { pid });
            }
            stream_durations.insert(pid, last - first + frame);
        }
        let duration_ticks = stream_durations
            .values()
            .copied()
            .max()
            .ok_or(RestampError::NoTimestamps)?;
        let cc_steps = last_cc
            .iter()
            .filter(|(&pid, _)| pid != NULL_PID)
            .map(|(&pid, &last)| {
                let first = first_cc.get(&pid).copied().unwrap_or(0);
                (pid, (last + 1).wrapping_sub(first) & 0x0F)
            })
            .collect();
        Ok(LoopRestamper {
            duration_ticks,
            stream_durations,
            cc_steps,
        })
    }

    /// Duration of one loop in 90 kHz ticks: the longest stream's duration.
    pub fn loop_duration_ticks(&self) -> u64 {
        self.duration_ticks
    }

    /// Duration of each elementary stream (by PID) in 90 kHz ticks.
    pub fn stream_duration_ticks(&self) -> &BTreeMap<u16, u64> {
        &self.stream_durations
    }

    /// How far each PID's continuity counter advances over one loop.
    pub fn continuity_steps(&self) -> &BTreeMap<u16, u8> {
        &self.cc_steps
    }

    /// Rewrites `packet`, a packet of the analysed media, as it appears in loop
    /// `loop_index` (0 leaves it unchanged). Packets that are not the media's are
    /// rewritten as best they can be and never cause a panic.
    pub fn restamp(&self, packet: &mut [u8; PACKET_LEN], loop_index: u64) {
        if loop_index == 0 || packet[0] != SYNC_BYTE {
            return;
        }
        let shift = timestamp_shift(self.duration_ticks, loop_index);
        let (pts_at, dts_at) = pes_timestamp_offsets(packet);
        for at in [pts_at, dts_at].into_iter().flatten() {
            let field = &mut packet[at..at + 5];
            let shifted = (read_timestamp(field) + shift) % TIMESTAMP_MODULUS;
            write_timestamp(field, shifted);
        }
        for at in clock_reference_offsets(packet).into_iter().flatten() {
            let field = &mut packet[at..at + 6];
            let (base, extension) = read_clock_reference(field);
            write_clock_reference(field, (base + shift) % TIMESTAMP_MODULUS, extension);
        }
        if let Some(&step) = self.cc_steps.get(&pid(packet)) {
            let advance = ((loop_index % 16) as u8).wrapping_mul(step);
            let counter = (packet[3] & 0x0F).wrapping_add(advance) & 0x0F;
            packet[3] = (packet[3] & 0xF0) | counter;
        }
    }
}

/// The PCR, PTS and DTS carried by `packet` (all `None` for a malformed one).
pub fn timestamps(packet: &[u8; PACKET_LEN]) -> Timestamps {
    let (pts_at, dts_at) = pes_timestamp_offsets(packet);
    let [pcr_at, _] = clock_reference_offsets(packet);
    Timestamps {
        pcr: pcr_at.map(|at| read_clock_reference(&packet[at..at + 6])),
        pts: pts_at.map(|at| read_timestamp(&packet[at..at + 5])),
        dts: dts_at.map(|at| read_timestamp(&packet[at..at + 5])),
    }
}

/// `loop_index × duration` modulo 2³³, without overflow.
fn timestamp_shift(duration_ticks: u64, loop_index: u64) -> u64 {
    let product = u128::from(duration_ticks) * u128::from(loop_index);
    // The remainder is below 2³³, so it fits.
    (product % u128::from(TIMESTAMP_MODULUS)) as u64
}

fn pid(packet: &[u8]) -> u16 {
    (u16::from(packet[1] & 0x1F) << 8) | u16::from(packet[2])
}

fn has_payload(packet: &[u8]) -> bool {
    packet[3] & 0x10 != 0
}

fn has_adaptation_field(packet: &[u8]) -> bool {
    packet[3] & 0x20 != 0
}

/// Where the payload starts, if the packet has one inside its 188 bytes.
fn payload_offset(packet: &[u8]) -> Option<usize> {
    if !has_payload(packet) {
        return None;
    }
    let start = if has_adaptation_field(packet) {
        5 + usize::from(packet[4])
    } else {
        4
    };
    (start < PACKET_LEN).then_some(start)
}

/// Offsets of the 5-byte PTS and DTS fields of a PES header that starts in this
/// packet. A header continued in the next packet is left alone (muxers do not
/// split the first 19 bytes of a PES header).
fn pes_timestamp_offsets(packet: &[u8]) -> (Option<usize>, Option<usize>) {
    let none = (None, None);
    if packet[1] & 0x40 == 0 {
        return none;
    }
    let Some(start) = payload_offset(packet) else {
        return none;
    };
    let pes = &packet[start..];
    if pes.len() < 9 || pes[..3] != [0, 0, 1] || pes[6] & 0xC0 != 0x80 {
        return none;
    }
    // These stream ids have no optional PES header (ISO/IEC 13818-1 2.4.3.7).
    if matches!(
        pes[3],
        0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF
    ) {
        return none;
    }
    let pts_at = start + 9;
    let dts_at = start + 14;
    match pes[7] >> 6 {
        0b10 if pts_at + 5 <= PACKET_LEN => (Some(pts_at), None),
        0b11 if dts_at + 5 <= PACKET_LEN => (Some(pts_at), Some(dts_at)),
        _ => none,
    }
}

/// Offsets of the 6-byte PCR and OPCR fields of the adaptation field.
fn clock_reference_offsets(packet: &[u8]) -> [Option<usize>; 2] {
    if !has_adaptation_field(packet) {
        return [None, None];
    }
    let length = usize::from(packet[4]);
    let end = (5 + length).min(PACKET_LEN);
    if length == 0 {
        return [None, None];
    }
    let flags = packet[5];
    let mut at = 6;
    let mut fields = [None, None];
    for (slot, flag) in fields.iter_mut().zip([0x10, 0x08]) {
        if flags & flag != 0 {
            if at + 6 > end {
                break;
            }
            *slot = Some(at);
            at += 6;
        }
    }
    fields
}

/// Reads a 33-bit PTS/DTS from its 5-byte field.
fn read_timestamp(field: &[u8]) -> u64 {
    (u64::from(field[0] >> 1 & 0x07) << 30)
        | (u64::from(field[1]) << 22)
        | (u64::from(field[2] >> 1) << 15)
        | (u64::from(field[3]) << 7)
        | u64::from(field[4] >> 1)
}

/// Writes a 33-bit PTS/DTS, keeping the 4-bit prefix and setting the marker bits.
pub(crate) fn write_timestamp(field: &mut [u8], value: u64) {
    field[0] = (field[0] & 0xF0) | ((value >> 29) as u8 & 0x0E) | 0x01;
    field[1] = (value >> 22) as u8;
    field[2] = ((value >> 14) as u8 & 0xFE) | 0x01;
    field[3] = (value >> 7) as u8;
    field[4] = ((value << 1) as u8 & 0xFE) | 0x01;
}

/// Reads a PCR/OPCR: 33-bit base and 9-bit extension.
fn read_clock_reference(field: &[u8]) -> (u64, u16) {
    let base = (u64::from(field[0]) << 25)
        | (u64::from(field[1]) << 17)
        | (u64::from(field[2]) << 9)
        | (u64::from(field[3]) << 1)
        | u64::from(field[4] >> 7);
    let extension = (u16::from(field[4] & 0x01) << 8) | u16::from(field[5]);
    (base, extension)
}

/// Writes a PCR/OPCR, keeping the 6 reserved bits.
fn write_clock_reference(field: &mut [u8], base: u64, extension: u16) {
    field[0] = (base >> 25) as u8;
    field[1] = (base >> 17) as u8;
    field[2] = (base >> 9) as u8;
    field[3] = (base >> 1) as u8;
    field[4] = ((base as u8 & 0x01) << 7) | (field[4] & 0x7E) | ((extension >> 8) as u8 & 0x01);
    field[5] = extension as u8;
}

#[cfg(test)]
mod tests;
