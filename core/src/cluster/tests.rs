use super::*;
use crate::machine::Machine;
use crate::time::Duration;

const TTL: Duration = Duration::from_secs(9);

fn at(ms: u64) -> Instant {
    Instant::from_micros(ms * 1000)
}

fn machine() -> Leases {
    Leases::new(LeaseConfig::new("me".into(), "http://me:1".into(), TTL))
}

fn other(fencing: u64) -> Holder {
    Holder {
        instance: "other".into(),
        advertise: "http://other:1".into(),
        fencing,
    }
}

fn mine(fencing: u64) -> Holder {
    Holder {
        instance: "me".into(),
        advertise: "http://me:1".into(),
        fencing,
    }
}

fn drain(leases: &mut Leases) -> Vec<Output> {
    std::iter::from_fn(|| leases.poll_output()).collect()
}

/// The one Redis command among `outputs`.
fn command(outputs: &[Output]) -> (OpId, Command) {
    let commands: Vec<_> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Redis { op, command, .. } => Some((*op, command.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(commands.len(), 1, "one command expected in {outputs:?}");
    commands[0].clone()
}

/// Answers Redis command `op` with `result` at `now`.
fn reply(leases: &mut Leases, now: Instant, op: OpId, result: Result<Reply, String>) {
    leases.handle_input(now, Input::Reply { op, result });
}

fn routes(outputs: &[Output]) -> Vec<(TicketId, Route)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Route { ticket, route } => Some((*ticket, route.clone())),
            _ => None,
        })
        .collect()
}

/// A machine holding channel `a` with `fencing`, taken at 0 ms.
fn holding(fencing: u64) -> (Leases, Vec<Output>) {
    let mut leases = machine();
    leases.want(at(0), TicketId(1), "a");
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(5), op, Ok(Reply::Acquired { fencing }));
    let outputs = drain(&mut leases);
    (leases, outputs)
}

#[test]
fn a_new_channel_takes_the_lease_before_its_session() {
    let mut leases = machine();
    leases.want(at(0), TicketId(1), "a");
    let outputs = drain(&mut leases);
    assert!(routes(&outputs).is_empty(), "no route before Redis answers");
    let (op, cmd) = command(&outputs);
    assert_eq!(
        cmd,
        Command::Acquire {
            channel: "a".into(),
            instance: "me".into(),
            advertise: "http://me:1".into(),
            ttl: TTL,
        }
    );
    assert!(
        matches!(outputs[0], Output::Redis { timeout, .. } if timeout == Duration::from_secs(1))
    );
    reply(&mut leases, at(5), op, Ok(Reply::Acquired { fencing: 7 }));
    let outputs = drain(&mut leases);
    assert_eq!(routes(&outputs), [(TicketId(1), Route::Own { fencing: 7 })]);
    assert!(leases.holds("a"));
    assert_eq!(
        leases.held(),
        [HeldLease {
            channel: "a".into(),
            fencing: 7,
            // Counted from when it was asked: Redis set it no earlier.
            expires: at(0) + TTL
        }]
    );
    // Asked again (a reconnect): answered at once, nothing sent.
    leases.want(at(10), TicketId(2), "a");
    let outputs = drain(&mut leases);
    assert_eq!(
        outputs,
        [Output::Route {
            ticket: TicketId(2),
            route: Route::Own { fencing: 7 }
        }]
    );
}

#[test]
fn a_channel_held_elsewhere_is_relayed_from_its_owner() {
    let mut leases = machine();
    leases.want(at(0), TicketId(1), "a");
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(2), op, Ok(Reply::Taken(Some(other(3)))));
    let outputs = drain(&mut leases);
    assert_eq!(routes(&outputs), [(TicketId(1), Route::Relay(other(3)))]);
    assert!(!leases.holds("a"));
    assert_eq!(leases.highest_fencing("a"), Some(3));
    assert_eq!(
        leases.poll_timeout(),
        None,
        "nothing to do for a relayed channel"
    );
}

#[test]
fn a_held_lease_is_renewed_every_third_of_its_ttl() {
    let (mut leases, _) = holding(1);
    assert_eq!(leases.poll_timeout(), Some(at(5) + TTL / 3));
    leases.handle_timeout(at(3004));
    assert!(drain(&mut leases).is_empty(), "not yet due");
    leases.handle_timeout(at(3005));
    let (op, cmd) = command(&drain(&mut leases));
    assert_eq!(
        cmd,
        Command::Renew {
            channel: "a".into(),
            mine: mine(1),
            ttl: TTL
        }
    );
    assert_eq!(leases.poll_timeout(), None, "one call in flight at a time");
    reply(&mut leases, at(3010), op, Ok(Reply::Kept));
    assert_eq!(
        leases.held()[0].expires,
        at(3005) + TTL,
        "counted from when it was sent"
    );
    assert_eq!(leases.poll_timeout(), Some(at(3010) + TTL / 3));
}

#[test]
fn a_renewal_that_finds_another_owner_loses_the_channel() {
    let (mut leases, _) = holding(1);
    leases.handle_timeout(at(3005));
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(3006), op, Ok(Reply::Gone(Some(other(2)))));
    let outputs = drain(&mut leases);
    assert_eq!(
        outputs,
        [Output::Lost {
            channel: "a".into(),
            owner: Some(other(2))
        }]
    );
    assert!(!leases.holds("a"));
    assert_eq!(leases.highest_fencing("a"), Some(2));
    // The ended channel's release sends nothing: the lease is not this instance's.
    leases.finished(at(3007), "a");
    assert!(drain(&mut leases).is_empty());
}

#[test]
fn failed_renewals_keep_the_channel_and_are_retried() {
    let (mut leases, _) = holding(1);
    leases.handle_timeout(at(3005));
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(4005), op, Err("timed out".into()));
    let outputs = drain(&mut leases);
    assert!(matches!(
        &outputs[..],
        [Output::Notice(Notice::RedisFailed { call: "renew", .. })]
    ));
    assert!(
        leases.holds("a"),
        "Redis trouble does not stop a running channel"
    );
    assert_eq!(leases.poll_timeout(), Some(at(4505)));
    leases.handle_timeout(at(4505));
    let (_, cmd) = command(&drain(&mut leases));
    assert!(matches!(cmd, Command::Renew { .. }));
}

#[test]
fn failed_calls_in_a_row_wait_twice_as_long_up_to_the_renewal_interval() {
    let (mut leases, _) = holding(1);
    let mut now = at(3005);
    leases.handle_timeout(now);
    let mut waits = Vec::new();
    for _ in 0..5 {
        let (op, _) = command(&drain(&mut leases));
        reply(&mut leases, now, op, Err("down".into()));
        drain(&mut leases);
        let next = leases.poll_timeout().expect("a retry");
        waits.push(next - now);
        now = next;
        leases.handle_timeout(now);
    }
    let ms = Duration::from_millis;
    assert_eq!(waits, [ms(500), ms(1000), ms(2000), ms(3000), ms(3000)]);
    // An answer starts the count again.
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, now, op, Ok(Reply::Kept));
    leases.handle_timeout(now + TTL / 3);
    let (op, _) = command(&drain(&mut leases));
    let later = now + TTL / 3;
    reply(&mut leases, later, op, Err("down".into()));
    assert_eq!(leases.poll_timeout(), Some(later + ms(500)));
}

#[test]
fn a_lease_gone_from_redis_is_taken_again_and_lost_if_another_was_faster() {
    let (mut leases, _) = holding(4);
    leases.handle_timeout(at(3005));
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(3006), op, Ok(Reply::Gone(None)));
    let outputs = drain(&mut leases);
    assert!(outputs.contains(&Output::Notice(Notice::Expired {
        channel: "a".into()
    })));
    let (op, cmd) = command(&outputs);
    assert!(matches!(cmd, Command::Acquire { .. }));
    // Asked meanwhile (a reconnect): the channel runs here, so it stays here.
    leases.want(at(3007), TicketId(9), "a");
    assert_eq!(routes(&drain(&mut leases)), [(TicketId(9), Route::Local)]);
    reply(&mut leases, at(3008), op, Ok(Reply::Taken(Some(other(5)))));
    assert_eq!(
        drain(&mut leases),
        [Output::Lost {
            channel: "a".into(),
            owner: Some(other(5))
        }]
    );
}

#[test]
fn unreachable_redis_starts_a_new_channel_locally_after_the_bounded_wait() {
    let mut leases = machine();
    leases.want(at(0), TicketId(1), "a");
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(1000), op, Err("refused".into()));
    drain(&mut leases);
    // Retried after 500 ms; still failing.
    assert_eq!(leases.poll_timeout(), Some(at(1500)));
    leases.handle_timeout(at(1500));
    let (op, _) = command(&drain(&mut leases));
    assert_eq!(
        leases.poll_timeout(),
        Some(at(2000)),
        "the wait bound runs while a call is in flight"
    );
    leases.handle_timeout(at(2000));
    let outputs = drain(&mut leases);
    assert_eq!(
        outputs,
        [
            Output::Notice(Notice::LocalFallback {
                channel: "a".into()
            }),
            Output::Route {
                ticket: TicketId(1),
                route: Route::Local
            }
        ]
    );
    assert!(!leases.holds("a"));
    // Redis answers later: the lease is taken for the channel running here.
    reply(
        &mut leases,
        at(2100),
        op,
        Ok(Reply::Acquired { fencing: 1 }),
    );
    let outputs = drain(&mut leases);
    assert!(routes(&outputs).is_empty(), "nobody waits any more");
    assert!(leases.holds("a"));
}

#[test]
fn a_local_channel_whose_lease_another_took_meanwhile_is_lost() {
    let mut leases = machine();
    leases.want(at(0), TicketId(1), "a");
    let (op, _) = command(&drain(&mut leases));
    leases.handle_timeout(at(2000));
    assert_eq!(routes(&drain(&mut leases)), [(TicketId(1), Route::Local)]);
    reply(&mut leases, at(2100), op, Ok(Reply::Taken(Some(other(8)))));
    assert_eq!(
        drain(&mut leases),
        [Output::Lost {
            channel: "a".into(),
            owner: Some(other(8))
        }],
        "two owners converge to one"
    );
}

#[test]
fn a_fencing_number_not_above_the_highest_seen_is_never_acted_on() {
    let mut leases = machine();
    // Seen: another owner with 12.
    leases.want(at(0), TicketId(1), "a");
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(1), op, Ok(Reply::Taken(Some(other(12)))));
    drain(&mut leases);
    // Redis restarts without its data: the counter starts again at 1.
    leases.want(at(100), TicketId(2), "a");
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(101), op, Ok(Reply::Acquired { fencing: 1 }));
    let outputs = drain(&mut leases);
    assert!(routes(&outputs).is_empty(), "not acted on");
    assert!(outputs.contains(&Output::Notice(Notice::StaleFencing {
        channel: "a".into(),
        got: 1,
        highest: 12
    })));
    let (op, cmd) = command(&outputs);
    assert_eq!(
        cmd,
        Command::Release {
            channel: "a".into(),
            mine: mine(1)
        }
    );
    assert!(!leases.holds("a"));
    reply(&mut leases, at(102), op, Ok(Reply::Done));
    let (op, cmd) = command(&drain(&mut leases));
    assert_eq!(
        cmd,
        Command::RaiseFencing {
            channel: "a".into(),
            at_least: 13
        }
    );
    reply(&mut leases, at(103), op, Ok(Reply::Done));
    let (op, cmd) = command(&drain(&mut leases));
    assert!(matches!(cmd, Command::Acquire { .. }));
    reply(
        &mut leases,
        at(104),
        op,
        Ok(Reply::Acquired { fencing: 13 }),
    );
    assert_eq!(
        routes(&drain(&mut leases)),
        [(TicketId(2), Route::Own { fencing: 13 })]
    );
    assert_eq!(leases.highest_fencing("a"), Some(13));
}

#[test]
fn a_clean_stop_releases_the_lease() {
    let (mut leases, _) = holding(3);
    leases.finished(at(100), "a");
    let outputs = drain(&mut leases);
    let (op, cmd) = command(&outputs);
    assert_eq!(
        cmd,
        Command::Release {
            channel: "a".into(),
            mine: mine(3)
        }
    );
    assert!(!leases.holds("a"));
    assert!(!leases.is_idle(), "the release is in flight");
    reply(&mut leases, at(101), op, Ok(Reply::Done));
    assert!(leases.is_idle());
    assert_eq!(leases.poll_timeout(), None);
}

#[test]
fn a_channel_that_ends_while_taking_the_lease_gives_it_back() {
    let mut leases = machine();
    leases.want(at(0), TicketId(1), "a");
    let (op, _) = command(&drain(&mut leases));
    leases.finished(at(1), "a");
    assert_eq!(
        leases.poll_timeout(),
        None,
        "no fallback for an ended channel"
    );
    reply(&mut leases, at(2), op, Ok(Reply::Acquired { fencing: 2 }));
    let outputs = drain(&mut leases);
    assert!(routes(&outputs).is_empty());
    let (_, cmd) = command(&outputs);
    assert_eq!(
        cmd,
        Command::Release {
            channel: "a".into(),
            mine: mine(2)
        }
    );
    assert!(!leases.holds("a"));
}

#[test]
fn a_successor_of_a_local_channel_that_ended_keeps_taking_the_lease() {
    let mut leases = machine();
    leases.want(at(0), TicketId(1), "a");
    let (op, _) = command(&drain(&mut leases));
    leases.handle_timeout(at(2000));
    assert_eq!(routes(&drain(&mut leases)), [(TicketId(1), Route::Local)]);
    leases.finished(at(2001), "a");
    leases.want(at(2002), TicketId(2), "a");
    assert_eq!(routes(&drain(&mut leases)), [(TicketId(2), Route::Local)]);
    reply(
        &mut leases,
        at(2003),
        op,
        Ok(Reply::Acquired { fencing: 1 }),
    );
    drain(&mut leases);
    assert!(leases.holds("a"), "the running successor holds it");
}

#[test]
fn this_instances_own_leftover_lease_is_waited_out_not_relayed() {
    let mut leases = machine();
    leases.want(at(0), TicketId(1), "a");
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(1), op, Ok(Reply::Taken(Some(mine(5)))));
    let outputs = drain(&mut leases);
    assert!(routes(&outputs).is_empty(), "never relayed to itself");
    assert_eq!(leases.poll_timeout(), Some(at(501)));
}

#[test]
fn replies_of_unknown_or_replaced_calls_are_ignored() {
    let (mut leases, _) = holding(1);
    reply(&mut leases, at(10), OpId(99), Ok(Reply::Gone(None)));
    assert!(drain(&mut leases).is_empty());
    assert!(leases.holds("a"));
}

#[test]
fn lease_values_round_trip_and_garbage_is_no_lease() {
    let holder = other(42);
    assert_eq!(Holder::decode(&holder.encode()), Some(holder));
    assert_eq!(Holder::decode("not json"), None);
    assert_eq!(Holder::decode("{}"), None);
}

/// A machine holding channel `a` with fencing 1 (confirmed until 9 s), asked for a new
/// session at 9.5 s: its renewals have not been answered since, so the lease may be
/// another instance's now. Returns the renewal sent for the question.
fn asked_after_the_lease_lapsed() -> (Leases, OpId) {
    let (mut leases, _) = holding(1);
    leases.want(at(9500), TicketId(2), "a");
    let outputs = drain(&mut leases);
    assert!(
        routes(&outputs).is_empty(),
        "no session on a lapsed lease before Redis confirms it: {outputs:?}"
    );
    let (op, cmd) = command(&outputs);
    assert!(matches!(cmd, Command::Renew { mine: ref held, .. } if *held == mine(1)));
    (leases, op)
}

/// What a session asked for at ticket 2 gets when `holder` has taken channel `a`: it
/// relays from `holder`, and the channel is lost here.
fn relayed_and_lost(holder: Holder) -> [Output; 2] {
    [
        Output::Route {
            ticket: TicketId(2),
            route: Route::Relay(holder.clone()),
        },
        Output::Lost {
            channel: "a".into(),
            owner: Some(holder),
        },
    ]
}

#[test]
fn a_session_wanted_under_a_confirmed_lease_is_opened_at_once() {
    let (mut leases, _) = holding(1);
    leases.want(at(8999), TicketId(2), "a");
    assert_eq!(
        drain(&mut leases),
        [Output::Route {
            ticket: TicketId(2),
            route: Route::Own { fencing: 1 }
        }]
    );
}

#[test]
fn a_session_wanted_after_the_lease_lapsed_waits_for_its_renewal() {
    let (mut leases, op) = asked_after_the_lease_lapsed();
    assert_eq!(
        leases.poll_timeout(),
        Some(at(11_500)),
        "bounded by the wait"
    );
    reply(&mut leases, at(9600), op, Ok(Reply::Kept));
    assert_eq!(
        routes(&drain(&mut leases)),
        [(TicketId(2), Route::Own { fencing: 1 })]
    );
    assert_eq!(leases.poll_timeout(), Some(at(12_600)), "renewed as usual");
}

#[test]
fn a_lapsed_lease_another_instance_took_relays_the_session_and_loses_the_channel() {
    let (mut leases, op) = asked_after_the_lease_lapsed();
    reply(&mut leases, at(9600), op, Ok(Reply::Gone(Some(other(4)))));
    assert_eq!(drain(&mut leases), relayed_and_lost(other(4)));
    assert_eq!(leases.highest_fencing("a"), Some(4));
}

#[test]
fn a_lapsed_lease_gone_from_redis_is_taken_again_before_the_session() {
    let (mut leases, op) = asked_after_the_lease_lapsed();
    reply(&mut leases, at(9600), op, Ok(Reply::Gone(None)));
    let outputs = drain(&mut leases);
    assert!(routes(&outputs).is_empty(), "{outputs:?}");
    let (op, cmd) = command(&outputs);
    assert!(matches!(cmd, Command::Acquire { .. }));
    reply(
        &mut leases,
        at(9700),
        op,
        Ok(Reply::Acquired { fencing: 5 }),
    );
    assert_eq!(
        routes(&drain(&mut leases)),
        [(TicketId(2), Route::Own { fencing: 5 })],
        "the session carries the new number, never the old one"
    );
}

#[test]
fn a_lapsed_lease_taken_again_by_another_relays_the_session() {
    let (mut leases, op) = asked_after_the_lease_lapsed();
    reply(&mut leases, at(9600), op, Ok(Reply::Gone(None)));
    let (op, _) = command(&drain(&mut leases));
    reply(&mut leases, at(9700), op, Ok(Reply::Taken(Some(other(6)))));
    assert_eq!(drain(&mut leases), relayed_and_lost(other(6)));
}

#[test]
fn a_lapsed_lease_redis_does_not_confirm_starts_the_session_locally_after_the_wait() {
    let (mut leases, op) = asked_after_the_lease_lapsed();
    reply(&mut leases, at(10_500), op, Err("timed out".into()));
    drain(&mut leases);
    leases.handle_timeout(at(11_000));
    let (op, _) = command(&drain(&mut leases));
    leases.handle_timeout(at(11_499));
    assert!(routes(&drain(&mut leases)).is_empty());
    leases.handle_timeout(at(11_500));
    assert_eq!(
        drain(&mut leases),
        [
            Output::Notice(Notice::LocalFallback {
                channel: "a".into()
            }),
            Output::Route {
                ticket: TicketId(2),
                route: Route::Local
            }
        ]
    );
    assert!(leases.holds("a"), "the running channel keeps its lease");
    // Confirmed later: nobody waits any more.
    reply(&mut leases, at(11_600), op, Ok(Reply::Kept));
    assert!(routes(&drain(&mut leases)).is_empty());
    assert_eq!(leases.poll_timeout(), Some(at(14_600)));
}
