//! Stats of the playing session: polled at once and then at the interval, one poll at
//! a time, figures published; zero peers without download progress for the bound
//! replaces the session while viewers stay; failures and old answers change nothing.

use super::composed::{count, media, ms, requested, secs, stops, Playing};
use crate::channel::{
    CloseReason, EngineStats, Input, Notice, Output, StatPollId, StatsConfig, TsInput, TsOutput,
};
use crate::fuzzing::composed::{engine, session};
use crate::lifecycle::EndReason;
use crate::time::Duration;

type Outputs = Vec<Output<TsOutput>>;

fn polled(outputs: &Outputs) -> Vec<(StatPollId, String)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::FetchStats { poll, url, .. } => Some((*poll, url.clone())),
            _ => None,
        })
        .collect()
}

fn one_poll(outputs: &Outputs) -> StatPollId {
    let polls = polled(outputs);
    assert_eq!(polls.len(), 1, "one stat poll: {outputs:?}");
    polls[0].0
}

fn figures(peers: u64, downloaded: u64) -> EngineStats {
    EngineStats {
        status: Some("dl".into()),
        peers,
        speed_down: 100,
        speed_up: 20,
        downloaded,
        uploaded: downloaded / 4,
        livepos: None,
    }
}

fn playing(interval_secs: u64, no_peers_secs: Option<u64>) -> Playing {
    Playing::new(|channel, calls| {
        channel.recovery_timeout = secs(600);
        calls.stats = StatsConfig {
            interval: Some(secs(interval_secs)),
            no_peers_timeout: no_peers_secs.map(secs),
        };
    })
}

/// Moves time by `by`, a second at a time, with media flowing and the viewer reading
/// (so that only the stats decide); returns every output.
fn play_for(playing: &mut Playing, by: Duration) -> Outputs {
    let mut all = Vec::new();
    let mut left = by;
    while left > Duration::ZERO {
        let step = left.min(secs(1));
        left = left.saturating_sub(step);
        let mut outputs = playing.harness.advance(step);
        outputs.extend(playing.harness.input(Input::Media(TsInput::PlaybackData(
            playing.playback,
            media(),
        ))));
        // The viewer writes whatever it is handed at once.
        while outputs.iter().any(|o| {
            matches!(o, Output::Media(TsOutput::Deliver { viewer, .. } | TsOutput::Keepalive { viewer, .. }) if *viewer == playing.viewer)
        }) {
            all.append(&mut outputs);
            outputs = playing
                .harness
                .input(Input::Media(TsInput::Ready(playing.viewer)));
        }
        all.extend(outputs);
    }
    all
}

fn answer(playing: &mut Playing, poll: StatPollId, stats: EngineStats) -> Outputs {
    playing.harness.input(Input::StatsAnswer {
        poll,
        result: Ok(stats),
    })
}

#[test]
fn stats_are_polled_at_once_then_at_the_interval_one_poll_at_a_time() {
    let mut playing = playing(5, None);
    let first = one_poll(&playing.first_media);
    assert_eq!(
        polled(&playing.first_media)[0].1,
        session(1, 1).session.stat_url,
        "the session's stat URL"
    );
    // Unanswered, it is not asked again, however long it takes.
    assert!(polled(&play_for(&mut playing, secs(30))).is_empty());
    let outputs = answer(&mut playing, first, figures(4, 1_000));
    assert!(
        outputs.contains(&Output::Stats(figures(4, 1_000))),
        "{outputs:?}"
    );
    // The interval runs from the poll's start: it has passed, so the next is due now.
    let second = one_poll(&play_for(&mut playing, ms(1)));
    answer(&mut playing, second, figures(4, 2_000));
    assert!(polled(&play_for(&mut playing, ms(4_998))).is_empty());
    one_poll(&play_for(&mut playing, ms(2)));
}

#[test]
fn no_peers_and_no_progress_for_the_bound_replaces_the_session_and_viewers_stay() {
    let mut playing = playing(5, Some(20));
    let first_answer = playing.harness.now;
    let mut poll = one_poll(&playing.first_media);
    let mut replaced = None;
    for _ in 0..6 {
        let outputs = answer(&mut playing, poll, figures(0, 5_000));
        if count(&outputs, |o| {
            matches!(o, Output::Notice(Notice::NoPeers { .. }))
        }) > 0
        {
            replaced = Some(outputs);
            break;
        }
        poll = one_poll(&play_for(&mut playing, secs(5)));
    }
    let outputs = replaced.expect("replaced within the bound and one interval");
    assert_eq!(playing.harness.now, first_answer + secs(20), "at the bound");
    assert!(outputs.contains(&Output::SessionEnded {
        session: session(1, 1),
        reason: EndReason::NoPeers,
    }));
    assert_eq!(
        stops(&outputs).len(),
        1,
        "the session is stopped: {outputs:?}"
    );
    assert!(
        !outputs.contains(&Output::Notice(Notice::UpstreamStalled)),
        "a replacement is not a stall: {outputs:?}"
    );
    assert!(outputs.contains(&Output::PickEngine {
        exclude: vec![engine(1)]
    }));
    assert!(
        !outputs.iter().any(|o| matches!(
            o,
            Output::Media(TsOutput::Close { .. }) | Output::Ended { .. }
        )),
        "viewers stay: {outputs:?}"
    );
    // The new session on engine 2 is played and polled.
    let request = requested(&playing.harness.input(Input::EnginePicked(Some(engine(2)))))
        .expect("a request to the next engine");
    let granted = playing.harness.input(Input::SessionAnswer {
        request,
        result: Ok(session(2, 2)),
    });
    let playback = granted
        .iter()
        .find_map(|o| match o {
            Output::Media(TsOutput::OpenPlayback { playback, .. }) => Some(*playback),
            _ => None,
        })
        .expect("the new session is opened");
    playing
        .harness
        .input(Input::Media(TsInput::PlaybackOpened(playback)));
    let outputs = playing
        .harness
        .input(Input::Media(TsInput::PlaybackData(playback, media())));
    assert_eq!(
        polled(&outputs),
        vec![(polled(&outputs)[0].0, session(2, 2).session.stat_url)],
        "the new session is polled"
    );
    let _ = playing.viewer;
}

#[test]
fn peers_or_download_progress_keep_the_session() {
    let mut playing = playing(5, Some(10));
    let mut poll = one_poll(&playing.first_media);
    // Zero peers but the download grows (a seeder behind a tracker the engine does
    // not count), then peers without growth: neither is stuck.
    let answers = [
        figures(0, 1_000),
        figures(0, 2_000),
        figures(0, 3_000),
        figures(3, 3_000),
        figures(3, 3_000),
        figures(0, 4_000),
        figures(0, 5_000),
    ];
    for stats in answers {
        let outputs = answer(&mut playing, poll, stats);
        assert_eq!(
            count(&outputs, |o| matches!(
                o,
                Output::Notice(Notice::NoPeers { .. })
            )),
            0,
            "{outputs:?}"
        );
        poll = one_poll(&play_for(&mut playing, secs(5)));
    }
}

#[test]
fn failed_polls_do_not_count_as_no_progress_nor_reset_it() {
    let mut playing = playing(5, Some(20));
    let mut poll = one_poll(&playing.first_media);
    for consecutive in 1..=10 {
        let outputs = playing.harness.input(Input::StatsAnswer {
            poll,
            result: Err("connection refused".into()),
        });
        assert!(outputs.contains(&Output::Notice(Notice::StatsFailed {
            engine: engine(1),
            error: "connection refused".into(),
            consecutive,
        })));
        poll = one_poll(&play_for(&mut playing, secs(5)));
    }
    // Stuck at 50 s; failures from 55 s to 70 s; stuck again at 75 s: 25 s ≥ 20 s.
    answer(&mut playing, poll, figures(0, 7_000));
    for _ in 0..4 {
        poll = one_poll(&play_for(&mut playing, secs(5)));
        playing.harness.input(Input::StatsAnswer {
            poll,
            result: Err("timeout".into()),
        });
    }
    poll = one_poll(&play_for(&mut playing, secs(5)));
    let outputs = answer(&mut playing, poll, figures(0, 7_000));
    assert_eq!(
        count(&outputs, |o| matches!(
            o,
            Output::Notice(Notice::NoPeers { .. })
        )),
        1,
        "{outputs:?}"
    );
}

#[test]
fn an_answer_for_an_ended_session_or_an_old_poll_is_ignored() {
    let mut playing = playing(5, Some(5));
    let poll = one_poll(&playing.first_media);
    let stopped = playing.harness.input(Input::Stop(EndReason::Deleted));
    assert!(stopped.iter().any(|o| matches!(
        o,
        Output::Media(TsOutput::Close {
            reason: CloseReason::ChannelEnded(_),
            ..
        })
    )));
    let outputs = answer(&mut playing, poll, figures(0, 0));
    assert!(outputs.is_empty(), "{outputs:?}");
    assert!(polled(&play_for(&mut playing, secs(60))).is_empty());
    let outputs = answer(&mut playing, StatPollId(999), figures(0, 0));
    assert!(outputs.is_empty(), "{outputs:?}");
}

#[test]
fn without_an_interval_nothing_is_polled() {
    let mut playing = Playing::new(|_, _| {});
    assert!(polled(&playing.first_media).is_empty());
    assert!(polled(&play_for(&mut playing, secs(120))).is_empty());
}
