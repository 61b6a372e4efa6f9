//! Keeping a started stream alive: reconnects to the same session, failover to a new
//! one, and the recovery bound.

use super::*;

/// Lets the playing session `a` stall until it is replaced; returns the outputs of
/// the last stall (the failover).
#[track_caller]
fn stall_out(h: &mut Harness, a: &EngineSession) -> Vec<Output> {
    for _ in 0..h.config.reconnects_per_session {
        assert_eq!(h.step(), vec![Output::ClosePlayback]);
        assert_eq!(h.step(), vec![open(a)]);
    }
    h.step()
}

#[test]
fn stall_while_playing_reopens_the_same_url_after_backoff() {
    let (mut h, a) = Harness::playing();
    h.advance(secs(2));
    h.data();
    let last_data = h.now();
    assert_eq!(h.step(), vec![Output::ClosePlayback]);
    assert_eq!(h.now(), last_data + h.config.upstream_stall_timeout);
    let stalled = h.now();
    assert_eq!(h.step(), vec![open(&a)]);
    assert_eq!(h.now(), stalled + h.config.initial_backoff);
}

#[test]
fn data_after_a_reconnect_resumes_without_a_new_start() {
    let (mut h, a) = Harness::playing();
    h.step();
    h.step();
    assert_eq!(h.input(Input::PlaybackOpened), vec![]);
    assert_eq!(h.data(), vec![]);
    assert_eq!(h.count(&started(&a)), 1);
    assert_eq!(h.count(&stop(&a)), 0);
    assert_eq!(
        h.deadline(),
        Some(h.now() + h.config.upstream_stall_timeout),
        "the recovery bound is lifted"
    );
}

#[test]
fn reconnect_backoff_doubles_and_caps_at_max_backoff() {
    let (mut h, a) = Harness::playing_with(|config| {
        config.initial_backoff = ms(100);
        config.max_backoff = ms(350);
        config.reconnects_per_session = 5;
    });
    let mut delays = Vec::new();
    for _ in 0..5 {
        assert_eq!(h.step(), vec![Output::ClosePlayback]);
        let stalled = h.now();
        assert_eq!(h.step(), vec![open(&a)]);
        delays.push(h.now() - stalled);
    }
    assert_eq!(delays, vec![ms(100), ms(200), ms(350), ms(350), ms(350)]);
}

#[test]
fn data_resets_the_reconnect_backoff() {
    let (mut h, _) = Harness::playing();
    let initial = h.config.initial_backoff;
    for expected in [initial, initial * 2] {
        h.step();
        let stalled = h.now();
        h.step();
        assert_eq!(h.now() - stalled, expected);
    }
    h.data();
    h.step();
    let stalled = h.now();
    h.step();
    assert_eq!(h.now() - stalled, initial);
}

#[test]
fn session_is_replaced_after_reconnects_per_session_failed_reconnects() {
    let (mut h, a) = Harness::playing();
    assert_eq!(
        stall_out(&mut h, &a),
        vec![
            Output::ClosePlayback,
            stop(&a),
            session_ended(&a, "upstream_stalled"),
            request(&[1]),
        ]
    );
    assert_eq!(h.channel().session(), None);
    assert_eq!(
        h.count(&open(&a)),
        1 + h.config.reconnects_per_session as usize
    );
}

#[test]
fn failover_session_reports_its_own_start() {
    let (mut h, a) = Harness::playing();
    stall_out(&mut h, &a);
    let b = session(2, "b");
    assert_eq!(h.grant(&b), vec![open(&b)]);
    assert_eq!(h.data(), vec![started(&b)]);
    assert_eq!(h.channel().session(), Some(&b));
    assert_eq!(h.count(&stop(&a)), 1);
    assert_eq!(h.count(&session_ended(&a, "upstream_stalled")), 1);
}

#[test]
fn failover_session_gets_fresh_reconnects() {
    let (mut h, a) = Harness::playing();
    stall_out(&mut h, &a);
    let (b, _) = h.answer(2);
    h.data();
    assert_eq!(
        stall_out(&mut h, &b),
        vec![
            Output::ClosePlayback,
            stop(&b),
            session_ended(&b, "upstream_stalled"),
            request(&[2]),
        ]
    );
}

#[test]
fn playback_end_reconnects_like_a_stall() {
    let (mut h, a) = Harness::playing();
    h.advance(secs(1));
    // The body is gone already: nothing to close.
    assert_eq!(h.input(Input::PlaybackEnded), vec![]);
    let ended_at = h.now();
    assert_eq!(h.step(), vec![open(&a)]);
    assert_eq!(h.now(), ended_at + h.config.initial_backoff);
}

#[test]
fn playback_failure_reconnects_like_a_stall() {
    let (mut h, a) = Harness::playing();
    h.advance(secs(1));
    h.input(Input::PlaybackEnded);
    h.step();
    let failed_at = h.now();
    assert_eq!(h.input(Input::PlaybackFailed("503".into())), vec![]);
    assert_eq!(h.step(), vec![open(&a)]);
    assert_eq!(h.now(), failed_at + h.config.initial_backoff * 2);
}

#[test]
fn repeated_playback_failures_fail_over_to_a_new_session() {
    let (mut h, a) = Harness::playing();
    for _ in 0..h.config.reconnects_per_session {
        assert_eq!(h.input(Input::PlaybackFailed("404".into())), vec![]);
        assert_eq!(h.step(), vec![open(&a)]);
    }
    assert_eq!(
        h.input(Input::PlaybackFailed("404".into())),
        vec![
            stop(&a),
            session_ended(&a, "upstream_stalled"),
            request(&[1]),
        ]
    );
}

#[test]
fn playback_end_reported_after_a_stall_close_is_not_counted_again() {
    let (mut h, a) = Harness::playing();
    assert_eq!(h.step(), vec![Output::ClosePlayback]);
    let stalled = h.now();
    let retry = h.deadline();
    // The driver's reader notices the close it was asked for.
    assert_eq!(h.input(Input::PlaybackEnded), vec![]);
    assert_eq!(h.input(Input::PlaybackFailed("closed".into())), vec![]);
    assert_eq!(h.input(Input::Data(CHUNK_BYTES)), vec![], "stale data");
    assert_eq!(h.deadline(), retry);
    assert_eq!(h.step(), vec![open(&a)]);
    assert_eq!(h.now(), stalled + h.config.initial_backoff);
    h.step();
    let stalled = h.now();
    h.step();
    assert_eq!(
        h.now() - stalled,
        h.config.initial_backoff * 2,
        "second failure"
    );
}

#[test]
fn stream_ends_recovery_timeout_after_the_outage_is_detected() {
    let (mut h, a) = Harness::playing_with(|config| config.recovery_timeout = secs(5));
    assert_eq!(h.step(), vec![Output::ClosePlayback]);
    let stalled = h.now();
    assert_eq!(h.step(), vec![open(&a)]);
    assert_eq!(
        h.step(),
        vec![
            Output::ClosePlayback,
            stop(&a),
            session_ended(&a, "upstream_lost"),
            ended("upstream_lost"),
        ]
    );
    assert_eq!(h.now(), stalled + secs(5));
    assert_eq!(h.deadline(), None);
    assert_eq!(h.count(&stop(&a)), 1);
    let session_ends = |o: &Output| matches!(o, Output::SessionEnded { .. });
    assert_eq!(h.count_matching(session_ends), 1);
    let start_failures = |o: &Output| matches!(o, Output::StartFailed(_));
    assert_eq!(h.count_matching(start_failures), 0);
}

#[test]
fn data_within_the_recovery_timeout_lifts_the_bound() {
    let (mut h, _) = Harness::playing_with(|config| config.recovery_timeout = secs(5));
    h.step();
    h.step();
    h.advance(secs(4));
    h.data();
    let resumed = h.now();
    assert_eq!(h.advance(secs(9)), vec![]);
    assert!(!h.channel().is_ended());
    assert_eq!(
        h.deadline(),
        Some(resumed + h.config.upstream_stall_timeout)
    );
}

#[test]
fn recovering_stream_keeps_requesting_sessions_until_the_recovery_bound() {
    let (mut h, a) = Harness::playing();
    let outage = T0 + h.config.upstream_stall_timeout;
    assert_eq!(stall_out(&mut h, &a).last(), Some(&request(&[1])));
    // No engine ever again: the machine retries, round after round, past
    // `session_attempts`, until the recovery bound ends the channel.
    let mut requests = 0;
    for _ in 0..100 {
        assert_eq!(h.input(Input::NoEngine), vec![]);
        let outputs = h.step();
        if matches!(outputs.as_slice(), [Output::RequestSession { .. }]) {
            requests += 1;
            continue;
        }
        assert_eq!(outputs, vec![ended("upstream_lost")]);
        break;
    }
    assert!(h.channel().is_ended());
    assert!(requests > h.config.session_attempts, "{requests} requests");
    assert_eq!(h.now(), outage + h.config.recovery_timeout);
    assert_eq!(h.count(&stop(&a)), 1);
    let session_ends = |o: &Output| matches!(o, Output::SessionEnded { .. });
    assert_eq!(h.count_matching(session_ends), 1);
    let start_failures = |o: &Output| matches!(o, Output::StartFailed(_));
    assert_eq!(h.count_matching(start_failures), 0);
}
