//! The served window, its sequence numbers and target duration, the caps, readiness,
//! the end, and the playlist text.

use super::*;
use crate::hls::ServedSegment;

/// Polls once per new upstream segment, from `from` up to `to` (exclusive), answering
/// every fetch; the snapshot after each.
fn grow(
    h: &mut Harness,
    from: u64,
    to: u64,
    edit: impl Fn(&mut UpstreamPlaylist),
) -> Vec<HlsSnapshot> {
    let mut snapshots = Vec::new();
    for newest in from..to {
        let mut playlist = live(newest.saturating_sub(4), newest.min(4) + 1);
        edit(&mut playlist);
        h.poll(playlist);
        h.answer_all();
        snapshots.push(h.snapshot());
    }
    snapshots
}

fn seqs(segments: &[ServedSegment]) -> Vec<u64> {
    segments.iter().map(|s| s.seq).collect()
}

#[test]
fn window_lists_the_newest_segments() {
    let h = Harness::playing(
        |c| {
            c.window_segments = 3;
            c.start_segments = 5;
        },
        0,
        5,
    );
    let snapshot = h.snapshot();
    assert_eq!(seqs(&snapshot.segments), vec![2, 3, 4]);
    assert_eq!(seqs(&snapshot.behind), vec![0, 1]);
    assert_eq!(snapshot.media_sequence, 2);
}

#[test]
fn media_and_discontinuity_sequences_never_go_backwards_as_segments_slide() {
    let mut h = Harness::playing(|c| c.window_segments = 2, 0, 1);
    // Upstream marks segments 2 and 3; served seqs equal upstream numbers here.
    let snapshots = grow(&mut h, 1, 9, |playlist| {
        for (n, segment) in (playlist.media_sequence..).zip(&mut playlist.segments) {
            segment.discontinuity = n == 2 || n == 3;
        }
    });
    let mut previous = (0, 0);
    for snapshot in snapshots {
        let newest = snapshot.segments.last().expect("something served").seq;
        let media_sequence = newest.saturating_sub(1);
        let slid_out = [2, 3].iter().filter(|&&d| d < media_sequence).count() as u64;
        assert_eq!(snapshot.media_sequence, media_sequence);
        assert_eq!(snapshot.discontinuity_sequence, slid_out);
        let now = (snapshot.media_sequence, snapshot.discontinuity_sequence);
        assert!(now >= previous, "{now:?} after {previous:?}");
        previous = now;
    }
    assert_eq!(previous, (7, 2));
}

#[test]
fn target_duration_is_the_ceiling_of_the_longest_extinf_in_the_window() {
    let mut h = Harness::with_config(|c| {
        c.window_segments = 2;
        c.start_segments = 1;
    });
    assert_eq!(h.snapshot().target_duration_s, 1, "at least 1 when empty");
    h.open();
    let durations = [2_000_000, 4_000_001, 3_500_000, 1_000_000, 999_999];
    let mut targets = Vec::new();
    for (n, duration_us) in (0..).zip(durations) {
        let mut playlist = live(n, 1);
        playlist.segments[0].duration_us = duration_us;
        playlist.target_duration_s = 5;
        if n == 0 {
            h.playlist(playlist);
        } else {
            h.poll(playlist);
        }
        h.answer_all();
        targets.push(h.snapshot().target_duration_s);
    }
    assert_eq!(targets, vec![2, 5, 5, 4, 1]);
}

#[test]
fn endlist_once_upstream_ended_and_everything_is_served() {
    let mut h = Harness::new();
    h.open();
    let mut playlist = live(0, 2);
    playlist.ended = true;
    h.playlist(playlist);
    assert!(!h.segment(0).contains(&Output::Ended));
    assert!(!h.snapshot().ended, "segment 1 is not in yet");
    assert_eq!(
        h.segment(1),
        vec![segment_ready(1), Output::Ready, Output::Ended]
    );
    let snapshot = h.snapshot();
    assert!(snapshot.ended);
    assert!(snapshot
        .render(|seq| format!("{seq}.ts"))
        .ends_with("1.ts\n#EXT-X-ENDLIST\n"));
}

#[test]
fn ready_is_emitted_once_when_ready_segments_are_held() {
    let mut h = Harness::playing(|_| {}, 0, 2);
    assert_eq!(h.count(|o| *o == Output::Ready), 0);
    assert!(!h.snapshot().ready);
    h.poll(live(0, 4));
    assert_eq!(h.segment(2), vec![segment_ready(2), Output::Ready]);
    assert!(h.snapshot().ready);
    h.answer_all();
    h.close();
    h.open();
    h.playlist(live(0, 4));
    h.answer_all();
    assert_eq!(h.count(|o| *o == Output::Ready), 1);
}

#[test]
fn held_segments_are_capped_by_count() {
    let mut h = Harness::playing(
        |c| {
            c.max_segments = 4;
            c.window_segments = 3;
        },
        0,
        3,
    );
    grow(&mut h, 3, 10, |_| {});
    let snapshot = h.snapshot();
    assert_eq!(seqs(&snapshot.behind), vec![6]);
    assert_eq!(seqs(&snapshot.segments), vec![7, 8, 9]);
    assert_eq!(snapshot.segment(5), None);
    assert_eq!(h.session().stats().held_segments, 4);
}

#[test]
fn held_segments_are_capped_by_bytes_but_the_newest_stays() {
    let size = body(0).len();
    let h = Harness::playing(|c| c.max_buffer_bytes = 2 * size + 1, 0, 3);
    assert_eq!(h.session().stats().held_bytes, 2 * size);
    assert_eq!(seqs(&h.snapshot().segments), vec![1, 2]);

    let mut h = Harness::playing(|c| c.max_buffer_bytes = 1, 0, 3);
    assert_eq!(seqs(&h.snapshot().segments), vec![2]);
    h.poll(live(1, 3));
    h.answer_all();
    assert_eq!(seqs(&h.snapshot().segments), vec![3]);
    assert_eq!(h.snapshot().media_sequence, 3);
}

#[test]
fn segments_behind_the_window_stay_fetchable() {
    let h = Harness::playing(
        |c| {
            c.window_segments = 2;
            c.start_segments = 5;
        },
        0,
        5,
    );
    let snapshot = h.snapshot();
    assert_eq!(snapshot.media_sequence, 3);
    let old = snapshot.segment(0).expect("held behind the window");
    assert_eq!(old.body, body(0).into());
    assert_eq!(
        snapshot.segment(4).map(|s| s.body.clone()),
        Some(body(4).into())
    );
    assert_eq!(snapshot.segment(5), None);
}

#[test]
fn render_writes_the_exact_playlist() {
    let segment = |seq, duration_us, discontinuity| ServedSegment {
        seq,
        duration_us,
        discontinuity,
        body: Bytes::from_static(b"ts").into(),
    };
    let snapshot = HlsSnapshot {
        target_duration_s: 3,
        media_sequence: 7,
        discontinuity_sequence: 1,
        ended: true,
        ready: true,
        segments: vec![
            segment(7, 2_000_000, false),
            segment(8, 2_500_001, true),
            segment(9, 40_000, false),
        ],
        behind: vec![segment(6, 2_000_000, true)],
    };
    let text = snapshot.render(|seq| format!("/ace/hls/abc/{seq}.ts?token=x"));
    assert_eq!(
        text,
        "#EXTM3U\n\
         #EXT-X-VERSION:3\n\
         #EXT-X-TARGETDURATION:3\n\
         #EXT-X-MEDIA-SEQUENCE:7\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:1\n\
         #EXTINF:2.000000,\n\
         /ace/hls/abc/7.ts?token=x\n\
         #EXT-X-DISCONTINUITY\n\
         #EXTINF:2.500001,\n\
         /ace/hls/abc/8.ts?token=x\n\
         #EXTINF:0.040000,\n\
         /ace/hls/abc/9.ts?token=x\n\
         #EXT-X-ENDLIST\n"
    );
}

#[test]
fn render_of_a_live_session_has_no_endlist() {
    let h = Harness::playing(|c| c.window_segments = 2, 0, 3);
    assert_eq!(
        h.snapshot().render(|seq| format!("{seq}.ts")),
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXTINF:2.000000,\n1.ts\n#EXTINF:2.000000,\n2.ts\n"
    );
}

#[test]
fn a_session_numbered_from_a_first_sequence_continues_above_it() {
    let first = crate::hls::first_sequence(Instant::from_micros(1_700_000_000_000_000));
    assert_eq!(first, 17_000_000_000, "tenths of a second since the epoch");
    let mut h = Harness::playing(
        |c| {
            c.window_segments = 2;
            c.first_seq = first;
        },
        0,
        1,
    );
    // Served seqs are upstream numbers plus `first` here.
    let snapshots = grow(&mut h, 1, 5, |playlist| {
        for (n, segment) in (playlist.media_sequence..).zip(&mut playlist.segments) {
            segment.discontinuity = n == 0 || n == 3;
        }
    });
    let last = snapshots.last().expect("grown");
    assert_eq!(seqs(&last.segments), vec![first + 3, first + 4]);
    assert_eq!(last.media_sequence, first + 3);
    // The first segment separates from nothing: only upstream 3 counts, still listed.
    assert!(!last.behind[0].discontinuity && last.behind[0].seq == first);
    assert_eq!(last.discontinuity_sequence, first);
    // A later start of the same channel numbers above everything this one served.
    let later = crate::hls::first_sequence(Instant::from_micros(1_700_000_001_000_000));
    assert!(later > first + 4);
}
