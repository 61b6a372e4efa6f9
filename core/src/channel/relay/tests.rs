//! The relay's rules, one per test: one upstream fetch per playlist age and per
//! segment however many players ask, the owner's bytes unchanged, the bounds, the ages,
//! and the end.

use super::*;

const T0: Instant = Instant::from_micros(1_000_000_000);

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn relay() -> HlsRelay {
    HlsRelay::new(T0, RelayConfig::default())
}

fn drain(relay: &mut HlsRelay) -> Vec<RelayOutput> {
    std::iter::from_fn(|| relay.poll_output()).collect()
}

fn text() -> Bytes {
    Bytes::from_static(
        b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:170\n#EXTINF:2.0,\n/ace/hls/content_id/abc/170.ts\n",
    )
}

fn playlist(waiter: u64) -> RelayInput {
    RelayInput::Playlist {
        waiter: WaiterId(waiter),
    }
}

fn segment(waiter: u64, seq: u64) -> RelayInput {
    RelayInput::Segment {
        waiter: WaiterId(waiter),
        seq,
    }
}

fn answered_playlist(waiter: u64, result: Result<Bytes, RelayFailure>) -> RelayOutput {
    RelayOutput::Playlist {
        waiter: WaiterId(waiter),
        result,
    }
}

fn answered_segment(waiter: u64, result: Result<Bytes, RelayFailure>) -> RelayOutput {
    RelayOutput::Segment {
        waiter: WaiterId(waiter),
        result,
    }
}

#[test]
fn players_asking_together_cause_one_playlist_fetch_and_get_the_owners_text() {
    let mut relay = relay();
    relay.handle_input(T0, playlist(1));
    relay.handle_input(T0, playlist(2));
    assert_eq!(drain(&mut relay), vec![RelayOutput::FetchPlaylist]);
    relay.handle_input(
        T0 + ms(10),
        RelayInput::PlaylistFetched { result: Ok(text()) },
    );
    assert_eq!(
        drain(&mut relay),
        vec![
            answered_playlist(1, Ok(text())),
            answered_playlist(2, Ok(text()))
        ]
    );
}

#[test]
fn a_playlist_answers_from_memory_until_it_is_too_old() {
    let mut relay = relay();
    relay.handle_input(T0, playlist(1));
    drain(&mut relay);
    relay.handle_input(T0, RelayInput::PlaylistFetched { result: Ok(text()) });
    drain(&mut relay);
    relay.handle_input(T0 + ms(499), playlist(2));
    assert_eq!(drain(&mut relay), vec![answered_playlist(2, Ok(text()))]);
    relay.handle_input(T0 + ms(500), playlist(3));
    assert_eq!(drain(&mut relay), vec![RelayOutput::FetchPlaylist]);
}

#[test]
fn players_asking_one_segment_cause_one_fetch_and_later_ones_are_served_from_memory() {
    let mut relay = relay();
    relay.handle_input(T0, segment(1, 171));
    relay.handle_input(T0, segment(2, 171));
    assert_eq!(
        drain(&mut relay),
        vec![RelayOutput::FetchSegment { seq: 171 }]
    );
    let body = Bytes::from_static(b"\x47segment");
    relay.handle_input(
        T0 + ms(50),
        RelayInput::SegmentFetched {
            seq: 171,
            result: Ok(body.clone()),
        },
    );
    assert_eq!(
        drain(&mut relay),
        vec![
            answered_segment(1, Ok(body.clone())),
            answered_segment(2, Ok(body.clone()))
        ]
    );
    relay.handle_input(T0 + ms(60), segment(3, 171));
    assert_eq!(drain(&mut relay), vec![answered_segment(3, Ok(body))]);
}

#[test]
fn a_failed_segment_fetch_answers_its_waiters_and_is_tried_again_by_the_next_request() {
    let mut relay = relay();
    relay.handle_input(T0, segment(1, 5));
    drain(&mut relay);
    let error = FetchError::Status {
        url: "http://owner/ace/hls/content_id/abc/5.ts".into(),
        status: 404,
    };
    relay.handle_input(
        T0,
        RelayInput::SegmentFetched {
            seq: 5,
            result: Err(error.clone()),
        },
    );
    assert_eq!(
        drain(&mut relay),
        vec![answered_segment(1, Err(RelayFailure::Fetch(error)))]
    );
    assert!(!relay.is_ended(), "a missing segment is not a lost owner");
    relay.handle_input(T0, segment(2, 5));
    assert_eq!(
        drain(&mut relay),
        vec![RelayOutput::FetchSegment { seq: 5 }]
    );
}

#[test]
fn segment_fetches_and_waiters_are_bounded() {
    let mut relay = HlsRelay::new(
        T0,
        RelayConfig {
            max_fetches: 2,
            max_waiters: 3,
            ..RelayConfig::default()
        },
    );
    relay.handle_input(T0, segment(1, 1));
    relay.handle_input(T0, segment(2, 2));
    relay.handle_input(T0, segment(3, 3));
    assert_eq!(
        drain(&mut relay),
        vec![
            RelayOutput::FetchSegment { seq: 1 },
            RelayOutput::FetchSegment { seq: 2 },
            answered_segment(3, Err(RelayFailure::Full { limit: 2 })),
        ]
    );
    relay.handle_input(T0, segment(4, 1));
    relay.handle_input(T0, segment(5, 1));
    assert_eq!(
        drain(&mut relay),
        vec![answered_segment(5, Err(RelayFailure::Full { limit: 3 }))]
    );
}

#[test]
fn held_segments_are_bounded_by_count_and_bytes_oldest_first_and_the_newest_stays() {
    let mut relay = HlsRelay::new(
        T0,
        RelayConfig {
            max_segments: 2,
            max_bytes: 10,
            ..RelayConfig::default()
        },
    );
    for (waiter, seq, len) in [(1, 10, 4), (2, 11, 4), (3, 12, 4), (4, 13, 20)] {
        relay.handle_input(T0, segment(waiter, seq));
        relay.handle_input(
            T0,
            RelayInput::SegmentFetched {
                seq,
                result: Ok(Bytes::from(vec![0x47; len])),
            },
        );
    }
    drain(&mut relay);
    assert_eq!(
        relay.held_segments(),
        1,
        "only the newest, larger than the bound"
    );
    relay.handle_input(T0, segment(5, 13));
    assert!(matches!(
        drain(&mut relay).as_slice(),
        [RelayOutput::Segment { result: Ok(_), .. }]
    ));
    relay.handle_input(T0, segment(6, 12));
    assert_eq!(
        drain(&mut relay),
        vec![RelayOutput::FetchSegment { seq: 12 }]
    );
}

#[test]
fn held_segments_go_at_their_age() {
    let mut relay = relay();
    relay.handle_input(T0, segment(1, 7));
    relay.handle_input(
        T0,
        RelayInput::SegmentFetched {
            seq: 7,
            result: Ok(Bytes::from_static(b"\x47")),
        },
    );
    drain(&mut relay);
    let age = RelayConfig::default().segment_max_age;
    assert_eq!(
        relay.poll_timeout(),
        Some(T0 + age.min(RelayConfig::default().idle_timeout))
    );
    relay.handle_timeout(T0 + age);
    assert_eq!(relay.held_segments(), 0);
}

#[test]
fn a_failed_playlist_fetch_ends_the_relay_and_every_request_is_told_to_ask_again() {
    let mut relay = relay();
    relay.handle_input(T0, playlist(1));
    relay.handle_input(T0, segment(2, 9));
    drain(&mut relay);
    relay.handle_input(
        T0,
        RelayInput::PlaylistFetched {
            result: Err(FetchError::Unreachable("connection refused".into())),
        },
    );
    assert_eq!(
        drain(&mut relay),
        vec![
            answered_playlist(1, Err(RelayFailure::Ended)),
            answered_segment(2, Err(RelayFailure::Ended)),
            RelayOutput::Ended {
                reason: RelayEnd::OwnerLost
            },
        ]
    );
    // A late answer is ignored; a later request is told at once.
    relay.handle_input(
        T0,
        RelayInput::SegmentFetched {
            seq: 9,
            result: Ok(Bytes::from_static(b"\x47")),
        },
    );
    relay.handle_input(T0, playlist(3));
    assert_eq!(
        drain(&mut relay),
        vec![answered_playlist(3, Err(RelayFailure::Ended))]
    );
    assert_eq!(relay.poll_timeout(), None);
}

#[test]
fn a_relay_nobody_asks_ends_after_the_idle_timeout_but_not_while_a_fetch_runs() {
    let mut relay = relay();
    let idle = RelayConfig::default().idle_timeout;
    relay.handle_input(T0, playlist(1));
    drain(&mut relay);
    assert_eq!(relay.poll_timeout(), None, "a fetch runs: not idle");
    relay.handle_timeout(T0 + idle + idle);
    assert!(!relay.is_ended());
    let later = T0 + idle + idle;
    relay.handle_input(later, RelayInput::PlaylistFetched { result: Ok(text()) });
    drain(&mut relay);
    relay.handle_input(later + ms(100), playlist(2));
    drain(&mut relay);
    assert_eq!(relay.poll_timeout(), Some(later + ms(100) + idle));
    relay.handle_timeout(later + ms(99) + idle);
    assert!(!relay.is_ended());
    relay.handle_timeout(later + ms(100) + idle);
    assert_eq!(
        drain(&mut relay),
        vec![RelayOutput::Ended {
            reason: RelayEnd::Idle
        }]
    );
}

#[test]
fn a_players_token_goes_on_every_segment_uri_and_nothing_else_changes() {
    let owner = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:170\n#EXT-X-DISCONTINUITY-SEQUENCE:170\n\
                 #EXTINF:2.000000,\n/ace/hls/content_id/abc/170.ts\n#EXT-X-DISCONTINUITY\n\
                 #EXTINF:2.000000,\n/ace/hls/content_id/abc/171.ts?file_indexes=1\n";
    let served = for_player(owner, "t=p%201");
    assert_eq!(
        served,
        "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:170\n#EXT-X-DISCONTINUITY-SEQUENCE:170\n\
         #EXTINF:2.000000,\n/ace/hls/content_id/abc/170.ts?t=p%201\n#EXT-X-DISCONTINUITY\n\
         #EXTINF:2.000000,\n/ace/hls/content_id/abc/171.ts?file_indexes=1&t=p%201\n"
    );
    assert_eq!(for_player(owner, ""), owner);
}
