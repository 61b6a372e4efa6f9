//! A TS channel that cuts HLS from its own stream: HLS players are its viewers, the
//! first playlist waits for the ready segments, a new playback is a discontinuity.

use bytes::Bytes;

use super::composed::{count, open_with_viewer, requested, secs};
use crate::channel::{
    ChannelConfig, CutHlsConfig, EngineCallConfig, Input, Output, StartFailure, TsChannel, TsInput,
    TsMedia, TsOutput, WaitFailure, WaiterId,
};
use crate::fanout::{FanoutConfig, ViewerId};
use crate::fuzzing::composed::{engine, session};
use crate::fuzzing::segmenter::gop_stream;
use crate::machine::Harness;
use crate::time::{Duration, Instant};
use crate::ts::segmenter::SegmenterConfig;

const T0: Instant = Instant::from_micros(1_000_000_000);

fn cut_channel(idle_timeout: Duration) -> Harness<TsChannel> {
    let channel = ChannelConfig::default();
    let media =
        TsMedia::new(FanoutConfig::default(), channel.start_timeout).with_hls(CutHlsConfig {
            segmenter: SegmenterConfig::with_target(secs(2)),
            ready_segments: 2,
            idle_timeout,
            first_playlist_timeout: secs(30),
            ..CutHlsConfig::default()
        });
    Harness::new(
        TsChannel::new(T0, channel, EngineCallConfig::default(), media),
        T0,
    )
}

/// Grants session 1 to a channel asked for by an HLS player; the playback's id.
fn open_for_player(harness: &mut Harness<TsChannel>) -> crate::channel::PlaybackId {
    harness.input(Input::Media(TsInput::PlayerSeen("p1".into())));
    harness.input(Input::Media(TsInput::WaitReady(WaiterId(1))));
    let request =
        requested(&harness.input(Input::EnginePicked(Some(engine(1))))).expect("a request");
    let granted = harness.input(Input::SessionAnswer {
        request,
        result: Ok(session(1, 1)),
    });
    let playback = granted
        .iter()
        .find_map(|output| match output {
            Output::Media(TsOutput::OpenPlayback { playback, .. }) => Some(*playback),
            _ => None,
        })
        .expect("a playback");
    harness.input(Input::Media(TsInput::PlaybackOpened(playback)));
    playback
}

fn published(outputs: &[Output<TsOutput>]) -> Vec<crate::hls::HlsSnapshot> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Media(TsOutput::Publish(snapshot)) => Some(snapshot.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_first_player_is_answered_once_the_ready_segments_are_cut_after_the_playlist() {
    let mut harness = cut_channel(secs(30));
    let playback = open_for_player(&mut harness);
    // Four seconds with a keyframe every second: one segment cut, not ready yet.
    let stream = gop_stream(900_000, 175, 25);
    let (first, rest) = stream.split_at(stream.len() / 2);
    let outputs = harness.input(Input::Media(TsInput::PlaybackData(
        playback,
        Bytes::copy_from_slice(first),
    )));
    assert_eq!(
        count(&outputs, |o| matches!(
            o,
            Output::Media(TsOutput::Answer { .. })
        )),
        0
    );
    let outputs = harness.input(Input::Media(TsInput::PlaybackData(
        playback,
        Bytes::copy_from_slice(rest),
    )));
    let answer = outputs
        .iter()
        .position(|o| {
            matches!(
                o,
                Output::Media(TsOutput::Answer {
                    waiter: WaiterId(1),
                    result: Ok(())
                })
            )
        })
        .expect("the waiting player is answered");
    let publish = outputs
        .iter()
        .position(|o| matches!(o, Output::Media(TsOutput::Publish(s)) if s.ready))
        .expect("the ready playlist is published");
    assert!(publish < answer, "published before the answer: {outputs:?}");
    // The first ready playlist holds every segment this data completed (3 ≥ 2 ready).
    let snapshot = published(&outputs)
        .into_iter()
        .find(|s| s.ready)
        .expect("a ready snapshot");
    assert_eq!(snapshot.segments.len(), 3);
    assert!(snapshot.segments.iter().all(|s| s.duration_us == 2_000_000));
    let keyframe_cuts = count(&outputs, |o| {
        matches!(
            o,
            Output::Media(TsOutput::SegmentCut {
                random_access: true,
                discontinuity: false,
                duration_us: 2_000_000
            })
        )
    });
    assert_eq!(
        keyframe_cuts, 2,
        "the second data completed two of the three"
    );
    // A later player is answered at once.
    let outputs = harness.input(Input::Media(TsInput::WaitReady(WaiterId(2))));
    assert!(outputs.contains(&Output::Media(TsOutput::Answer {
        waiter: WaiterId(2),
        result: Ok(())
    })));
    assert_eq!(harness.machine.media().hls_segments_cut(), 3);
}

#[test]
fn ts_viewers_and_hls_players_share_one_session_and_the_last_to_go_ends_it() {
    let mut harness = cut_channel(secs(10));
    let viewer = ViewerId(1);
    let playback = open_with_viewer(&mut harness, viewer);
    harness.input(Input::Media(TsInput::PlaybackData(
        playback,
        Bytes::from(gop_stream(0, 100, 25)),
    )));
    let outputs = harness.input(Input::Media(TsInput::PlayerSeen("p1".into())));
    assert!(outputs.contains(&Output::Notice(crate::channel::Notice::Viewers(2))));
    // The TS viewer leaves; the player keeps the session.
    let outputs = harness.input(Input::Media(TsInput::Leave(viewer)));
    assert!(outputs.contains(&Output::Notice(crate::channel::Notice::Viewers(1))));
    let outputs = harness.advance(secs(5));
    assert_eq!(
        count(&outputs, |o| matches!(o, Output::StopSession { .. })),
        0
    );
    // Quiet past the idle timeout, then the grace: the session is stopped once.
    let outputs = harness.advance(secs(60));
    assert_eq!(
        count(&outputs, |o| matches!(o, Output::StopSession { .. })),
        1
    );
    assert_eq!(
        count(
            &outputs,
            |o| matches!(o, Output::SessionEnded { reason, .. } if reason.as_str() == "idle")
        ),
        1
    );
}

#[test]
fn a_new_playback_is_one_discontinuity_and_the_sequence_goes_on() {
    let mut harness = cut_channel(secs(30));
    let playback = open_for_player(&mut harness);
    harness.input(Input::Media(TsInput::PlaybackData(
        playback,
        Bytes::from(gop_stream(0, 250, 25)),
    )));
    let before = harness.machine.media().hls_snapshot().expect("cuts HLS");
    assert_eq!(before.discontinuity_sequence, 0);
    // The playback fails; the channel reopens it after its backoff.
    harness.input(Input::Media(TsInput::PlaybackFailed(
        playback,
        "reset".into(),
    )));
    let reopened = harness
        .advance(secs(5))
        .iter()
        .find_map(|output| match output {
            Output::Media(TsOutput::OpenPlayback { playback, .. }) => Some(*playback),
            _ => None,
        })
        .expect("reopened");
    harness.input(Input::Media(TsInput::PlaybackOpened(reopened)));
    // The new playback's timestamps restart elsewhere.
    let outputs = harness.input(Input::Media(TsInput::PlaybackData(
        reopened,
        Bytes::from(gop_stream(5_000_000_000, 250, 25)),
    )));
    let after = published(&outputs).pop().expect("published");
    let marked: Vec<bool> = after.segments.iter().map(|s| s.discontinuity).collect();
    assert_eq!(marked.iter().filter(|d| **d).count(), 1, "{marked:?}");
    assert!(after.media_sequence >= before.media_sequence);
    let seqs: Vec<u64> = after.segments.iter().map(|s| s.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
}

#[test]
fn waiting_players_get_the_start_failure() {
    let mut harness = cut_channel(secs(30));
    harness.input(Input::Media(TsInput::WaitReady(WaiterId(7))));
    // No engine can take the session.
    let mut outputs = harness.input(Input::EnginePicked(None));
    outputs.extend(harness.advance(secs(60)));
    let answer = outputs.iter().find_map(|output| match output {
        Output::Media(TsOutput::Answer {
            waiter: WaiterId(7),
            result,
        }) => Some(result.clone()),
        _ => None,
    });
    assert!(
        matches!(
            answer,
            Some(Err(WaitFailure::Start(
                StartFailure::NoEngine | StartFailure::Timeout
            )))
        ),
        "{answer:?}"
    );
}

/// The HLS half of a TS channel alone, with a live playlist of 6 segments and room for
/// 30, fed a 25 fps stream with a keyframe every second (2 s segments).
struct Cut {
    cut: crate::channel::cut::CutHls,
    now: Instant,
    dts: u64,
}

impl Cut {
    fn new(edit: impl FnOnce(&mut CutHlsConfig)) -> Self {
        let mut config = CutHlsConfig {
            segmenter: SegmenterConfig::with_target(secs(2)),
            max_segments: 30,
            window_segments: 6,
            idle_timeout: secs(30),
            ..CutHlsConfig::default()
        };
        edit(&mut config);
        Cut {
            cut: crate::channel::cut::CutHls::new(config),
            now: T0,
            dts: 900_000,
        }
    }

    /// `seconds` of the stream, arriving in one chunk; the clock moves on as much.
    fn feed(&mut self, seconds: u64) {
        let frames = seconds * 25;
        let mut events = CutEvents::default();
        let bytes = Bytes::from(gop_stream(self.dts, frames, 25));
        self.cut.data(self.now, bytes, &mut events);
        self.dts += frames * 3600;
        self.now = self.now + secs(seconds);
    }

    fn seen(&mut self, token: &str) {
        self.cut
            .seen(self.now, token.into(), &mut CutEvents::default());
    }

    /// Segments held: listed in the playlist, and behind it.
    fn held(&self) -> (usize, usize) {
        let snapshot = self.cut.snapshot();
        assert_eq!(
            snapshot.segments.len() + snapshot.behind.len(),
            self.cut.held()
        );
        (snapshot.segments.len(), snapshot.behind.len())
    }
}

use crate::channel::cut::CutEvents;
use crate::channel::UNWATCHED_MARGIN_SEGMENTS;

#[test]
fn without_hls_players_only_the_window_and_a_margin_are_held() {
    let mut cut = Cut::new(|_| {});
    cut.feed(100);
    assert!(cut.cut.segments_cut() >= 45);
    // The playlist is whole (a new player starts at once); little is held behind it.
    assert_eq!(cut.held(), (6, UNWATCHED_MARGIN_SEGMENTS));
    assert!(cut.cut.snapshot().ready);
}

#[test]
fn once_a_player_asks_up_to_the_bound_is_held_until_it_goes_idle() {
    let mut cut = Cut::new(|_| {});
    cut.feed(40);
    assert_eq!(cut.held(), (6, UNWATCHED_MARGIN_SEGMENTS));
    cut.seen("p1");
    // The held segments grow by one per cut, up to the bound.
    cut.feed(10);
    assert_eq!(cut.held(), (6, UNWATCHED_MARGIN_SEGMENTS + 5));
    for _ in 0..5 {
        cut.feed(10);
        cut.seen("p1");
    }
    assert_eq!(cut.held(), (6, 30 - 6));
    // The player asks nothing past the idle timeout: it is gone, and the next cut
    // lets go of what only it could have asked for.
    cut.now = cut.now + secs(31);
    cut.cut.handle_timeout(cut.now, &mut CutEvents::default());
    assert_eq!(cut.cut.players(), 0);
    assert_eq!(cut.held(), (6, 30 - 6), "nothing is dropped between cuts");
    cut.feed(4);
    assert_eq!(cut.held(), (6, UNWATCHED_MARGIN_SEGMENTS));
}

#[test]
fn players_waiting_for_the_first_playlist_count_as_asking() {
    let mut cut = Cut::new(|config| config.ready_segments = 20);
    cut.cut
        .wait(cut.now, WaiterId(1), &mut CutEvents::default());
    cut.feed(36);
    assert_eq!(cut.cut.waiters(), 1, "not ready yet");
    assert_eq!(cut.held(), (6, 17 - 6));
}

#[test]
fn the_unwatched_hold_never_exceeds_the_bounds() {
    // A window longer than the bound: the bound wins.
    let mut cut = Cut::new(|config| config.window_segments = 40);
    cut.feed(100);
    assert_eq!(cut.held(), (30, 0));
    // The byte bound still applies (a segment here is about 60 packets).
    let mut cut = Cut::new(|config| config.max_buffer_bytes = 3 * 60 * 188);
    cut.feed(100);
    let (listed, behind) = cut.held();
    assert!(listed + behind <= 3, "{listed} + {behind}");
}

#[test]
fn a_running_channel_no_hls_player_watched_answers_a_new_one_at_once() {
    let mut harness = cut_channel(secs(30));
    let viewer = ViewerId(1);
    let playback = open_with_viewer(&mut harness, viewer);
    harness.input(Input::Media(TsInput::PlaybackData(
        playback,
        Bytes::from(gop_stream(0, 2500, 25)),
    )));
    assert_eq!(
        harness.machine.media().hls_segments_held(),
        6 + UNWATCHED_MARGIN_SEGMENTS
    );
    let outputs = harness.input(Input::Media(TsInput::WaitReady(WaiterId(3))));
    assert!(outputs.contains(&Output::Media(TsOutput::Answer {
        waiter: WaiterId(3),
        result: Ok(())
    })));
    let snapshot = harness.machine.media().hls_snapshot().expect("cuts HLS");
    assert_eq!(snapshot.segments.len(), 6);
}

#[test]
fn cut_segments_share_the_memory_the_ts_viewers_are_sent_from() {
    let mut harness = cut_channel(secs(30));
    let viewer = ViewerId(1);
    let playback = open_with_viewer(&mut harness, viewer);
    // Chunks that split packets: the fan-out aligns them, once.
    let stream = gop_stream(0, 500, 25);
    let mut delivered = Vec::new();
    for chunk in stream.chunks(5000) {
        let outputs = harness.input(Input::Media(TsInput::PlaybackData(
            playback,
            Bytes::copy_from_slice(chunk),
        )));
        for output in outputs {
            if let Output::Media(TsOutput::Deliver { chunks, .. }) = output {
                delivered.extend(chunks);
            }
        }
        harness.input(Input::Media(TsInput::Ready(viewer)));
    }
    let snapshot = harness.machine.media().hls_snapshot().expect("cuts HLS");
    assert!(snapshot.segments.len() >= 6);
    for segment in &snapshot.segments {
        // The tables first, then slices of what the viewer was sent.
        for part in &segment.body.parts()[1..] {
            let at = part.as_ptr() as usize;
            assert!(
                delivered.iter().any(|sent| {
                    let start = sent.as_ptr() as usize;
                    (start..start + sent.len()).contains(&at)
                }),
                "segment {} has a part of its own",
                segment.seq
            );
        }
    }
}
