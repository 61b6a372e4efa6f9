//! When the playlist is polled and which segments are fetched, in what order.

use super::*;

fn with_target(mut playlist: UpstreamPlaylist, target_duration_s: u64) -> UpstreamPlaylist {
    playlist.target_duration_s = target_duration_s;
    playlist
}

fn backoff(reason: &str, retry_in: Duration) -> Output {
    Output::Backoff {
        reason: reason.into(),
        retry_in,
    }
}

#[test]
fn open_fetches_the_playlist_at_once() {
    let mut h = Harness::new();
    assert_eq!(h.deadline(), None);
    assert_eq!(h.open(), vec![fetch_playlist(1)]);
    assert_eq!(h.deadline(), None, "nothing to time while the fetch is out");
}

#[test]
fn polls_every_half_target_duration() {
    let mut h = Harness::new();
    h.open();
    h.playlist(with_target(live(0, 0), 4));
    assert_eq!(h.deadline(), Some(h.now() + secs(2)));
    assert_eq!(h.step(), vec![fetch_playlist(1)]);
    h.playlist(with_target(live(0, 0), 7));
    assert_eq!(h.deadline(), Some(h.now() + ms(3_500)));
}

#[test]
fn polls_no_faster_than_min_poll_interval() {
    let mut h = Harness::with_config(|c| c.poll_factor_permille = 100);
    h.open();
    h.playlist(with_target(live(0, 0), 1));
    assert_eq!(h.deadline(), Some(h.now() + ms(250)));
}

#[test]
fn polls_no_slower_than_max_poll_interval_whatever_the_target_duration() {
    let mut h = Harness::new();
    h.open();
    h.playlist(with_target(live(0, 0), crate::hls::MAX_TARGET_DURATION_S));
    assert_eq!(h.deadline(), Some(h.now() + secs(10)));
    let mut h = Harness::with_config(|c| c.max_poll_interval = ms(1));
    h.open();
    h.playlist(with_target(live(0, 0), 4));
    assert_eq!(h.deadline(), Some(h.now() + ms(250)), "the floor wins");
}

#[test]
fn never_polls_while_a_playlist_fetch_is_out() {
    let mut h = Harness::new();
    h.open();
    assert_eq!(h.advance(secs(120)), vec![]);
    assert_eq!(
        h.count(|o| matches!(o, Output::FetchPlaylist { .. })),
        1,
        "one fetch, still unanswered"
    );
}

#[test]
fn playlist_errors_back_off_doubling_up_to_the_maximum() {
    let mut h = Harness::new();
    h.open();
    for retry_in in [1, 2, 4, 8, 8] {
        assert_eq!(
            h.playlist_error("read timed out"),
            vec![backoff("read timed out", secs(retry_in))]
        );
        let failed_at = h.now();
        assert_eq!(h.step(), vec![fetch_playlist(1)]);
        assert_eq!(h.now(), failed_at + secs(retry_in));
    }
}

#[test]
fn backoff_starts_over_after_a_good_playlist() {
    let mut h = Harness::new();
    h.open();
    h.playlist_error("refused");
    h.step();
    assert_eq!(
        h.playlist_error("refused"),
        vec![backoff("refused", secs(2))]
    );
    h.step();
    h.playlist(live(0, 0));
    assert_eq!(h.deadline(), Some(h.now() + secs(1)), "the regular poll");
    h.step();
    assert_eq!(
        h.playlist_error("refused"),
        vec![backoff("refused", secs(1))]
    );
}

#[test]
fn invalid_playlist_backs_off_and_says_why() {
    let mut h = Harness::new();
    h.open();
    let outputs = h.playlist(with_target(live(0, 3), 0));
    assert_eq!(
        outputs,
        vec![backoff("invalid playlist: target duration is 0", secs(1))]
    );
    assert_eq!(h.count(|o| matches!(o, Output::FetchSegment { .. })), 0);
}

#[test]
fn first_playlist_starts_start_segments_before_the_live_edge() {
    let mut h = Harness::new();
    h.open();
    assert_eq!(
        h.playlist(live(10, 8)),
        vec![fetch_segment(1, 15), fetch_segment(1, 16)]
    );
    h.answer_all();
    assert_eq!(h.window_upstream(), vec![15, 16, 17]);
}

#[test]
fn every_new_segment_is_fetched_in_order_when_several_appear_at_once() {
    let mut h = Harness::playing(|_| {}, 0, 3);
    assert_eq!(
        h.poll(live(1, 6)),
        vec![fetch_segment(1, 3), fetch_segment(1, 4)]
    );
    h.answer_all();
    let fetched: Vec<u64> = h
        .inner
        .log
        .iter()
        .filter_map(|o| match o {
            Output::FetchSegment { upstream_seq, .. } => Some(*upstream_seq),
            _ => None,
        })
        .collect();
    assert_eq!(fetched, vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(h.window_upstream(), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn segment_fetches_in_flight_never_exceed_the_limit() {
    let mut h = Harness::with_config(|c| {
        c.max_concurrent_fetches = 3;
        c.start_segments = 10;
    });
    h.open();
    assert_eq!(
        h.playlist(live(0, 10)),
        vec![
            fetch_segment(1, 0),
            fetch_segment(1, 1),
            fetch_segment(1, 2)
        ]
    );
    assert_eq!(h.segment(1), vec![fetch_segment(1, 3)]);
    assert_eq!(
        h.segment(0),
        vec![segment_ready(0), segment_ready(1), fetch_segment(1, 4)]
    );
    assert_eq!(h.outstanding(), vec![2, 3, 4]);
}

#[test]
fn segments_fetched_out_of_order_are_served_in_upstream_order() {
    let mut h = Harness::new();
    h.open();
    h.playlist(live(0, 3));
    assert_eq!(h.segment(1), vec![fetch_segment(1, 2)]);
    assert_eq!(h.segment(2), vec![], "held until segment 0 is in");
    assert_eq!(
        h.segment(0),
        vec![
            segment_ready(0),
            segment_ready(1),
            segment_ready(2),
            Output::Ready
        ]
    );
    assert_eq!(h.window_upstream(), vec![0, 1, 2]);
}

#[test]
fn failed_segment_is_fetched_again_after_the_retry_delay() {
    let mut h = Harness::new();
    h.open();
    h.playlist(live(0, 1));
    let failed_at = h.now();
    assert_eq!(h.segment_error(0), vec![]);
    assert_eq!(h.step(), vec![fetch_segment(1, 0)]);
    assert_eq!(h.now(), failed_at + ms(500));
    assert_eq!(h.segment(0), vec![segment_ready(0)]);
}

#[test]
fn empty_segment_body_counts_as_a_failure() {
    let mut h = Harness::new();
    h.open();
    h.playlist(live(0, 1));
    assert_eq!(h.answer(0, Ok(Bytes::new())), vec![]);
    assert_eq!(h.step(), vec![fetch_segment(1, 0)]);
    assert_eq!(h.snapshot().segments, vec![]);
}

#[test]
fn polling_stops_once_upstream_ended() {
    let mut h = Harness::playing(|_| {}, 0, 2);
    let mut last = live(0, 3);
    last.ended = true;
    h.poll(last);
    h.answer_all();
    assert_eq!(h.deadline(), None);
    assert_eq!(h.advance(secs(60)), vec![]);
}

#[test]
fn media_sequence_at_the_end_of_the_numbers_is_taken_without_overflow() {
    let mut h = Harness::new();
    h.open();
    let first = u64::MAX - 2;
    let mut playlist = live(0, 2);
    playlist.media_sequence = first;
    let fetch = |upstream_seq, n| Output::FetchSegment {
        generation: 1,
        upstream_seq,
        url: segment(n).uri,
    };
    assert_eq!(
        h.playlist(playlist.clone()),
        vec![fetch(first, 0), fetch(first + 1, 1)]
    );
    playlist.segments.push(segment(2));
    assert_eq!(
        h.poll(playlist),
        vec![backoff(
            "invalid playlist: media sequence overflows",
            secs(1)
        )]
    );
}
