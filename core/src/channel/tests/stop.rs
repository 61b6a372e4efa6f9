//! Stopping: by request, exactly once, and nothing after the end; late session
//! grants are stopped rather than leaked.

use super::*;

#[test]
fn stop_ends_the_channel_with_one_stop_and_one_session_end() {
    let (mut h, a) = Harness::playing();
    h.advance(secs(1));
    assert_eq!(
        h.input(Input::Stop("deleted".into())),
        vec![
            Output::ClosePlayback,
            stop(&a),
            session_ended(&a, "deleted"),
            ended("deleted"),
        ]
    );
    assert!(h.channel().is_ended());
    assert_eq!(h.deadline(), None);
}

#[test]
fn stop_before_the_first_byte_reports_no_session_end() {
    let mut h = Harness::watched();
    let a = session(1, "a");
    h.grant(&a);
    assert_eq!(
        h.input(Input::Stop("deleted".into())),
        vec![Output::ClosePlayback, stop(&a), ended("deleted")]
    );
}

#[test]
fn stop_while_requesting_has_no_session_to_stop() {
    let mut h = Harness::watched();
    assert_eq!(
        h.input(Input::Stop("shutdown".into())),
        vec![ended("shutdown")]
    );
}

#[test]
fn stop_while_reconnecting_does_not_close_the_playback_again() {
    let (mut h, a) = Harness::playing();
    assert_eq!(h.step(), vec![Output::ClosePlayback]);
    assert_eq!(
        h.input(Input::Stop("deleted".into())),
        vec![stop(&a), session_ended(&a, "deleted"), ended("deleted")]
    );
}

#[test]
fn inputs_after_the_end_produce_nothing() {
    let (mut h, a) = Harness::playing();
    h.input(Input::Stop("deleted".into()));
    let late = [
        Input::SessionReady(session(2, "b")),
        failed(1, refused("late")),
        Input::NoEngine,
        Input::PlaybackOpened,
        Input::PlaybackFailed("late".into()),
        Input::Data(CHUNK_BYTES),
        Input::PlaybackEnded,
        Input::Viewers(0),
        Input::Viewers(3),
        Input::Stop("again".into()),
    ];
    for input in late {
        assert_eq!(h.input(input.clone()), vec![], "{input:?}");
        assert_eq!(h.deadline(), None, "{input:?}");
    }
    assert_eq!(h.inner.jump(secs(3600)), vec![]);
    assert_eq!(h.count(&stop(&a)), 1);
    assert_eq!(h.count_matching(|o| matches!(o, Output::Ended { .. })), 1);
}

#[test]
fn late_session_grant_is_stopped_without_replacing_the_current_one() {
    let mut h = Harness::watched();
    let a = session(1, "a");
    let b = session(2, "b");
    h.grant(&a);
    assert_eq!(h.grant(&b), vec![stop(&b)]);
    assert_eq!(h.channel().session(), Some(&a));
    assert_eq!(h.data(), vec![started(&a)]);
    let outputs = h.input(Input::Stop("deleted".into()));
    assert!(!outputs.contains(&stop(&b)), "{outputs:?}");
    assert_eq!(h.count(&stop(&a)), 1);
    assert_eq!(h.count(&stop(&b)), 1);
}

#[test]
fn late_session_grant_while_reconnecting_is_stopped() {
    let (mut h, a) = Harness::playing();
    h.step();
    let b = session(2, "b");
    assert_eq!(h.grant(&b), vec![stop(&b)]);
    assert_eq!(h.step(), vec![open(&a)]);
}

#[test]
fn late_session_failure_while_playing_is_ignored() {
    let (mut h, _) = Harness::playing();
    let deadline = h.deadline();
    assert_eq!(h.input(failed(2, refused("late"))), vec![]);
    assert_eq!(h.input(Input::NoEngine), vec![]);
    assert_eq!(h.deadline(), deadline);
}
