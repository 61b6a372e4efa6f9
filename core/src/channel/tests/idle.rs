//! The idle grace: a channel nobody watches stops its session.

use super::*;

fn short_grace(config: &mut ChannelConfig) {
    config.idle_grace = secs(3);
}

#[test]
fn no_viewers_for_idle_grace_stops_the_channel() {
    let (mut h, a) = Harness::playing_with(short_grace);
    h.advance(secs(1));
    h.data();
    assert_eq!(h.input(Input::Viewers(0)), vec![]);
    let left = h.now();
    assert_eq!(
        h.step(),
        vec![
            Output::ClosePlayback,
            stop(&a),
            session_ended(&a, "idle"),
            ended("idle"),
        ]
    );
    assert_eq!(h.now(), left + secs(3));
    assert_eq!(h.deadline(), None);
}

#[test]
fn a_viewer_within_the_grace_cancels_the_idle_stop() {
    let (mut h, a) = Harness::playing_with(short_grace);
    h.input(Input::Viewers(0));
    h.advance(secs(2));
    assert_eq!(h.input(Input::Viewers(1)), vec![]);
    assert_eq!(h.advance(secs(2)), vec![]);
    assert!(!h.channel().is_ended());
    assert_eq!(h.count(&stop(&a)), 0);
    assert_eq!(h.deadline(), Some(T0 + h.config.upstream_stall_timeout));
}

#[test]
fn the_grace_starts_over_when_viewers_leave_again() {
    let (mut h, _) = Harness::playing_with(short_grace);
    h.input(Input::Viewers(0));
    h.advance(secs(2));
    h.input(Input::Viewers(2));
    h.advance(secs(2));
    h.input(Input::Viewers(0));
    let left_again = h.now();
    assert_eq!(h.step().last(), Some(&ended("idle")));
    assert_eq!(h.now(), left_again + secs(3));
}

#[test]
fn repeated_zero_viewer_reports_do_not_extend_the_grace() {
    let (mut h, _) = Harness::playing_with(short_grace);
    h.input(Input::Viewers(0));
    let left = h.now();
    h.advance(secs(2));
    h.input(Input::Viewers(0));
    assert_eq!(h.step().last(), Some(&ended("idle")));
    assert_eq!(h.now(), left + secs(3));
}

#[test]
fn a_channel_that_never_gets_viewers_ends_after_idle_grace() {
    let mut h = Harness::new();
    h.drain();
    h.advance(secs(1));
    let a = session(1, "a");
    h.grant(&a);
    assert_eq!(h.data(), vec![started(&a)]);
    assert_eq!(
        h.step(),
        vec![
            Output::ClosePlayback,
            stop(&a),
            session_ended(&a, "idle"),
            ended("idle"),
        ]
    );
    assert_eq!(h.now(), T0 + h.config.idle_grace);
}

#[test]
fn an_unwatched_channel_ends_idle_before_its_start_times_out() {
    let mut h = Harness::new();
    h.drain();
    // Nobody waits for the start, so there is no one to send a start failure to.
    assert_eq!(h.step(), vec![ended("idle")]);
    assert_eq!(h.now(), T0 + h.config.idle_grace);
}
