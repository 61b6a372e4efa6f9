//! Loop restamping on a toy program: seams, counters, wrap-around, bad input.

use super::*;
use proptest::prelude::*;

const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;

/// A packet of `pid` with counter `cc`, optionally carrying a PCR and/or a PES
/// header with a PTS (and DTS).
fn packet(pid: u16, cc: u8, pcr: Option<u64>, pes: Option<(u64, Option<u64>)>) -> Vec<u8> {
    let mut packet = vec![0xFFu8; PACKET_LEN];
    packet[0] = SYNC_BYTE;
    packet[1] = (pid >> 8) as u8 & 0x1F | if pes.is_some() { 0x40 } else { 0 };
    packet[2] = pid as u8;
    let mut at = 4;
    if let Some(pcr) = pcr {
        packet[3] = 0x30 | cc;
        packet[4] = 7;
        packet[5] = 0x10;
        write_clock_reference(&mut packet[6..12], pcr, 123);
        at = 12;
    } else {
        packet[3] = 0x10 | cc;
    }
    if let Some((pts, dts)) = pes {
        packet[at..at + 6].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0]);
        packet[at + 6] = 0x80;
        packet[at + 7] = if dts.is_some() { 0xC0 } else { 0x80 };
        packet[at + 8] = if dts.is_some() { 10 } else { 5 };
        packet[at + 9] = if dts.is_some() { 0x30 } else { 0x20 };
        write_timestamp(&mut packet[at + 9..at + 14], pts);
        if let Some(dts) = dts {
            packet[at + 14] = 0x10;
            write_timestamp(&mut packet[at + 14..at + 19], dts);
        }
    }
    packet
}

/// Two seconds of a toy program: video at 25 fps with one B-frame reorder and a
/// PCR on every frame, audio every 1800 ticks, each PES in one packet.
fn media() -> Vec<u8> {
    let mut out = Vec::new();
    let (mut video_cc, mut audio_cc) = (0u8, 5u8);
    let start = 126_000u64;
    for frame in 0..50u64 {
        let dts = start + frame * 3600;
        // Decode order I P B P B …: presentation is one frame later than decode.
        let pts = dts + 3600;
        out.extend(packet(
            VIDEO,
            video_cc,
            Some(dts - 900),
            Some((pts, Some(dts))),
        ));
        video_cc = (video_cc + 1) & 0x0F;
        out.extend(packet(VIDEO, video_cc, None, None));
        video_cc = (video_cc + 1) & 0x0F;
    }
    for frame in 0..100 {
        out.extend(packet(
            AUDIO,
            audio_cc,
            None,
            Some((start + frame * 1800, None)),
        ));
        audio_cc = (audio_cc + 1) & 0x0F;
    }
    out
}

fn looped(media: &[u8], restamper: &LoopRestamper, loops: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for loop_index in 0..loops {
        let mut copy = media.to_vec();
        for chunk in copy.chunks_exact_mut(PACKET_LEN) {
            let packet: &mut [u8; PACKET_LEN] = chunk.try_into().expect("188-byte chunk");
            restamper.restamp(packet, loop_index);
        }
        out.extend(copy);
    }
    out
}

fn each_packet(bytes: &[u8]) -> impl Iterator<Item = &[u8; PACKET_LEN]> {
    bytes
        .chunks_exact(PACKET_LEN)
        .map(|chunk| chunk.try_into().expect("188-byte chunk"))
}

#[test]
fn timestamp_fields_round_trip_with_marker_bits() {
    for value in [
        0,
        1,
        0x1_2345_6789 & (TIMESTAMP_MODULUS - 1),
        TIMESTAMP_MODULUS - 1,
    ] {
        let mut field = [0x30, 0, 0, 0, 0];
        write_timestamp(&mut field, value);
        assert_eq!(read_timestamp(&field), value);
        assert_eq!(field[0] & 0xF1, 0x31, "prefix kept, marker set");
        assert_eq!(field[2] & 1, 1);
        assert_eq!(field[4] & 1, 1);
    }
}

#[test]
fn clock_reference_round_trips_and_keeps_reserved_bits() {
    let mut field = [0, 0, 0, 0, 0x7E, 0];
    write_clock_reference(&mut field, TIMESTAMP_MODULUS - 3, 299);
    assert_eq!(read_clock_reference(&field), (TIMESTAMP_MODULUS - 3, 299));
    assert_eq!(field[4] & 0x7E, 0x7E);
}

#[test]
fn loop_duration_is_the_longest_stream_span_plus_one_frame() {
    let restamper = LoopRestamper::analyze(&media()).expect("valid media");
    let video = 50 * 3600;
    let audio = 100 * 1800;
    assert_eq!(restamper.stream_duration_ticks()[&VIDEO], video);
    assert_eq!(restamper.stream_duration_ticks()[&AUDIO], audio);
    assert_eq!(restamper.loop_duration_ticks(), video.max(audio));
    // 100 video packets advance the counter by 100 mod 16 = 4.
    assert_eq!(restamper.continuity_steps()[&VIDEO], 4);
    assert_eq!(restamper.continuity_steps()[&AUDIO], 4);
}

#[test]
fn first_loop_is_the_media_unchanged() {
    let media = media();
    let restamper = LoopRestamper::analyze(&media).expect("valid media");
    assert_eq!(looped(&media, &restamper, 1), media);
}

#[test]
fn timestamps_stay_monotonic_across_the_seams() {
    let media = media();
    let restamper = LoopRestamper::analyze(&media).expect("valid media");
    let out = looped(&media, &restamper, 4);
    let mut last_pcr = None;
    let mut last_dts: BTreeMap<u16, u64> = BTreeMap::new();
    for packet in each_packet(&out) {
        let found = timestamps(packet);
        if let Some((base, _)) = found.pcr {
            assert!(last_pcr.is_none_or(|last| base > last), "PCR went back");
            last_pcr = Some(base);
        }
        if let Some(pts) = found.pts {
            let decode = found.dts.unwrap_or(pts);
            let pid = pid(packet);
            if let Some(&last) = last_dts.get(&pid) {
                let step = if pid == VIDEO { 3600 } else { 1800 };
                assert_eq!(decode, last + step, "PID {pid:#x}: a gap or overlap");
            }
            last_dts.insert(pid, decode);
        }
    }
    assert_eq!(last_dts[&VIDEO], 126_000 + 49 * 3600 + 3 * 180_000);
}

#[test]
fn continuity_counters_continue_across_the_seams() {
    let media = media();
    let restamper = LoopRestamper::analyze(&media).expect("valid media");
    let out = looped(&media, &restamper, 20);
    let mut last: BTreeMap<u16, u8> = BTreeMap::new();
    for packet in each_packet(&out) {
        let counter = packet[3] & 0x0F;
        if let Some(previous) = last.insert(pid(packet), counter) {
            assert_eq!(counter, (previous + 1) & 0x0F);
        }
    }
}

#[test]
fn timestamps_wrap_modulo_two_to_the_33() {
    let media = media();
    let restamper = LoopRestamper::analyze(&media).expect("valid media");
    let first = each_packet(&media).next().expect("a packet");
    let original = timestamps(first);
    let duration = restamper.loop_duration_ticks();
    let loop_index = TIMESTAMP_MODULUS / duration + 1;
    let mut copy = *first;
    restamper.restamp(&mut copy, loop_index);
    let pts = original.pts.expect("the first packet has a PTS");
    let unwrapped = u128::from(pts) + u128::from(loop_index) * u128::from(duration);
    assert!(
        unwrapped > u128::from(TIMESTAMP_MODULUS),
        "the test must wrap"
    );
    let expected = (unwrapped % u128::from(TIMESTAMP_MODULUS)) as u64;
    assert_eq!(timestamps(&copy).pts, Some(expected));
    assert_eq!(timestamps(&copy).pcr.map(|pcr| pcr.1), Some(123));
}

#[test]
fn unusable_media_is_refused() {
    assert_eq!(LoopRestamper::analyze(&[]), Err(RestampError::Empty));
    assert_eq!(
        LoopRestamper::analyze(&[SYNC_BYTE; 100]),
        Err(RestampError::NotPacketAligned { len: 100 })
    );
    let mut bad = media();
    bad[PACKET_LEN] = 0;
    assert_eq!(
        LoopRestamper::analyze(&bad),
        Err(RestampError::BadSync { index: 1 })
    );
    let no_pes = packet(VIDEO, 0, Some(1), None);
    assert_eq!(
        LoopRestamper::analyze(&no_pes),
        Err(RestampError::NoTimestamps)
    );
    let wrap = [
        packet(VIDEO, 0, None, Some((10, None))),
        packet(VIDEO, 1, None, Some((TIMESTAMP_MODULUS - 10, None))),
    ]
    .concat();
    assert_eq!(
        LoopRestamper::analyze(&wrap),
        Err(RestampError::TimestampWrap { pid: VIDEO })
    );
}

proptest! {
    #[test]
    fn any_packet_restamps_without_panicking(
        mut bytes in proptest::collection::vec(any::<u8>(), PACKET_LEN),
        loop_index in any::<u64>(),
    ) {
        bytes[0] = SYNC_BYTE;
        let restamper = LoopRestamper::analyze(&media()).expect("valid media");
        let packet: &mut [u8; PACKET_LEN] = bytes.as_mut_slice().try_into().expect("188 bytes");
        let before = *packet;
        restamper.restamp(packet, loop_index);
        let _ = timestamps(packet);
        prop_assert_eq!(&packet[..3], &before[..3]);
    }
}
