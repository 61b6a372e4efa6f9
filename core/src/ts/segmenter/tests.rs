//! The segmenter on a toy program (PAT, PMT, H.264 video, audio): cuts, bounds,
//! inserted tables, discontinuities, and the property that nothing is lost or
//! reordered.

use proptest::prelude::*;

use super::*;
use crate::ts::restamp::write_timestamp;
use crate::ts::{PAT_PID, SYNC_BYTE};

const PMT: u16 = 0x1000;
const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;
/// 25 frames per second.
const FRAME: u64 = 3600;

/// One packet of the toy stream, with what the test knows of it.
#[derive(Clone, Debug)]
struct Sent {
    bytes: [u8; PACKET_LEN],
    /// The decode timestamp of the video frame it starts.
    video_dts: Option<u64>,
    keyframe: bool,
}

fn header(pid: u16, start: bool, cc: u8) -> [u8; PACKET_LEN] {
    let mut packet = [0xFFu8; PACKET_LEN];
    packet[0] = SYNC_BYTE;
    packet[1] = (pid >> 8) as u8 & 0x1F | if start { 0x40 } else { 0 };
    packet[2] = pid as u8;
    packet[3] = 0x10 | (cc & 0x0F);
    packet
}

fn pat(cc: u8) -> [u8; PACKET_LEN] {
    let mut packet = header(PAT_PID, true, cc);
    let section = [
        0x00,
        0x00,
        0xB0,
        13,
        0x00,
        0x01,
        0xC1,
        0x00,
        0x00,
        0x00,
        0x01,
        0xE0 | (PMT >> 8) as u8,
        PMT as u8,
        1,
        2,
        3,
        4,
    ];
    packet[4..4 + section.len()].copy_from_slice(&section);
    packet
}

fn pmt(cc: u8) -> [u8; PACKET_LEN] {
    let mut packet = header(PMT, true, cc);
    let section = [
        0x00, 0x02, 0xB0, 23, 0x00, 0x01, 0xC1, 0x00, 0x00, 0xE1, 0x00, 0xF0, 0x00, 0x1B, 0xE1,
        0x00, 0xF0, 0x00, 0x0F, 0xE1, 0x01, 0xF0, 0x00, 1, 2, 3, 4,
    ];
    packet[4..4 + section.len()].copy_from_slice(&section);
    packet
}

/// A video PES start: flagged random-access when `flagged`, its picture an IDR when
/// `idr`.
fn video(cc: u8, dts: u64, flagged: bool, idr: bool) -> [u8; PACKET_LEN] {
    let mut packet = header(VIDEO, true, cc);
    let mut at = 4;
    if flagged {
        packet[3] |= 0x20;
        packet[4] = 1;
        packet[5] = 0x40;
        at = 6;
    }
    packet[at..at + 9].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0xC0, 10]);
    packet[at + 9] = 0x30;
    write_timestamp(&mut packet[at + 9..at + 14], dts + FRAME);
    packet[at + 14] = 0x10;
    write_timestamp(&mut packet[at + 14..at + 19], dts);
    let nal: &[u8] = if idr {
        &[
            0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65, 0x88,
        ]
    } else {
        &[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x41, 0x9A]
    };
    packet[at + 19..at + 19 + nal.len()].copy_from_slice(nal);
    packet
}

fn audio(cc: u8, pts: u64) -> [u8; PACKET_LEN] {
    let mut packet = header(AUDIO, true, cc);
    packet[4..13].copy_from_slice(&[0, 0, 1, 0xC0, 0, 0, 0x80, 0x80, 5]);
    packet[13] = 0x20;
    write_timestamp(&mut packet[13..18], pts);
    packet
}

/// What the toy stream does next.
#[derive(Clone, Debug)]
enum Event {
    /// A video frame (a keyframe, or a dependent picture flagged random-access by a
    /// sloppy muxer), its continuation packets, maybe an audio frame.
    Frame {
        keyframe: bool,
        flagged_dependent: bool,
        continuation: u8,
        audio: bool,
    },
    /// PAT and PMT again.
    Tables,
    /// The timestamps jump (seconds, may be negative).
    Jump(i64),
    /// A new playback starts.
    NewPlayback,
}

#[derive(Default)]
struct Stream {
    dts: u64,
    cc: u8,
    sent: Vec<Sent>,
}

impl Stream {
    fn cc(&mut self) -> u8 {
        // Counters glitch freely: they must change nothing.
        self.cc = self.cc.wrapping_add(3);
        self.cc & 0x0F
    }

    fn push(&mut self, bytes: [u8; PACKET_LEN], video_dts: Option<u64>, keyframe: bool) {
        self.sent.push(Sent {
            bytes,
            video_dts,
            keyframe,
        });
    }

    fn frame(
        &mut self,
        keyframe: bool,
        flagged_dependent: bool,
        continuation: u8,
        with_audio: bool,
    ) {
        let cc = self.cc();
        let dts = self.dts;
        self.push(
            video(cc, dts, keyframe || flagged_dependent, keyframe),
            Some(dts),
            keyframe,
        );
        for _ in 0..continuation {
            let cc = self.cc();
            self.push(header(VIDEO, false, cc), None, false);
        }
        if with_audio {
            let cc = self.cc();
            self.push(audio(cc, dts + 2 * FRAME), None, false);
        }
        self.dts = (self.dts + FRAME) % TIMESTAMP_MODULUS;
    }

    fn tables(&mut self) {
        let cc = self.cc();
        self.push(pat(cc), None, false);
        let cc = self.cc();
        self.push(pmt(cc), None, false);
    }
}

fn config() -> SegmenterConfig {
    SegmenterConfig::with_target(Duration::from_secs(2))
}

fn all(segmenter: &mut Segmenter) -> Vec<CutSegment> {
    std::iter::from_fn(|| segmenter.poll_segment()).collect()
}

fn feed(segmenter: &mut Segmenter, sent: &[Sent]) {
    for (index, packet) in sent.iter().enumerate() {
        let now = Instant::from_micros(index as u64 * 1000);
        segmenter.push(now, Bytes::copy_from_slice(&packet.bytes));
    }
}

fn input_packets(segment: &CutSegment) -> Vec<[u8; PACKET_LEN]> {
    segment.body.to_bytes()[segment.inserted_packets * PACKET_LEN..]
        .chunks_exact(PACKET_LEN)
        .map(|chunk| chunk.try_into().expect("188 bytes"))
        .collect()
}

/// A regular stream: tables, then `frames` frames with a keyframe every `gop`.
fn regular(frames: u64, gop: u64) -> Stream {
    let mut stream = Stream {
        dts: 10_000_000,
        ..Stream::default()
    };
    stream.tables();
    for frame in 0..frames {
        if frame % 25 == 0 && frame > 0 {
            stream.tables();
        }
        stream.frame(frame % gop == 0, false, 2, frame % 2 == 0);
    }
    stream
}

#[test]
fn one_second_gops_make_two_second_segments_that_start_with_tables_and_a_keyframe() {
    let stream = regular(250, 25);
    let mut segmenter = Segmenter::new(config());
    feed(&mut segmenter, &stream.sent);
    segmenter.discontinuity(Instant::from_micros(100 * 1_000_000));
    let segments = all(&mut segmenter);
    assert_eq!(segments.len(), 5, "{segments:?}");
    for segment in &segments {
        assert_eq!(segment.duration_us, 2_000_000);
        assert!(segment.random_access);
        assert!(!segment.discontinuity);
        assert_eq!(segment.inserted_packets, 2);
        let bytes = segment.body.to_bytes();
        let first = Packet::new(&bytes[..PACKET_LEN]).expect("packet");
        assert_eq!(first.pid(), PAT_PID);
        let second = Packet::new(&bytes[PACKET_LEN..2 * PACKET_LEN]).expect("packet");
        assert_eq!(second.pid(), PMT);
        let third = Packet::new(&bytes[2 * PACKET_LEN..3 * PACKET_LEN]).expect("packet");
        assert!(third.pid() == PAT_PID || third.starts_video_keyframe());
    }
    let stats = segmenter.stats();
    assert_eq!(stats.at_random_access, 4);
    assert_eq!(stats.at_bound, 0);
}

#[test]
fn a_gop_just_short_of_the_target_cuts_at_every_keyframe() {
    // Keyframes every 1.92 s: waiting for the next would make 3.84 s segments.
    let stream = regular(240, 48);
    let mut segmenter = Segmenter::new(config());
    feed(&mut segmenter, &stream.sent);
    let segments = all(&mut segmenter);
    assert!(segments.len() >= 3);
    // The first cut has no GOP measured yet: it waits for the target.
    assert_eq!(segments[0].duration_us, 3_840_000);
    for segment in &segments[1..] {
        assert_eq!(segment.duration_us, 1_920_000, "{segments:?}");
    }
}

#[test]
fn without_keyframes_segments_are_cut_at_the_bound() {
    let stream = regular(500, 1_000);
    let mut segmenter = Segmenter::new(config());
    feed(&mut segmenter, &stream.sent);
    let segments = all(&mut segmenter);
    assert_eq!(segments.len(), 3, "{segments:?}");
    for segment in &segments {
        assert!(segment.duration_us <= 6_000_000);
        assert!(segment.duration_us >= 5_900_000);
    }
    assert!(segments[0].random_access);
    assert!(!segments[1].random_access);
    assert_eq!(segmenter.stats().at_bound, 3);
}

#[test]
fn a_flagged_dependent_picture_is_no_cut() {
    let mut stream = Stream::default();
    stream.tables();
    for frame in 0..200u64 {
        stream.frame(frame == 0, frame % 25 == 0 && frame > 0, 1, false);
    }
    let mut segmenter = Segmenter::new(config());
    feed(&mut segmenter, &stream.sent);
    assert_eq!(segmenter.stats().refused_random_access, 7);
    assert_eq!(segmenter.stats().at_random_access, 0);
}

#[test]
fn an_unflagged_idr_is_a_random_access_point_too() {
    let mut stream = regular(200, 25);
    for packet in &mut stream.sent {
        if packet.keyframe {
            // The same picture without the adaptation field: the muxer sets no flag.
            let flagged = packet.bytes;
            let mut bare = header(VIDEO, true, flagged[3] & 0x0F);
            bare[4..PACKET_LEN - 2].copy_from_slice(&flagged[6..]);
            packet.bytes = bare;
        }
    }
    let mut segmenter = Segmenter::new(config());
    feed(&mut segmenter, &stream.sent);
    let segments = all(&mut segmenter);
    assert_eq!(segments.len(), 3, "{segments:?}");
    assert!(segments.iter().all(|segment| segment.random_access));
    assert!(segments
        .iter()
        .all(|segment| segment.duration_us == 2_000_000));
    assert_eq!(segmenter.stats().unflagged_random_access, 8);
}

#[test]
fn jumps_and_new_playbacks_are_discontinuities_counter_glitches_are_not() {
    let mut stream = regular(100, 25);
    let mut segmenter = Segmenter::new(config());
    feed(&mut segmenter, &stream.sent);
    assert_eq!(all(&mut segmenter).len(), 1);
    // Timestamps back by a minute.
    stream.sent.clear();
    stream.dts -= 60 * 90_000;
    for frame in 0..60u64 {
        stream.frame(frame % 25 == 0, false, 1, false);
    }
    feed(&mut segmenter, &stream.sent);
    let segments = all(&mut segmenter);
    assert_eq!(segments.len(), 2, "{segments:?}");
    assert!(!segments[0].discontinuity);
    assert!(segments[1].discontinuity);
    assert_eq!(segmenter.stats().jumps, 1);
    // A new playback: the partial segment is flushed, the next marked.
    segmenter.discontinuity(Instant::from_micros(10 * 1_000_000));
    let flushed = all(&mut segmenter);
    assert_eq!(flushed.len(), 1);
    assert!(!flushed[0].discontinuity);
    stream.sent.clear();
    for frame in 0..60u64 {
        stream.frame(frame % 25 == 0, false, 1, false);
    }
    feed(&mut segmenter, &stream.sent);
    let segments = all(&mut segmenter);
    assert!(segments[0].discontinuity);
    assert!(segments[1..].iter().all(|segment| !segment.discontinuity));
}

#[test]
fn a_stream_without_timestamps_is_cut_by_bytes_at_the_observed_rate() {
    let mut segmenter = Segmenter::new(config());
    let packet = header(VIDEO, false, 0);
    // 100 packets per second for 20 s: 6 s hold 600 packets.
    for index in 0..2_000u64 {
        segmenter.push(
            Instant::from_micros(index * 10_000),
            Bytes::copy_from_slice(&packet),
        );
    }
    let segments = all(&mut segmenter);
    assert!(segments.len() >= 3, "{}", segments.len());
    for segment in &segments[1..] {
        assert!(
            segment.body.len() <= 601 * PACKET_LEN,
            "{}",
            segment.body.len()
        );
        assert!(segment.duration_us <= 6_100_000, "{}", segment.duration_us);
    }
}

#[test]
fn the_byte_bound_holds_whatever_the_timestamps() {
    let stream = regular(250, 1_000);
    let mut segmenter = Segmenter::new(SegmenterConfig {
        max_bytes: 40 * PACKET_LEN,
        ..config()
    });
    feed(&mut segmenter, &stream.sent);
    for segment in all(&mut segmenter) {
        assert!(segment.body.len() <= 40 * PACKET_LEN);
    }
}

#[test]
fn junk_between_packets_is_skipped_and_counted() {
    let stream = regular(100, 25);
    let mut bytes = Vec::new();
    for (index, packet) in stream.sent.iter().enumerate() {
        bytes.extend_from_slice(&packet.bytes);
        if index == 10 {
            bytes.extend_from_slice(b"junk");
        }
    }
    let mut segmenter = Segmenter::new(config());
    for chunk in bytes.chunks(1000) {
        segmenter.push(Instant::ZERO, Bytes::copy_from_slice(chunk));
    }
    assert_eq!(segmenter.stats().discarded_bytes, 4);
    assert_eq!(all(&mut segmenter).len(), 1);
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        20 => (any::<bool>(), 0u8..4, any::<bool>(), 0u8..30).prop_map(
            |(audio, continuation, flagged_dependent, key)| Event::Frame {
                keyframe: key < 2,
                flagged_dependent: flagged_dependent && key == 29,
                continuation,
                audio,
            }
        ),
        1 => Just(Event::Tables),
        1 => (-100i64..100).prop_map(Event::Jump),
        1 => Just(Event::NewPlayback),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every input packet is in exactly one segment, in order, after the tables the
    /// segmenter inserts; a segment ends without a random-access point only when none
    /// came within the bound; durations stay within it.
    #[test]
    fn nothing_is_lost_and_cuts_fall_on_random_access_points(
        events in proptest::collection::vec(event(), 1..600),
        target_ms in 500u64..4_000,
    ) {
        let config = SegmenterConfig::with_target(Duration::from_millis(target_ms));
        let target = ticks(config.target_duration);
        let mut segmenter = Segmenter::new(config.clone());
        // With the tables first, the codec is known and pictures are checked.
        let mut stream = Stream::default();
        stream.tables();
        let mut fed = 0;
        let mut segments = Vec::new();
        let mut boundaries = Vec::new();
        for event in events {
            match event {
                Event::Frame { keyframe, flagged_dependent, continuation, audio } => {
                    stream.frame(keyframe, flagged_dependent, continuation, audio);
                }
                Event::Tables => stream.tables(),
                Event::Jump(seconds) => {
                    let shifted = stream.dts as i64 + seconds * 90_000;
                    stream.dts = shifted.rem_euclid(TIMESTAMP_MODULUS as i64) as u64;
                }
                Event::NewPlayback => {
                    feed(&mut segmenter, &stream.sent[fed..]);
                    fed = stream.sent.len();
                    segmenter.discontinuity(Instant::ZERO);
                    boundaries.push(fed);
                }
            }
        }
        feed(&mut segmenter, &stream.sent[fed..]);
        segmenter.discontinuity(Instant::ZERO);
        segments.extend(all(&mut segmenter));

        // Nothing lost, reordered or duplicated, but the packets of a playback before
        // its first keyframe (dropped).
        let out: Vec<[u8; PACKET_LEN]> = segments.iter().flat_map(input_packets).collect();
        let mut kept = Vec::new();
        let mut next = 0;
        let mut leading = true;
        for (index, packet) in stream.sent.iter().enumerate() {
            if boundaries.contains(&index) {
                leading = true;
            }
            if next < out.len() && out[next] == packet.bytes {
                next += 1;
                kept.push(packet.clone());
                leading = false;
            } else {
                prop_assert!(leading && !packet.keyframe, "packet {} is missing", index);
            }
        }
        prop_assert_eq!(next, out.len());
        prop_assert_eq!(
            (stream.sent.len() - kept.len()) as u64,
            segmenter.stats().skipped_packets
        );
        let stream = Stream { sent: kept, ..Stream::default() };

        // Each segment's first input packet, and what the test knows of its packets.
        let mut at = 0;
        for (index, segment) in segments.iter().enumerate() {
            let count = segment.body.len() / PACKET_LEN - segment.inserted_packets;
            let packets = &stream.sent[at..at + count];
            at += count;
            prop_assert!(count > 0);
            prop_assert!(segment.duration_us >= 1);
            prop_assert_eq!(segment.random_access, packets[0].keyframe);
            // The inserted tables are the PAT, then the PMT.
            let inserted: Vec<u16> = segment.body.to_bytes()[..segment.inserted_packets * PACKET_LEN]
                .chunks_exact(PACKET_LEN)
                .filter_map(Packet::new)
                .map(|packet| packet.pid())
                .collect();
            prop_assert!(inserted.is_empty() || inserted == vec![PAT_PID, PMT], "{:?}", inserted);
            // Only the stream's very first segment can start before any PAT: with it.
            let starts_with_pat = packets[0].bytes[1] & 0x1F == 0 && packets[0].bytes[2] == 0;
            prop_assert!(inserted.len() == 2 || (index == 0 && starts_with_pat));
            // Within the bound when the timestamps say so (a jump inside the segment
            // cuts, so its timestamps run forward).
            let dts: Vec<u64> = packets.iter().filter_map(|p| p.video_dts).collect();
            if dts.len() >= 2 {
                prop_assert!(
                    segment.duration_us <= u64::try_from(config.max_duration.as_micros()).unwrap(),
                    "segment {} lasts {} us", index, segment.duration_us
                );
            }
            // A cut that is neither at a random-access point nor a discontinuity (nor the
            // end) comes at the bound: then no keyframe past the target was in it.
            let next = segments.get(index + 1);
            let forced = next.is_some_and(|next| !next.random_access && !next.discontinuity);
            if let (true, Some(&start)) = (forced, dts.first()) {
                for packet in &packets[1..] {
                    if let (true, Some(dts)) = (packet.keyframe, packet.video_dts) {
                        prop_assert!(forward(start, dts) < target, "a keyframe past the target in segment {}", index);
                    }
                }
            }
        }
    }
}

/// The toy stream's bytes in one piece.
fn joined(sent: &[Sent]) -> Vec<u8> {
    sent.iter().flat_map(|packet| packet.bytes).collect()
}

/// Cuts `bytes` pushed in chunks of `chunk_len` (the last one shorter), flushed at the
/// end; the segments and the chunks pushed.
fn cut_in_chunks(bytes: &[u8], chunk_len: usize) -> (Vec<CutSegment>, Vec<Bytes>) {
    let mut segmenter = Segmenter::new(config());
    let chunks: Vec<Bytes> = bytes
        .chunks(chunk_len)
        .map(Bytes::copy_from_slice)
        .collect();
    for chunk in &chunks {
        segmenter.push(Instant::ZERO, chunk.clone());
    }
    segmenter.discontinuity(Instant::ZERO);
    (all(&mut segmenter), chunks)
}

/// Whether `part` lies in the memory of `chunk`.
fn within(part: &Bytes, chunk: &Bytes) -> bool {
    let (start, at) = (chunk.as_ptr() as usize, part.as_ptr() as usize);
    at >= start && at + part.len() <= start + chunk.len()
}

#[test]
fn input_packets_are_slices_of_the_chunks_pushed_one_part_per_run() {
    let stream = regular(250, 25);
    let bytes = joined(&stream.sent);
    // 50 packets a chunk: a segment (2 s, about 190 packets) spans a few chunks.
    let (segments, chunks) = cut_in_chunks(&bytes, 50 * PACKET_LEN);
    assert_eq!(segments.len(), 5);
    let mut shared = 0;
    for segment in &segments {
        let parts = segment.body.parts();
        // The inserted tables are one part, then one part per chunk the media spans.
        assert_eq!(segment.inserted_packets, 2);
        assert_eq!(parts[0].len(), 2 * PACKET_LEN);
        let media = &parts[1..];
        let packets = segment.body.len() / PACKET_LEN - segment.inserted_packets;
        assert!(
            media.len() <= packets.div_ceil(50) + 1,
            "{} parts for {packets} packets",
            media.len()
        );
        for part in media {
            assert!(chunks.iter().any(|chunk| within(part, chunk)), "a copy");
            assert_eq!(part.len() % PACKET_LEN, 0);
            shared += part.len();
        }
    }
    let inserted: usize = segments.iter().map(|s| s.inserted_packets).sum();
    let skipped = segmenter_skipped(&bytes);
    assert_eq!(shared, bytes.len() - skipped * PACKET_LEN);
    assert!(inserted > 0);
}

/// Packets a segmenter drops before the stream's first random-access point.
fn segmenter_skipped(bytes: &[u8]) -> usize {
    let mut segmenter = Segmenter::new(config());
    segmenter.push(Instant::ZERO, Bytes::copy_from_slice(bytes));
    segmenter.discontinuity(Instant::ZERO);
    segmenter.stats().skipped_packets as usize
}

#[test]
fn one_chunk_makes_one_media_part_per_segment() {
    let stream = regular(250, 25);
    let bytes = joined(&stream.sent);
    let (segments, chunks) = cut_in_chunks(&bytes, bytes.len());
    assert_eq!(chunks.len(), 1);
    for segment in &segments {
        assert_eq!(segment.body.parts().len(), 2, "the tables, then one slice");
        assert!(within(&segment.body.parts()[1], &chunks[0]));
    }
}

#[test]
fn segments_cut_while_the_tables_stay_share_one_copy_of_them() {
    // Tables only at the start: every segment starts with the same PAT and PMT.
    let mut stream = Stream {
        dts: 10_000_000,
        ..Stream::default()
    };
    stream.tables();
    for frame in 0..250 {
        stream.frame(frame % 25 == 0, false, 2, false);
    }
    let (segments, _) = cut_in_chunks(&joined(&stream.sent), 7 * PACKET_LEN);
    assert!(segments.len() >= 4);
    let tables = &segments[1].body.parts()[0];
    assert_eq!(tables.len(), 2 * PACKET_LEN);
    for segment in &segments[1..] {
        assert_eq!(segment.body.parts()[0].as_ptr(), tables.as_ptr());
    }
}

#[test]
fn packets_straddling_chunks_are_cut_as_whole_packets() {
    let stream = regular(250, 25);
    let bytes = joined(&stream.sent);
    let (reference, _) = cut_in_chunks(&bytes, PACKET_LEN);
    // Chunks that cut packets anywhere, down to a byte at a time.
    for chunk_len in [1, 100, 187, 189, 1000, 4096, 7 * PACKET_LEN + 1] {
        let (segments, _) = cut_in_chunks(&bytes, chunk_len);
        assert_eq!(segments, reference, "chunks of {chunk_len} bytes");
        for segment in &segments {
            for part in segment.body.parts() {
                assert_eq!(part.len() % PACKET_LEN, 0, "chunks of {chunk_len} bytes");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// However the stream is chunked, the segments are the same bytes: the tables
    /// inserted, then the input packets, exactly as one packet per push cuts them.
    #[test]
    fn segment_bytes_do_not_depend_on_the_chunking(
        frames in 50u64..400,
        gop in 10u64..60,
        chunk_len in 1usize..20_000,
    ) {
        let stream = regular(frames, gop);
        let bytes = joined(&stream.sent);
        let (reference, _) = cut_in_chunks(&bytes, PACKET_LEN);
        let (segments, chunks) = cut_in_chunks(&bytes, chunk_len);
        prop_assert_eq!(&segments, &reference);
        for segment in &segments {
            let packets = segment.body.len() / PACKET_LEN - segment.inserted_packets;
            // A part per chunk spanned at most, not one per packet.
            prop_assert!(segment.body.parts().len() <= 1 + packets * PACKET_LEN / chunk_len + 2);
            if chunk_len % PACKET_LEN == 0 {
                let tables = usize::from(segment.inserted_packets > 0);
                for part in &segment.body.parts()[tables..] {
                    prop_assert!(chunks.iter().any(|chunk| within(part, chunk)));
                }
            }
        }
    }
}
