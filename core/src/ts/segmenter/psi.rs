//! What the segmenter reads of a transport stream: the program tables (PAT, PMT), the
//! video stream and its codec, and whether a flagged random-access point really starts
//! an IDR (H.264) or IRAP (H.265) picture.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};

use crate::ts::{Packet, PACKET_LEN, PAT_PID};

/// The video codecs whose pictures the segmenter can check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// ITU-T H.264 (stream type 0x1B).
    H264,
    /// ITU-T H.265 (stream type 0x24).
    H265,
    /// Another video stream type (MPEG-1/2 video, …): the random-access flag is trusted.
    Other,
}

/// The program tables seen so far, and the copies of their latest packets that start
/// every segment.
#[derive(Clone, Debug, Default)]
pub(super) struct Tables {
    /// The latest PAT packet (a table in one packet).
    pat: Option<[u8; PACKET_LEN]>,
    /// PMT PIDs the latest PAT names.
    pmt_pids: BTreeSet<u16>,
    /// The latest PMT packet of each PMT PID.
    pmts: BTreeMap<u16, [u8; PACKET_LEN]>,
    /// The first video stream a PMT declares.
    video: Option<(u16, Codec)>,
    /// The latest PAT and PMTs joined, once asked for since they last changed.
    joined: Option<Bytes>,
}

impl Tables {
    /// Reads `packet` if it starts a PAT or a PMT.
    pub(super) fn observe(&mut self, packet: Packet<'_>) {
        if !packet.payload_unit_start() {
            return;
        }
        let pid = packet.pid();
        if pid == PAT_PID {
            if let Some(pmt_pids) = parse_pat(packet.payload()) {
                self.pmts.retain(|pid, _| pmt_pids.contains(pid));
                self.pmt_pids = pmt_pids;
                self.pat = Some(*packet.bytes());
                self.joined = None;
            }
        } else if self.pmt_pids.contains(&pid) {
            if let Some(video) = parse_pmt(packet.payload()) {
                self.pmts.insert(pid, *packet.bytes());
                self.joined = None;
                if self.video.is_none() || video.is_some() {
                    self.video = video.or(self.video);
                }
            }
        }
    }

    /// The video PID and codec, once a PMT declared one.
    pub(super) fn video(&self) -> Option<(u16, Codec)> {
        self.video
    }

    /// The latest PAT and PMTs in one piece, to start a segment with (none until a PAT
    /// and a PMT it names were seen). Joined once per change of the tables, so the
    /// segments cut meanwhile share it.
    pub(super) fn packets(&mut self) -> Option<Bytes> {
        if self.pat.is_none() || self.pmts.is_empty() {
            return None;
        }
        let joined = self.joined.get_or_insert_with(|| {
            let mut joined = BytesMut::with_capacity((1 + self.pmts.len()) * PACKET_LEN);
            for packet in self.pat.iter().chain(self.pmts.values()) {
                joined.extend_from_slice(packet);
            }
            joined.freeze()
        });
        Some(joined.clone())
    }
}

/// The section a payload that starts one carries: after the pointer field, cut to its
/// `section_length` (which must fit the packet), with its table id.
fn section(payload: &[u8]) -> Option<(u8, &[u8])> {
    let pointer = usize::from(*payload.first()?);
    let section = payload.get(1 + pointer..)?;
    let table_id = *section.first()?;
    let length = usize::from(u16::from(*section.get(1)? & 0x0F) << 8 | u16::from(*section.get(2)?));
    // The header up to `last_section_number` and the CRC.
    if length < 9 {
        return None;
    }
    Some((table_id, section.get(..3 + length)?))
}

/// The PMT PIDs of a PAT section (program 0, the network PID, left out); `None` when
/// the payload is no PAT that fits one packet.
pub(super) fn parse_pat(payload: &[u8]) -> Option<BTreeSet<u16>> {
    let (table_id, section) = section(payload)?;
    if table_id != 0x00 {
        return None;
    }
    let entries = section.get(8..section.len() - 4)?;
    Some(
        entries
            .chunks_exact(4)
            .filter(|entry| entry[0] != 0 || entry[1] != 0)
            .map(|entry| u16::from(entry[2] & 0x1F) << 8 | u16::from(entry[3]))
            .collect(),
    )
}

/// The first video stream of a PMT section (`Some(None)`: a PMT without video); `None`
/// when the payload is no PMT that fits one packet.
pub(super) fn parse_pmt(payload: &[u8]) -> Option<Option<(u16, Codec)>> {
    let (table_id, section) = section(payload)?;
    if table_id != 0x02 {
        return None;
    }
    let info = usize::from(u16::from(*section.get(10)? & 0x0F) << 8 | u16::from(*section.get(11)?));
    let mut streams = section.get(12 + info..section.len() - 4)?;
    while streams.len() >= 5 {
        let stream_type = streams[0];
        let pid = u16::from(streams[1] & 0x1F) << 8 | u16::from(streams[2]);
        let es_info = usize::from(u16::from(streams[3] & 0x0F) << 8 | u16::from(streams[4]));
        let codec = match stream_type {
            0x1B => Some(Codec::H264),
            0x24 => Some(Codec::H265),
            0x01 | 0x02 | 0x10 | 0x42 | 0xEA => Some(Codec::Other),
            _ => None,
        };
        if let Some(codec) = codec {
            return Some(Some((pid, codec)));
        }
        streams = streams.get(5 + es_info..)?;
    }
    Some(None)
}

/// The elementary stream bytes after the PES header of a PES that starts in `payload`,
/// with its stream id; `None` when the payload starts no PES.
pub(super) fn pes_data(payload: &[u8]) -> Option<(u8, &[u8])> {
    if payload.len() < 9 || payload[..3] != [0, 0, 1] {
        return None;
    }
    let stream_id = payload[3];
    Some((stream_id, payload.get(9 + usize::from(payload[8])..)?))
}

/// What the NAL units at the start of a picture's data say about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Picture {
    /// An IDR (H.264) or IRAP (H.265) picture: decoding can start here.
    RandomAccess,
    /// A picture that needs earlier ones.
    Dependent,
    /// No picture's slice starts in these bytes (parameter sets and SEI can fill a
    /// packet); the stream's flag is trusted.
    Unknown,
}

/// Classifies the first slice NAL unit in `data` (the start of a video PES's data).
pub(super) fn first_picture(codec: Codec, data: &[u8]) -> Picture {
    let mut rest = data;
    while let Some(at) = find_start_code(rest) {
        let Some(&header) = rest.get(at + 3) else {
            break;
        };
        match codec {
            Codec::H264 => match header & 0x1F {
                5 => return Picture::RandomAccess,
                1..=4 => return Picture::Dependent,
                _ => {}
            },
            Codec::H265 => match (header >> 1) & 0x3F {
                16..=21 => return Picture::RandomAccess,
                0..=9 => return Picture::Dependent,
                _ => {}
            },
            Codec::Other => return Picture::Unknown,
        }
        rest = &rest[at + 3..];
    }
    Picture::Unknown
}

/// The offset of the next `00 00 01` in `data`.
fn find_start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|window| window == [0, 0, 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_classify_pictures() {
        let idr = [
            0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65, 0x88,
        ];
        assert_eq!(first_picture(Codec::H264, &idr), Picture::RandomAccess);
        let p = [0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x41, 0x9A];
        assert_eq!(first_picture(Codec::H264, &p), Picture::Dependent);
        let sps_only = [0, 0, 1, 0x67, 0x42, 0x00];
        assert_eq!(first_picture(Codec::H264, &sps_only), Picture::Unknown);
        // H.265: VPS (32), then an IDR_W_RADL (19).
        let hevc = [0, 0, 1, 0x40, 0x01, 0, 0, 1, 19 << 1, 0x01];
        assert_eq!(first_picture(Codec::H265, &hevc), Picture::RandomAccess);
        let trail = [0, 0, 1, 1 << 1, 0x01];
        assert_eq!(first_picture(Codec::H265, &trail), Picture::Dependent);
        assert_eq!(first_picture(Codec::Other, &idr), Picture::Unknown);
        assert_eq!(first_picture(Codec::H264, &[0, 0, 1]), Picture::Unknown);
    }

    #[test]
    fn malformed_tables_are_no_tables() {
        assert_eq!(parse_pat(&[]), None);
        assert_eq!(parse_pat(&[200, 0, 0]), None);
        assert_eq!(parse_pat(&[0, 0x00, 0xB0, 0xFF]), None);
        assert_eq!(parse_pmt(&[0, 0x02, 0xB0, 0x03, 0, 0]), None);
        assert_eq!(pes_data(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 200]), None);
    }
}
