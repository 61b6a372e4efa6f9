//! From the channel's creation to its first media byte, or to its start failure.

use super::*;

#[test]
fn new_channel_requests_a_session_at_once() {
    let mut h = Harness::new();
    assert_eq!(h.drain(), vec![request(&[])]);
    let first = h.config.idle_grace.min(h.config.start_timeout);
    assert_eq!(h.deadline(), Some(T0 + first));
}

#[test]
fn granted_session_opens_its_playback_url() {
    let mut h = Harness::watched();
    h.advance(ms(300));
    let a = session(1, "a");
    assert_eq!(h.grant(&a), vec![open(&a)]);
    assert_eq!(h.channel().session(), Some(&a));
    assert_eq!(
        h.deadline(),
        Some(h.now() + h.config.upstream_stall_timeout)
    );
}

#[test]
fn first_data_reports_the_session_started_once() {
    let mut h = Harness::watched();
    let a = session(1, "a");
    h.grant(&a);
    assert_eq!(h.input(Input::PlaybackOpened), vec![]);
    assert!(!h.channel().has_started());
    assert_eq!(h.data(), vec![started(&a)]);
    assert!(h.channel().has_started());
    for _ in 0..3 {
        assert_eq!(h.data(), vec![]);
    }
    assert_eq!(h.count(&started(&a)), 1);
}

#[test]
fn data_before_the_playback_answer_counts_as_the_start() {
    let mut h = Harness::watched();
    let a = session(1, "a");
    h.grant(&a);
    assert_eq!(h.data(), vec![started(&a)]);
    assert_eq!(h.input(Input::PlaybackOpened), vec![]);
}

#[test]
fn empty_reads_are_not_media() {
    let mut h = Harness::watched();
    let a = session(1, "a");
    h.grant(&a);
    assert_eq!(h.input(Input::Data(0)), vec![]);
    assert!(!h.channel().has_started());
}

#[test]
fn started_stream_has_no_start_deadline_left() {
    let (mut h, _) = Harness::playing_with(|config| {
        config.upstream_stall_timeout = secs(40);
        config.start_timeout = secs(30);
    });
    h.advance(secs(29));
    h.data();
    assert_eq!(h.deadline(), Some(h.now() + secs(40)));
    assert_eq!(h.advance(secs(39)), vec![]);
}

#[test]
fn refused_session_is_retried_after_initial_backoff_excluding_the_engine() {
    let mut h = Harness::watched();
    h.advance(ms(700));
    let failed_at = h.now();
    assert_eq!(h.input(failed(1, refused("unknown content"))), vec![]);
    assert_eq!(h.deadline(), Some(failed_at + h.config.initial_backoff));
    assert_eq!(h.step(), vec![request(&[1])]);
    assert_eq!(h.now(), failed_at + h.config.initial_backoff);
}

#[test]
fn session_request_backoff_doubles_per_failure_up_to_max_backoff() {
    let mut h = Harness::watched_with(|config| {
        config.session_attempts = 5;
        config.initial_backoff = ms(100);
        config.max_backoff = ms(300);
    });
    let mut delays = Vec::new();
    let mut excluded = Vec::new();
    for port in 1..=4 {
        h.input(failed(
            port,
            SessionError::Failed("connection refused".into()),
        ));
        excluded.push(port);
        let failed_at = h.now();
        assert_eq!(h.step(), vec![request(&excluded)]);
        delays.push(h.now() - failed_at);
    }
    assert_eq!(delays, vec![ms(100), ms(200), ms(300), ms(300)]);
}

#[test]
fn start_fails_with_the_engine_error_after_session_attempts_failures() {
    let mut h = Harness::watched();
    assert_eq!(h.config.session_attempts, 3);
    assert_eq!(h.input(failed(1, refused("r1"))), vec![]);
    assert_eq!(h.step(), vec![request(&[1])]);
    let error = SessionError::Failed("bad json".into());
    assert_eq!(h.input(failed(2, error)), vec![]);
    assert_eq!(h.step(), vec![request(&[1, 2])]);
    assert_eq!(
        h.input(failed(3, refused("busy"))),
        vec![
            start_failed(StartFailure::Engine("busy".into())),
            ended("start_failed"),
        ]
    );
    assert_eq!(h.deadline(), None);
    assert!(h.channel().is_ended());
}

#[test]
fn start_fails_with_no_engine_when_none_is_ever_available() {
    let mut h = Harness::watched();
    assert_eq!(h.input(Input::NoEngine), vec![]);
    assert_eq!(h.step(), vec![request(&[])]);
    assert_eq!(h.input(Input::NoEngine), vec![]);
    assert_eq!(h.step(), vec![request(&[])]);
    assert_eq!(
        h.input(Input::NoEngine),
        vec![start_failed(StartFailure::NoEngine), ended("start_failed")]
    );
    assert_eq!(StartFailure::NoEngine.code(), "no_engine_available");
}

#[test]
fn engine_timeouts_fail_the_start_with_timeout() {
    let mut h = Harness::watched();
    for port in 1..=2 {
        assert_eq!(h.input(failed(port, SessionError::Timeout)), vec![]);
        h.step();
    }
    assert_eq!(
        h.input(failed(3, SessionError::Timeout)),
        vec![start_failed(StartFailure::Timeout), ended("start_failed")]
    );
}

#[test]
fn an_engine_error_outranks_a_later_lack_of_engines() {
    let mut h = Harness::watched();
    h.input(failed(1, refused("gone")));
    h.step();
    h.input(Input::NoEngine);
    h.step();
    assert_eq!(
        h.input(Input::NoEngine),
        vec![
            start_failed(StartFailure::Engine("gone".into())),
            ended("start_failed"),
        ]
    );
}

#[test]
fn start_timeout_while_requesting_reports_the_last_failure() {
    let mut h = Harness::watched();
    h.input(Input::NoEngine);
    assert_eq!(h.step(), vec![request(&[])]);
    // The driver's request never comes back.
    assert_eq!(
        h.step(),
        vec![start_failed(StartFailure::NoEngine), ended("start_timeout")]
    );
    assert_eq!(h.now(), T0 + h.config.start_timeout);
}

#[test]
fn start_times_out_when_a_granted_session_sends_nothing() {
    let mut h = Harness::watched_with(|config| {
        config.upstream_stall_timeout = secs(60);
        config.start_timeout = secs(30);
    });
    h.advance(secs(1));
    let a = session(1, "a");
    assert_eq!(h.grant(&a), vec![open(&a)]);
    assert_eq!(h.input(Input::PlaybackOpened), vec![]);
    assert_eq!(h.deadline(), Some(T0 + secs(30)), "counted from creation");
    assert_eq!(
        h.step(),
        vec![
            start_failed(StartFailure::Timeout),
            Output::ClosePlayback,
            stop(&a),
            ended("start_timeout"),
        ]
    );
    assert_eq!(h.now(), T0 + secs(30));
    assert_eq!(h.deadline(), None);
    assert_eq!(
        h.count_matching(|o| matches!(o, Output::SessionEnded { .. })),
        0
    );
}

#[test]
fn start_timeout_bounds_the_reconnects_and_failovers_of_a_silent_engine() {
    // The stall timeout is much shorter than the start timeout, so the silent
    // sessions are reopened and replaced until the start deadline.
    let mut h = Harness::watched_with(|config| config.upstream_stall_timeout = secs(5));
    let mut granted = vec![h.answer(1).0];
    for _ in 0..100 {
        if h.channel().is_ended() {
            break;
        }
        if matches!(h.step().last(), Some(Output::RequestSession { .. })) {
            granted.push(h.answer(1).0);
        }
    }
    assert!(h.channel().is_ended());
    assert_eq!(h.now(), T0 + h.config.start_timeout);
    assert!(granted.len() > 1, "expected a failover before the deadline");
    for session in &granted {
        assert_eq!(h.count(&stop(session)), 1, "{session:?}");
    }
    assert_eq!(h.count(&start_failed(StartFailure::Timeout)), 1);
    assert_eq!(h.count(&ended("start_timeout")), 1);
    let starts_or_ends =
        |o: &Output| matches!(o, Output::SessionStarted(_) | Output::SessionEnded { .. });
    assert_eq!(h.count_matching(starts_or_ends), 0);
}
