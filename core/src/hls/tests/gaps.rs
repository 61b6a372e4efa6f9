//! Missing media becomes a discontinuity, never a silent gap; generations keep late
//! answers out.

use super::*;

fn skipped(first_upstream_seq: u64, count: u64) -> Output {
    Output::Gap(Gap::Skipped {
        first_upstream_seq,
        count,
    })
}

#[test]
fn segment_failing_every_attempt_becomes_a_discontinuity_not_a_hole_in_served_seqs() {
    let mut h = Harness::new();
    h.open();
    h.playlist(live(0, 3));
    h.segment(0);
    for attempt in 1..=3 {
        assert!(h.outstanding().contains(&1), "attempt {attempt} is out");
        let outputs = h.segment_error(1);
        if attempt < 3 {
            assert!(!outputs.iter().any(|o| matches!(o, Output::Gap(_))));
            h.advance(ms(500));
        } else {
            assert!(outputs.contains(&Output::Gap(Gap::SegmentFailed {
                upstream_seq: 1,
                error: "connection reset".into(),
            })));
        }
    }
    h.answer_all();
    assert_eq!(h.window(), vec![(0, false), (1, true)]);
    assert_eq!(h.window_upstream(), vec![0, 2]);
}

#[test]
fn media_sequence_jump_forward_marks_a_discontinuity() {
    let mut h = Harness::playing(|_| {}, 0, 3);
    assert_eq!(
        h.poll(live(10, 3)),
        vec![skipped(3, 7), fetch_segment(1, 10), fetch_segment(1, 11)]
    );
    h.answer_all();
    assert_eq!(h.window_upstream(), vec![0, 1, 2, 10, 11, 12]);
    assert_eq!(
        h.window(),
        vec![
            (0, false),
            (1, false),
            (2, false),
            (3, true),
            (4, false),
            (5, false)
        ]
    );
}

#[test]
fn media_sequence_reset_marks_a_discontinuity_and_takes_the_new_numbering() {
    let mut h = Harness::playing(|_| {}, 100, 3);
    assert_eq!(
        h.poll(live(0, 2)),
        vec![
            Output::Gap(Gap::SequenceReset {
                previous: 100,
                media_sequence: 0
            }),
            fetch_segment(2, 0),
            fetch_segment(2, 1)
        ]
    );
    h.answer_all();
    assert_eq!(h.window_upstream(), vec![100, 101, 102, 0, 1]);
    assert_eq!(h.window()[3], (3, true));
    assert_eq!(
        h.poll(live(1, 2)),
        vec![fetch_segment(2, 2)],
        "new numbering"
    );
}

#[test]
fn upstream_discontinuity_tag_is_kept() {
    let mut h = Harness::playing(|_| {}, 0, 3);
    let mut next = live(1, 3);
    next.segments[2].discontinuity = true;
    h.poll(next);
    h.answer_all();
    assert_eq!(h.window_upstream(), vec![0, 1, 2, 3]);
    assert_eq!(h.window()[3], (3, true));
}

#[test]
fn reopen_after_close_marks_a_discontinuity() {
    let mut h = Harness::playing(|_| {}, 0, 3);
    assert_eq!(h.close(), vec![]);
    assert_eq!(h.open(), vec![fetch_playlist(3)]);
    h.playlist(live(1, 3));
    h.answer_all();
    assert_eq!(
        h.window_upstream(),
        vec![0, 1, 2, 1, 2, 3],
        "tracking starts over"
    );
    assert_eq!(h.window()[3], (3, true));
}

#[test]
fn open_while_open_reopens() {
    let mut h = Harness::playing(|_| {}, 0, 3);
    assert_eq!(h.open(), vec![fetch_playlist(3)]);
    h.playlist(live(5, 1));
    h.answer_all();
    assert_eq!(h.window()[3], (3, true));
}

#[test]
fn first_served_segment_is_never_a_discontinuity() {
    let mut h = Harness::new();
    h.open();
    h.close();
    h.open();
    let mut first = live(0, 1);
    first.segments[0].discontinuity = true;
    h.playlist(first);
    h.answer_all();
    assert_eq!(h.window(), vec![(0, false)]);
}

#[test]
fn close_stops_polling() {
    let mut h = Harness::playing(|_| {}, 0, 3);
    assert_eq!(h.close(), vec![]);
    assert_eq!(h.deadline(), None);
    assert_eq!(h.advance(secs(60)), vec![]);
}

#[test]
fn close_serves_what_is_fetched_and_drops_the_rest() {
    let mut h = Harness::playing(|_| {}, 0, 3);
    h.poll(live(1, 5));
    assert_eq!(h.segment(4), vec![fetch_segment(1, 5)]);
    assert_eq!(h.close(), vec![segment_ready(3)]);
    assert_eq!(h.window_upstream(), vec![0, 1, 2, 4]);
    assert_eq!(h.window()[3], (3, true), "segment 3 is missing");
}

#[test]
fn answers_of_an_old_generation_are_ignored() {
    let mut h = Harness::new();
    h.open();
    h.playlist(live(0, 3));
    h.close();
    h.open();
    for input in [
        Input::SegmentFetched {
            generation: 1,
            upstream_seq: 0,
            result: Ok(body(0)),
        },
        Input::PlaylistFetched {
            generation: 1,
            result: Ok(live(7, 3)),
        },
    ] {
        assert_eq!(h.input(input), vec![]);
    }
    assert_eq!(h.snapshot().segments, vec![]);
    assert_eq!(
        h.playlist(live(7, 1)),
        vec![fetch_segment(3, 7)],
        "the current generation's answer still counts"
    );
}

#[test]
fn unrequested_answers_are_ignored() {
    let mut h = Harness::playing(|_| {}, 0, 3);
    assert_eq!(h.playlist(live(10, 3)), vec![], "no playlist fetch is out");
    assert_eq!(h.segment(2), vec![], "segment 2 was served already");
    assert_eq!(h.segment(3), vec![], "segment 3 was never asked for");
}

#[test]
fn falling_behind_upstream_drops_the_oldest_unfetched_segments() {
    let mut h = Harness::with_config(|c| {
        c.max_segments = 4;
        c.max_concurrent_fetches = 1;
    });
    h.open();
    h.playlist(live(0, 3));
    h.step();
    assert_eq!(
        h.playlist(live(0, 10)),
        vec![skipped(3, 3), skipped(1, 1), skipped(2, 1), skipped(6, 1)]
    );
    h.answer_all();
    assert_eq!(h.window_upstream(), vec![0, 7, 8, 9]);
    assert_eq!(
        h.window(),
        vec![(0, false), (1, true), (2, false), (3, false)]
    );
}
