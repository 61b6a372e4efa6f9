//! The composed channel machines at microsecond speed: each test drives one behaviour
//! through a [`Harness`] with a fake clock, answering the machine's I/O by hand.

use bytes::Bytes;

use crate::channel::{
    ChannelConfig, CloseReason, EngineCallConfig, HlsChannel, HlsInput, HlsMedia, HlsMediaConfig,
    HlsOutput, Input, Notice, Output, PlaybackId, PoolChange, RequestId, StartFailure, StopId,
    TsChannel, TsInput, TsMedia, TsOutput, WaitFailure, WaiterId,
};
use crate::fanout::{FanoutConfig, ViewerId};
use crate::fuzzing::composed::{engine, session, upstream_playlist};
use crate::hls::HlsConfig;
use crate::lifecycle::EndReason;
use crate::machine::Harness;
use crate::time::{Duration, Instant};
use crate::ts::PACKET_LEN;

const T0: Instant = Instant::from_micros(1_000_000_000);

pub(super) fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A PAT, a keyframe and two more packets: a clean start for any viewer.
pub(super) fn media() -> Bytes {
    let mut bytes = vec![0u8; 4 * PACKET_LEN];
    for packet in bytes.chunks_mut(PACKET_LEN) {
        packet[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10]);
    }
    bytes[..4].copy_from_slice(&[0x47, 0x40, 0x00, 0x10]);
    // A video PES start flagged as a random access point.
    bytes[PACKET_LEN..PACKET_LEN + 10]
        .copy_from_slice(&[0x47, 0x41, 0x00, 0x30, 0x01, 0x40, 0x00, 0x00, 0x01, 0xE0]);
    bytes.into()
}

pub(super) fn ts_channel(
    edit: impl FnOnce(&mut ChannelConfig, &mut EngineCallConfig),
) -> Harness<TsChannel> {
    let mut channel = ChannelConfig::default();
    let mut calls = EngineCallConfig::default();
    edit(&mut channel, &mut calls);
    let media = TsMedia::new(FanoutConfig::default(), channel.start_timeout);
    Harness::new(TsChannel::new(T0, channel, calls, media), T0)
}

pub(super) fn count<M>(outputs: &[Output<M>], matches: impl Fn(&Output<M>) -> bool) -> usize {
    outputs.iter().filter(|output| matches(output)).count()
}

pub(super) fn requested<M: std::fmt::Debug>(outputs: &[Output<M>]) -> Option<RequestId> {
    outputs.iter().find_map(|output| match output {
        Output::RequestSession { request, .. } => Some(*request),
        _ => None,
    })
}

pub(super) fn stops<M>(outputs: &[Output<M>]) -> Vec<(StopId, u32, String)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::StopSession {
                stop,
                attempt,
                command_url,
                ..
            } => Some((*stop, *attempt, command_url.clone())),
            _ => None,
        })
        .collect()
}

fn picks<M>(outputs: &[Output<M>]) -> usize {
    count(outputs, |output| {
        matches!(output, Output::PickEngine { .. })
    })
}

/// Joins `viewer`, grants session 1 on engine 1 and reports its playback open; the
/// playback's id.
pub(super) fn open_with_viewer(harness: &mut Harness<TsChannel>, viewer: ViewerId) -> PlaybackId {
    harness.input(Input::Media(TsInput::Join(viewer)));
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
        .expect("the granted session's playback is opened");
    harness.input(Input::Media(TsInput::PlaybackOpened(playback)));
    playback
}

/// A TS channel with one viewer and a playing session `s1` on engine 1.
pub(super) struct Playing {
    pub(super) harness: Harness<TsChannel>,
    pub(super) viewer: ViewerId,
    /// The session's playback.
    pub(super) playback: PlaybackId,
    /// What the first media caused.
    pub(super) first_media: Vec<Output<TsOutput>>,
}

impl Playing {
    pub(super) fn new(edit: impl FnOnce(&mut ChannelConfig, &mut EngineCallConfig)) -> Self {
        let mut harness = ts_channel(edit);
        let first = harness.drain();
        assert_eq!(picks(&first), 1, "a new channel asks for a session at once");
        let viewer = ViewerId(1);
        let playback = open_with_viewer(&mut harness, viewer);
        let outputs = harness.input(Input::Media(TsInput::PlaybackData(playback, media())));
        assert!(
            outputs.iter().any(|output| matches!(
                output,
                Output::Media(TsOutput::Deliver { viewer: v, first: true, .. }) if *v == viewer
            )),
            "the viewer gets its first media: {outputs:?}"
        );
        assert_eq!(count(&outputs, |o| matches!(o, Output::Started(_))), 1);
        harness.input(Input::Media(TsInput::Ready(viewer)));
        Playing {
            harness,
            viewer,
            playback,
            first_media: outputs,
        }
    }
}

#[test]
fn a_viewer_returning_within_the_idle_grace_keeps_the_session() {
    // Upstream stays quiet in this test; its silence is not what is tested.
    let mut playing = Playing::new(|channel, _| channel.upstream_stall_timeout = secs(600));
    let grace = ChannelConfig::default().idle_grace;
    playing
        .harness
        .input(Input::Media(TsInput::Leave(playing.viewer)));
    let outputs = playing.harness.advance(grace - ms(1));
    assert!(stops(&outputs).is_empty(), "no stop within the grace");
    let outputs = playing
        .harness
        .input(Input::Media(TsInput::Join(ViewerId(2))));
    assert!(
        outputs
            .iter()
            .any(|output| matches!(output, Output::Media(TsOutput::Deliver { first: true, .. }))),
        "the returning viewer joins the running session at once"
    );
    // The returning viewer keeps reading (keepalives, as upstream is quiet).
    playing
        .harness
        .input(Input::Media(TsInput::Ready(ViewerId(2))));
    for _ in 0..30 {
        let outputs = playing.harness.advance(grace / 10);
        assert!(stops(&outputs).is_empty(), "the grace was cancelled");
        if outputs
            .iter()
            .any(|output| matches!(output, Output::Media(TsOutput::Keepalive { .. })))
        {
            playing
                .harness
                .input(Input::Media(TsInput::Ready(ViewerId(2))));
        }
    }
    assert_eq!(
        picks(&playing.harness.log),
        1,
        "no new session was asked for"
    );
}

#[test]
fn the_session_is_stopped_once_when_the_idle_grace_passes() {
    let mut playing = Playing::new(|_, _| {});
    playing
        .harness
        .input(Input::Media(TsInput::Leave(playing.viewer)));
    let outputs = playing.harness.advance(ChannelConfig::default().idle_grace);
    let stopped = stops(&outputs);
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].1, 1, "first attempt");
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::SessionEnded {
            reason: EndReason::Idle,
            ..
        }
    )));
    assert!(outputs.contains(&Output::Ended {
        reason: EndReason::Idle
    }));
    assert!(
        !playing.harness.machine.is_finished(),
        "the stop is not confirmed yet"
    );
    playing.harness.input(Input::StopAnswer {
        stop: stopped[0].0,
        result: Ok(()),
    });
    assert!(playing.harness.machine.is_finished());
    assert_eq!(playing.harness.machine.poll_timeout(), None);
}

#[test]
fn a_session_granted_after_its_request_deadline_is_stopped_exactly_once() {
    let mut harness = ts_channel(|_, calls| calls.request_timeout = secs(5));
    harness.drain();
    harness.input(Input::Media(TsInput::Join(ViewerId(1))));
    let late = requested(&harness.input(Input::EnginePicked(Some(engine(1))))).expect("a request");
    let outputs = harness.advance(secs(5));
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::Notice(Notice::RequestWatched { request, .. }) if *request == late
    )));
    assert!(outputs.contains(&Output::Pool(PoolChange::Failed {
        engine: engine(1),
        unreachable: true,
    })));
    // The channel retries (after its backoff) on the other engine.
    let outputs = harness.advance(ChannelConfig::default().initial_backoff);
    assert_eq!(picks(&outputs), 1);
    let retry = requested(&harness.input(Input::EnginePicked(Some(engine(2))))).expect("a retry");
    // The first engine answers late: that session is stopped, and only that one.
    let outputs = harness.input(Input::SessionAnswer {
        request: late,
        result: Ok(session(1, 1)),
    });
    let stopped = stops(&outputs);
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].2, session(1, 1).session.command_url);
    assert!(!outputs
        .iter()
        .any(|output| matches!(output, Output::Pool(PoolChange::Opened(_)))));
    // The retry serves the viewer.
    let outputs = harness.input(Input::SessionAnswer {
        request: retry,
        result: Ok(session(2, 2)),
    });
    assert!(outputs.contains(&Output::Pool(PoolChange::Opened(engine(2)))));
    harness.input(Input::StopAnswer {
        stop: stopped[0].0,
        result: Ok(()),
    });
    // However long the run goes, the late session is never stopped again.
    harness.advance(secs(600));
    let all = stops(&harness.log);
    let late_stops = all
        .iter()
        .filter(|(_, _, url)| *url == session(1, 1).session.command_url)
        .count();
    assert_eq!(late_stops, 1);
}

#[test]
fn a_request_unanswered_past_its_watch_is_abandoned() {
    let mut harness = ts_channel(|channel, calls| {
        calls.request_timeout = secs(5);
        channel.start_timeout = secs(4);
    });
    harness.drain();
    let request =
        requested(&harness.input(Input::EnginePicked(Some(engine(1))))).expect("a request");
    let watch = EngineCallConfig {
        request_timeout: secs(5),
        ..EngineCallConfig::default()
    }
    .late_answer_bound();
    harness.advance(secs(5) + watch - ms(1));
    assert!(!harness.log.contains(&Output::AbandonRequest { request }));
    let outputs = harness.advance(ms(1));
    assert!(outputs.contains(&Output::AbandonRequest { request }));
    assert!(
        harness.machine.is_finished(),
        "nothing left once the channel ended and the watch is over"
    );
}

#[test]
fn stop_retries_end_after_the_configured_attempts() {
    let mut playing = Playing::new(|_, calls| {
        calls.stop_attempts = 3;
        calls.stop_retry_initial = secs(1);
    });
    let outputs = playing.harness.input(Input::Stop(EndReason::Deleted));
    let mut stop = stops(&outputs)[0].clone();
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::SessionEnded {
            reason: EndReason::Deleted,
            ..
        }
    )));
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        assert_eq!(stop.1, attempt);
        let outputs = playing.harness.input(Input::StopAnswer {
            stop: stop.0,
            result: Err("unreachable".into()),
        });
        let retry_in = outputs.iter().find_map(|output| match output {
            Output::Notice(Notice::StopFailed { retry_in, .. }) => Some(*retry_in),
            _ => None,
        });
        let retry_in = retry_in.expect("a failed stop is noticed");
        if attempt == 3 {
            assert_eq!(retry_in, None, "given up after the last attempt");
            break;
        }
        let delay = retry_in.expect("retried before the last attempt");
        delays.push(delay);
        assert!(stops(&playing.harness.advance(delay - ms(1))).is_empty());
        let outputs = playing.harness.advance(ms(1));
        stop = stops(&outputs).first().cloned().expect("the next attempt");
    }
    assert_eq!(delays, [secs(1), secs(2)], "the delay doubles");
    assert!(playing.harness.machine.is_finished());
    assert_eq!(stops(&playing.harness.log).len(), 3);
}

#[test]
fn a_refusing_engine_is_failed_over_to_the_next() {
    let mut harness = ts_channel(|_, _| {});
    harness.drain();
    let request =
        requested(&harness.input(Input::EnginePicked(Some(engine(1))))).expect("a request");
    let outputs = harness.input(Input::SessionAnswer {
        request,
        result: Err(crate::channel::SessionError::Refused("busy".into())),
    });
    assert!(outputs.contains(&Output::Pool(PoolChange::Failed {
        engine: engine(1),
        unreachable: false,
    })));
    let outputs = harness.advance(ChannelConfig::default().initial_backoff);
    assert_eq!(
        outputs
            .iter()
            .find(|output| matches!(output, Output::PickEngine { .. })),
        Some(&Output::PickEngine {
            exclude: vec![engine(1)]
        }),
        "the next pick avoids the engine that refused"
    );
}

#[test]
fn keepalives_start_only_after_the_first_media() {
    let mut harness = ts_channel(|_, _| {});
    harness.drain();
    let viewer = ViewerId(7);
    let playback = open_with_viewer(&mut harness, viewer);
    // Silence shorter than the stall timeout: the viewer has no response yet, so
    // nothing is sent to it, and it is not dropped.
    let outputs = harness.advance(secs(9));
    assert!(!outputs.iter().any(|output| matches!(
        output,
        Output::Media(TsOutput::Keepalive { .. } | TsOutput::Close { .. })
    )));
    harness.input(Input::Media(TsInput::PlaybackData(playback, media())));
    harness.input(Input::Media(TsInput::Ready(viewer)));
    let outputs = harness.advance(FanoutConfig::default().keepalive_interval);
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::Media(TsOutput::Keepalive { viewer: v, .. }) if *v == viewer
    )));
}

#[test]
fn a_viewer_that_gets_no_media_by_the_start_timeout_gets_the_timeout() {
    let mut harness = ts_channel(|channel, _| channel.start_timeout = secs(20));
    harness.drain();
    harness.advance(secs(5));
    // Joined 5 s into the start: the channel's own start deadline comes first.
    harness.input(Input::Media(TsInput::Join(ViewerId(1))));
    let outputs = harness.advance(secs(15));
    assert!(outputs.contains(&Output::Media(TsOutput::Close {
        viewer: ViewerId(1),
        reason: CloseReason::StartFailed(StartFailure::Timeout),
    })));
    assert!(harness.machine.is_ended());
}

#[test]
fn shutdown_mid_start_stops_the_session_granted_afterwards() {
    let mut harness = ts_channel(|_, _| {});
    harness.drain();
    harness.input(Input::Media(TsInput::Join(ViewerId(1))));
    let request =
        requested(&harness.input(Input::EnginePicked(Some(engine(1))))).expect("a request");
    let outputs = harness.input(Input::Shutdown);
    assert!(outputs.contains(&Output::Media(TsOutput::Close {
        viewer: ViewerId(1),
        reason: CloseReason::ChannelEnded(EndReason::Shutdown),
    })));
    assert!(outputs.contains(&Output::Ended {
        reason: EndReason::Shutdown
    }));
    assert!(
        !harness.machine.is_finished(),
        "the request is still answered"
    );
    let outputs = harness.input(Input::SessionAnswer {
        request,
        result: Ok(session(1, 1)),
    });
    let stopped = stops(&outputs);
    assert_eq!(
        stopped.len(),
        1,
        "the session granted after the shutdown is stopped"
    );
    assert!(!outputs
        .iter()
        .any(|output| matches!(output, Output::Started(_))));
    harness.input(Input::StopAnswer {
        stop: stopped[0].0,
        result: Ok(()),
    });
    assert!(harness.machine.is_finished());
}

#[test]
fn at_shutdown_an_unanswered_request_is_abandoned_at_its_deadline_not_watched() {
    let mut harness = ts_channel(|_, calls| calls.request_timeout = secs(5));
    harness.drain();
    let request =
        requested(&harness.input(Input::EnginePicked(Some(engine(1))))).expect("a request");
    harness.input(Input::Shutdown);
    let outputs = harness.advance(secs(5));
    assert!(outputs.contains(&Output::AbandonRequest { request }));
    assert!(harness.machine.is_finished());
}

// HLS

fn hls_channel(idle_timeout: Duration) -> Harness<HlsChannel> {
    hls_channel_with(HlsMediaConfig {
        hls: HlsConfig {
            ready_segments: 1,
            ..HlsConfig::default()
        },
        idle_timeout,
        first_playlist_timeout: secs(30),
        ..HlsMediaConfig::default()
    })
}

fn hls_channel_with(config: HlsMediaConfig) -> Harness<HlsChannel> {
    let channel = HlsChannel::new(
        T0,
        ChannelConfig::default(),
        EngineCallConfig::default(),
        HlsMedia::new(config),
    );
    Harness::new(channel, T0)
}

#[test]
fn players_waiting_for_the_first_playlist_do_not_expire() {
    let idle = secs(2);
    let mut harness = hls_channel(idle);
    harness.drain();
    harness.input(Input::Media(HlsInput::PlayerSeen("p1".into())));
    harness.input(Input::Media(HlsInput::WaitReady(WaiterId(1))));
    let request =
        requested(&harness.input(Input::EnginePicked(Some(engine(1))))).expect("a request");
    // The engine takes its time (within the request timeout); the waiting player is
    // present all along.
    let outputs = harness.advance(idle * 4);
    assert!(!outputs.contains(&Output::Notice(Notice::Viewers(0))));
    assert!(!harness.machine.is_ended());
    let outputs = harness.input(Input::SessionAnswer {
        request,
        result: Ok(session(1, 1)),
    });
    let (generation, _) = outputs
        .iter()
        .find_map(|output| match output {
            Output::Media(HlsOutput::FetchPlaylist { generation, url }) => {
                Some((*generation, url.clone()))
            }
            _ => None,
        })
        .expect("the playlist is polled");
    harness.input(Input::Media(HlsInput::PlaylistFetched {
        generation,
        result: Ok(upstream_playlist(1)),
    }));
    let outputs = harness.input(Input::Media(HlsInput::SegmentFetched {
        generation,
        upstream_seq: 0,
        result: Ok(media()),
    }));
    let publish = outputs.iter().position(
        |output| matches!(output, Output::Media(HlsOutput::Publish(snapshot)) if snapshot.ready),
    );
    let answer = outputs.iter().position(|output| {
        *output
            == Output::Media(HlsOutput::Answer {
                waiter: WaiterId(1),
                result: Ok(()),
            })
    });
    assert!(publish.is_some() && answer.is_some(), "{outputs:?}");
    assert!(
        publish < answer,
        "the ready snapshot is published before the answer"
    );
    // The player's idle clock starts now, at the answer.
    assert!(!harness
        .advance(idle - ms(1))
        .contains(&Output::Notice(Notice::Viewers(0))));
    assert!(harness
        .advance(ms(1))
        .contains(&Output::Notice(Notice::Viewers(0))));
}

#[test]
fn waiters_beyond_the_bound_are_refused_and_the_rest_time_out() {
    let mut harness = hls_channel_with(HlsMediaConfig {
        max_waiters: 1,
        first_playlist_timeout: secs(3),
        ..HlsMediaConfig::default()
    });
    harness.drain();
    harness.input(Input::Media(HlsInput::WaitReady(WaiterId(1))));
    let outputs = harness.input(Input::Media(HlsInput::WaitReady(WaiterId(2))));
    assert!(outputs.contains(&Output::Media(HlsOutput::Answer {
        waiter: WaiterId(2),
        result: Err(WaitFailure::Full { limit: 1 }),
    })));
    let outputs = harness.advance(secs(3));
    assert!(outputs.contains(&Output::Media(HlsOutput::Answer {
        waiter: WaiterId(1),
        result: Err(WaitFailure::Start(StartFailure::Timeout)),
    })));
}

// Any interleaving: the fuzz drivers' fake world and checkers (see
// `crate::fuzzing::composed`) over random drives.
mod interleavings {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// At most one engine session at a time, every granted session (late ones too)
        /// stopped exactly once, one start and at most one end per session, viewers
        /// never handed a packet twice or out of order.
        #[test]
        fn a_ts_channel_keeps_its_promises(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            crate::fuzzing::ts_channel(&data);
        }

        /// The same for HLS, plus every waiting player answered exactly once and the
        /// published sequences never going back.
        #[test]
        fn an_hls_channel_keeps_its_promises(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            crate::fuzzing::hls_channel(&data);
        }
    }
}
