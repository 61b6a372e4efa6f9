//! Where HLS segments are cut, how long each lasts, and which ones a session lists
//! at a given moment. Pure functions of the media, the faults and the instants given.

use std::time::Duration;

use acemux_core::ts::restamp::{timestamps, TICKS_PER_SECOND};
use acemux_core::ts::{packets, PACKET_LEN};
use bytes::Bytes;
use tokio::time::Instant;

use crate::emulator::{Faults, MediaLoop};

/// GOPs per segment: one, so with the built-in media (a keyframe every 2 s) every
/// segment lasts exactly 2 s.
pub(crate) const GOPS_PER_SEGMENT: u64 = 1;
/// Segments a playlist lists: the newest five (10 s of the built-in media).
pub(crate) const WINDOW_SEGMENTS: u64 = 5;

/// One GOP of the media's first loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Gop {
    /// Stream offset of the PAT right before its keyframe.
    offset: u64,
    /// When it starts: its keyframe's PTS minus the first GOP's, in 90 kHz ticks.
    ticks: u64,
}

/// One segment of the endless stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Its stream offset (a PAT followed by a PMT and a video keyframe).
    pub offset: u64,
    /// Its length in bytes (to the next segment's PAT).
    pub len: u64,
    /// When it starts on the channel's media timeline, in 90 kHz ticks.
    pub start_ticks: u64,
    /// How long it plays, in 90 kHz ticks.
    pub duration_ticks: u64,
}

/// Cuts a [`MediaLoop`] into segments of whole GOPs.
///
/// Segment `n` is GOPs `n × g … n × g + g − 1` of the endless stream (`g` GOPs per
/// segment), GOP `k × E + i` being GOP `i` of loop `k` (`E` GOPs per loop). A GOP
/// starts at the PAT right before a video keyframe; its duration is the distance
/// between consecutive keyframe PTS (the last GOP of a loop runs to the loop's end),
/// so the durations add up to the loop duration exactly. Media without a PAT before
/// a video keyframe is cut once per loop.
#[derive(Clone, Debug)]
pub(crate) struct Segmenter {
    media: MediaLoop,
    /// Ascending, the first at tick 0; never empty.
    gops: Vec<Gop>,
    gops_per_segment: u64,
}

impl Segmenter {
    /// Finds the GOPs of `media` (`gops_per_segment` is at least 1).
    pub fn new(media: &MediaLoop, gops_per_segment: u64) -> Self {
        Segmenter {
            gops: find_gops(media),
            media: media.clone(),
            gops_per_segment: gops_per_segment.max(1),
        }
    }

    /// Segment `number`.
    pub fn segment(&self, number: u64) -> Segment {
        let gop = number.saturating_mul(self.gops_per_segment);
        let (offset, start_ticks) = self.gop_start(gop);
        let (end, end_ticks) = self.gop_start(gop.saturating_add(self.gops_per_segment));
        Segment {
            offset,
            len: end.saturating_sub(offset),
            start_ticks,
            duration_ticks: end_ticks.saturating_sub(start_ticks),
        }
    }

    /// The bytes of `segment`: always the same for the same segment.
    pub fn bytes(&self, segment: &Segment) -> Bytes {
        let len = usize::try_from(segment.len).expect("a segment is at most a few loops");
        self.media.read(segment.offset, len)
    }

    /// How many segments are complete once `held` of media exists.
    pub fn complete_segments(&self, held: Duration) -> u64 {
        let ticks = duration_ticks(held);
        let loop_ticks = self.media.loop_duration_ticks().max(1);
        let within = ticks % loop_ticks;
        let started_in_loop = self.gops.partition_point(|gop| gop.ticks <= within) as u64;
        let gop_starts = (ticks / loop_ticks) * self.gops.len() as u64 + started_in_loop;
        // GOP g is complete once GOP g + 1 has started; GOP 0 starts at tick 0.
        (gop_starts - 1) / self.gops_per_segment
    }

    /// `#EXT-X-TARGETDURATION`: the longest segment, rounded up to whole seconds.
    pub fn target_duration_secs(&self) -> u64 {
        // Segment compositions repeat after at most one loop's worth of GOPs.
        let longest = (0..self.gops.len() as u64)
            .map(|number| self.segment(number).duration_ticks)
            .max()
            .unwrap_or(0);
        longest.div_ceil(TICKS_PER_SECOND).max(1)
    }

    /// The stream offset and start tick of GOP `gop` of the endless stream.
    fn gop_start(&self, gop: u64) -> (u64, u64) {
        let per_loop = self.gops.len() as u64;
        let (loop_index, within) = (gop / per_loop, (gop % per_loop) as usize);
        let start = self.gops[within];
        let loop_bytes = loop_index.saturating_mul(self.media.loop_len_bytes());
        let loop_ticks = loop_index.saturating_mul(self.media.loop_duration_ticks());
        (
            loop_bytes.saturating_add(start.offset),
            loop_ticks.saturating_add(start.ticks),
        )
    }
}

/// The GOPs of the first loop: each PAT that precedes a video keyframe, timed by
/// the keyframe's PTS. Falls back to timing by byte position when the PTS do not
/// ascend within one loop, and to one GOP per loop when no keyframe follows a PAT.
fn find_gops(media: &MediaLoop) -> Vec<Gop> {
    let loop_len = media.loop_len_bytes();
    let loop_ticks = media.loop_duration_ticks();
    let first_loop = media.read(0, usize::try_from(loop_len).unwrap_or(usize::MAX));
    let mut found: Vec<(u64, Option<u64>)> = Vec::new();
    let mut last_pat = None;
    for (index, packet) in packets(&first_loop).enumerate() {
        if packet.starts_pat() {
            last_pat = Some((index * PACKET_LEN) as u64);
        } else if packet.starts_video_keyframe() {
            if let Some(pat) = last_pat.take() {
                found.push((pat, timestamps(packet.bytes()).pts));
            }
        }
    }
    let Some(&(first_offset, first_pts)) = found.first() else {
        return vec![Gop {
            offset: 0,
            ticks: 0,
        }];
    };
    let by_pts: Option<Vec<Gop>> = found
        .iter()
        .map(|&(offset, pts)| {
            let ticks = pts?.checked_sub(first_pts?)?;
            Some(Gop { offset, ticks })
        })
        .collect();
    let ascending = |gops: &[Gop]| {
        gops.windows(2).all(|pair| pair[0].ticks < pair[1].ticks)
            && gops.last().is_some_and(|last| last.ticks < loop_ticks)
    };
    match by_pts {
        Some(gops) if ascending(&gops) => gops,
        _ => {
            let by_bytes: Vec<Gop> = found
                .iter()
                .map(|&(offset, _)| {
                    let share = u128::from(offset - first_offset) * u128::from(loop_ticks);
                    let ticks = share / u128::from(loop_len.max(1));
                    Gop {
                        offset,
                        ticks: u64::try_from(ticks).unwrap_or(u64::MAX),
                    }
                })
                .collect();
            if ascending(&by_bytes) {
                by_bytes
            } else {
                vec![Gop {
                    offset: first_offset,
                    ticks: 0,
                }]
            }
        }
    }
}

/// 90 kHz ticks in `duration`, rounded down.
fn duration_ticks(duration: Duration) -> u64 {
    let ticks = duration.as_micros() * u128::from(TICKS_PER_SECOND) / 1_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// `ticks` as seconds with six decimals (rounded to the microsecond), as `#EXTINF`
/// writes them.
pub(crate) fn seconds_text(ticks: u64) -> String {
    let ticks_per_second = u128::from(TICKS_PER_SECOND);
    let micros = (u128::from(ticks) * 1_000_000 + ticks_per_second / 2) / ticks_per_second;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The segment numbers a playlist lists: `first..end`; `first` is its media sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub first: u64,
    pub end: u64,
}

impl Window {
    /// Whether segment `number` is listed.
    pub fn contains(self, number: u64) -> bool {
        (self.first..self.end).contains(&number)
    }
}

/// The instants a session's window depends on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Moment {
    /// When the channel's timeline started (its first session).
    pub origin: Instant,
    /// When this session was handed out: the zero of its fault times.
    pub started: Instant,
    /// Now.
    pub now: Instant,
}

/// The window a session lists at `moment.now`.
///
/// At `t` after the channel's origin, the engine holds `prebuffer + t` of media
/// (as in the MPEG-TS mode); every complete segment of that is listed, the newest
/// [`WINDOW_SEGMENTS`] of them. Then the faults, their times counted from the
/// session's start: `playlist_stall_after` freezes the clock; after
/// `sequence_reset_after` the timeline restarts (numbering from 0); after
/// `sequence_jump_after` the numbers (and the media) leap `sequence_jump_by` segments
/// ahead, unless a later reset undid that; `no_data` lists nothing.
pub(crate) fn window(
    segmenter: &Segmenter,
    faults: &Faults,
    prebuffer: Duration,
    moment: Moment,
) -> Window {
    if faults.no_data {
        return Window { first: 0, end: 0 };
    }
    let now = match faults.playlist_stall_after {
        Some(after) => moment.now.min(moment.started + after),
        None => moment.now,
    };
    let in_session = now.saturating_duration_since(moment.started);
    let reset = faults
        .sequence_reset_after
        .filter(|&after| in_session >= after);
    let live = match reset {
        Some(after) => in_session - after,
        None => now.saturating_duration_since(moment.origin),
    };
    let end = segmenter.complete_segments(prebuffer + live);
    let first = end.saturating_sub(WINDOW_SEGMENTS);
    let jump = faults.sequence_jump_by.map_or(0, |by| {
        let after = faults.sequence_jump_after.unwrap_or_default();
        let jumped = in_session >= after && reset.is_none_or(|reset| after >= reset);
        if jumped {
            by
        } else {
            0
        }
    });
    Window {
        first: first + jump,
        end: end + jump,
    }
}

/// The playlist text of `window` for `session`, segment URLs under `base`.
pub(crate) fn render(segmenter: &Segmenter, window: Window, base: &str, session: &str) -> String {
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n",
        segmenter.target_duration_secs(),
        window.first
    );
    for number in window.first..window.end {
        let duration = seconds_text(segmenter.segment(number).duration_ticks);
        text.push_str(&format!(
            "#EXTINF:{duration},\n{base}/ace/c/{session}/{number}.ts\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use acemux_core::ts::Packet;

    use super::*;

    const TWO_SECONDS: u64 = 2 * TICKS_PER_SECOND;

    fn builtin() -> Segmenter {
        Segmenter::new(&MediaLoop::builtin(), GOPS_PER_SEGMENT)
    }

    /// Whether a PES of a video stream starts in `packet`.
    fn starts_video_pes(packet: Packet<'_>) -> bool {
        packet.payload_unit_start()
            && matches!(packet.payload(), [0, 0, 1, id, ..] if (0xE0..=0xEF).contains(id))
    }

    /// Asserts that `bytes` open with a PAT, then tables only, then a video keyframe,
    /// and returns that keyframe's PTS.
    fn opening_keyframe_pts(bytes: &[u8]) -> u64 {
        let mut found = packets(bytes);
        assert!(found.next().expect("a packet").starts_pat(), "PAT first");
        let keyframe = found
            .find(|packet| starts_video_pes(*packet) || timestamps(packet.bytes()).pts.is_some())
            .expect("media follows");
        assert!(keyframe.starts_video_keyframe(), "a video keyframe first");
        timestamps(keyframe.bytes()).pts.expect("a PTS")
    }

    #[test]
    fn segments_open_with_pat_then_keyframe_and_last_exactly_one_gop() {
        let media = MediaLoop::builtin();
        let segmenter = builtin();
        let first = segmenter.segment(0);
        let first_pts = opening_keyframe_pts(&segmenter.bytes(&first));
        // Three loops: across two seams.
        for number in 0..12 {
            let segment = segmenter.segment(number);
            let next = segmenter.segment(number + 1);
            assert_eq!(segment.offset + segment.len, next.offset, "contiguous");
            assert_eq!(segment.duration_ticks, TWO_SECONDS, "segment {number}");
            assert_eq!(segment.start_ticks, number * TWO_SECONDS);
            assert_eq!(seconds_text(segment.duration_ticks), "2.000000");
            let bytes = segmenter.bytes(&segment);
            assert_eq!(bytes.len() as u64, segment.len);
            assert_eq!(bytes.len() % PACKET_LEN, 0);
            assert!(bytes == media.read(segment.offset, bytes.len()));
            let pts = opening_keyframe_pts(&bytes);
            assert_eq!(pts, first_pts + segment.start_ticks, "segment {number}");
        }
        // One loop is four segments of the loop's whole duration.
        let loop_ticks: u64 = (0..4).map(|n| segmenter.segment(n).duration_ticks).sum();
        assert_eq!(loop_ticks, media.loop_duration_ticks());
        assert_eq!(
            segmenter.segment(4).offset,
            media.loop_len_bytes() + first.offset
        );
        assert_eq!(segmenter.target_duration_secs(), 2);
    }

    #[test]
    fn segment_bytes_are_deterministic() {
        let (one, other) = (builtin(), builtin());
        for number in [0, 3, 4, 77, 1_000_003] {
            let segment = one.segment(number);
            assert_eq!(segment, other.segment(number));
            assert!(one.bytes(&segment) == other.bytes(&segment), "{number}");
        }
        // Same offset within the loop, different loop: only the stamps differ.
        let (a, b) = (one.segment(1), one.segment(5));
        assert_eq!(a.len, b.len);
        assert!(one.bytes(&a) != one.bytes(&b));
    }

    #[test]
    fn two_gops_per_segment_last_four_seconds() {
        let segmenter = Segmenter::new(&MediaLoop::builtin(), 2);
        for number in 0..6 {
            let segment = segmenter.segment(number);
            assert_eq!(segment.duration_ticks, 2 * TWO_SECONDS);
            opening_keyframe_pts(&segmenter.bytes(&segment));
        }
        assert_eq!(segmenter.target_duration_secs(), 4);
        assert_eq!(segmenter.complete_segments(Duration::from_millis(7_999)), 1);
        assert_eq!(segmenter.complete_segments(Duration::from_secs(8)), 2);
    }

    #[test]
    fn media_without_keyframes_is_cut_once_per_loop() {
        let mut bytes = crate::emulator::DEFAULT_MEDIA.to_vec();
        for packet in bytes.chunks_exact_mut(PACKET_LEN) {
            if packet[3] & 0x20 != 0 && packet[4] > 0 {
                packet[5] &= !0x40;
            }
        }
        let media = MediaLoop::new(Bytes::from(bytes)).expect("valid media");
        let segmenter = Segmenter::new(&media, 1);
        let segment = segmenter.segment(3);
        assert_eq!(segment.duration_ticks, media.loop_duration_ticks());
        assert_eq!(segment.offset, 3 * media.loop_len_bytes());
        assert_eq!(segmenter.target_duration_secs(), 8);
    }

    #[test]
    fn complete_segments_count_whole_gops_held() {
        let segmenter = builtin();
        let at = |millis| segmenter.complete_segments(Duration::from_millis(millis));
        assert_eq!(at(0), 0);
        assert_eq!(at(1_999), 0);
        assert_eq!(at(2_000), 1);
        assert_eq!(at(7_999), 3);
        assert_eq!(at(8_000), 4);
        assert_eq!(at(10_000), 5);
        assert_eq!(at(100_001), 50);
    }

    #[test]
    fn seconds_are_written_to_the_microsecond() {
        assert_eq!(seconds_text(0), "0.000000");
        assert_eq!(seconds_text(TWO_SECONDS), "2.000000");
        assert_eq!(seconds_text(3_003), "0.033367");
        assert_eq!(seconds_text(1), "0.000011");
        assert_eq!(seconds_text(90 * TICKS_PER_SECOND + 45), "90.000500");
    }

    const PREBUFFER: Duration = Duration::from_secs(2);

    /// The window at `millis` after the session started, which is `offset_millis`
    /// after the channel's origin.
    fn window_at(faults: &Faults, offset_millis: u64, millis: u64) -> Window {
        let origin = Instant::now();
        let started = origin + Duration::from_millis(offset_millis);
        let moment = Moment {
            origin,
            started,
            now: started + Duration::from_millis(millis),
        };
        window(&builtin(), faults, PREBUFFER, moment)
    }

    fn w(first: u64, end: u64) -> Window {
        Window { first, end }
    }

    #[test]
    fn the_window_slides_with_the_channel_timeline() {
        let healthy = Faults::default();
        assert_eq!(window_at(&healthy, 0, 0), w(0, 1));
        assert_eq!(window_at(&healthy, 0, 1_999), w(0, 1));
        assert_eq!(window_at(&healthy, 0, 2_000), w(0, 2));
        assert_eq!(window_at(&healthy, 0, 8_000), w(0, 5));
        assert_eq!(window_at(&healthy, 0, 10_000), w(1, 6));
        assert_eq!(window_at(&healthy, 0, 100_000), w(46, 51));
        // A later session of the channel sees the same window at the same time.
        assert_eq!(window_at(&healthy, 60_000, 40_000), w(46, 51));
        assert!(w(1, 6).contains(1) && w(1, 6).contains(5));
        assert!(!w(1, 6).contains(0) && !w(1, 6).contains(6));
    }

    #[test]
    fn a_stalled_playlist_stops_advancing() {
        let faults = Faults {
            playlist_stall_after: Some(Duration::from_secs(4)),
            ..Faults::default()
        };
        assert_eq!(window_at(&faults, 0, 3_999), w(0, 2));
        assert_eq!(window_at(&faults, 0, 4_000), w(0, 3));
        assert_eq!(window_at(&faults, 0, 600_000), w(0, 3));
        // Counted from the session's start, on the channel's timeline.
        assert_eq!(window_at(&faults, 10_000, 600_000), w(3, 8));
    }

    #[test]
    fn the_sequence_jumps_forward_once() {
        let faults = Faults {
            sequence_jump_after: Some(Duration::from_secs(6)),
            sequence_jump_by: Some(20),
            ..Faults::default()
        };
        assert_eq!(window_at(&faults, 0, 5_999), w(0, 3));
        assert_eq!(window_at(&faults, 0, 6_000), w(20, 24));
        assert_eq!(window_at(&faults, 0, 20_000), w(26, 31));
        // Without a time, at once.
        let at_once = Faults {
            sequence_jump_by: Some(3),
            ..Faults::default()
        };
        assert_eq!(window_at(&at_once, 0, 0), w(3, 4));
        // The time alone does nothing.
        let no_jump = Faults {
            sequence_jump_after: Some(Duration::from_secs(1)),
            ..Faults::default()
        };
        assert_eq!(window_at(&no_jump, 0, 20_000), w(6, 11));
    }

    #[test]
    fn the_sequence_resets_to_zero() {
        let faults = Faults {
            sequence_reset_after: Some(Duration::from_secs(10)),
            ..Faults::default()
        };
        assert_eq!(window_at(&faults, 0, 9_999), w(0, 5));
        assert_eq!(window_at(&faults, 0, 10_000), w(0, 1));
        assert_eq!(window_at(&faults, 0, 22_000), w(2, 7));
        // A reset undoes an earlier jump; a later jump applies after the reset.
        let mut both = Faults {
            sequence_jump_after: Some(Duration::from_secs(4)),
            sequence_jump_by: Some(100),
            ..faults
        };
        assert_eq!(window_at(&both, 0, 5_000), w(100, 103));
        assert_eq!(window_at(&both, 0, 10_000), w(0, 1));
        both.sequence_jump_after = Some(Duration::from_secs(12));
        assert_eq!(window_at(&both, 0, 11_999), w(0, 1));
        assert_eq!(window_at(&both, 0, 12_000), w(100, 102));
    }

    #[test]
    fn no_data_lists_nothing_forever() {
        let faults = Faults {
            no_data: true,
            ..Faults::default()
        };
        assert_eq!(window_at(&faults, 0, 0), w(0, 0));
        assert_eq!(window_at(&faults, 0, 600_000), w(0, 0));
        let text = render(&builtin(), w(0, 0), "http://h", "s");
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        );
    }

    #[test]
    fn the_playlist_lists_the_window() {
        let text = render(&builtin(), w(7, 9), "http://engine:6878", "abc");
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXTINF:2.000000,\nhttp://engine:6878/ace/c/abc/7.ts\n\
             #EXTINF:2.000000,\nhttp://engine:6878/ace/c/abc/8.ts\n"
        );
    }
}
