use super::*;
use crate::lifecycle::{EngineAddr, KeyType, SessionInfo, StreamKey, StreamStarted};
use crate::time::Duration;

const TTL: Duration = Duration::from_secs(9);

fn at(ms: u64) -> Instant {
    Instant::from_micros(ms * 1000)
}

fn engine(port: u16) -> EngineAddr {
    EngineAddr {
        host: "engine".into(),
        port,
    }
}

fn machine() -> Slots {
    let lease = LeaseConfig::new("me".into(), "http://me:1".into(), TTL);
    Slots::new(SlotsConfig::new(&lease, 2))
}

fn record(instance: &str, fencing: u64) -> SessionRecord {
    SessionRecord {
        instance: instance.into(),
        fencing,
        engine: engine(1),
        command_url: "http://engine:1/ace/cmd/x".into(),
        stream_id: format!("stream-{instance}-{fencing}"),
        started: StreamStarted {
            container_id: None,
            engine: engine(1),
            stream: StreamKey {
                key_type: KeyType::ContentId,
                key: "c".into(),
            },
            session: SessionInfo {
                playback_session_id: "p".into(),
                stat_url: String::new(),
                command_url: "http://engine:1/ace/cmd/x".into(),
                is_live: true,
            },
            labels: Default::default(),
        },
        started_at: at(1),
        ended: false,
    }
}

fn drain(slots: &mut Slots) -> Vec<SlotOutput> {
    std::iter::from_fn(|| slots.poll_output()).collect()
}

/// The one Redis command among `outputs`.
fn command(outputs: &[SlotOutput]) -> (OpId, SlotCommand) {
    let commands: Vec<_> = outputs
        .iter()
        .filter_map(|output| match output {
            SlotOutput::Redis { op, command, .. } => Some((*op, command.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(commands.len(), 1, "{outputs:?}");
    commands[0].clone()
}

fn reserved(outputs: &[SlotOutput]) -> Option<Option<(ReservationId, EngineAddr)>> {
    outputs.iter().find_map(|output| match output {
        SlotOutput::Reserved { reserved, .. } => Some(reserved.clone()),
        _ => None,
    })
}

/// Reserves a slot on engine 1 for channel `c` (fencing 5).
fn holding(slots: &mut Slots) -> ReservationId {
    slots.reserve(at(0), 7, "c", 5, vec![engine(1)]);
    let (op, _) = command(&drain(slots));
    slots.reply(at(1), op, Ok(SlotReply::Reserved { slot: 1 }));
    let (id, _) = reserved(&drain(slots)).flatten().expect("reserved");
    id
}

#[test]
fn a_full_engine_passes_to_the_next_candidate_and_all_full_is_no_engine() {
    let mut slots = machine();
    slots.reserve(at(0), 7, "c", 5, vec![engine(1), engine(2)]);
    let (op, first) = command(&drain(&mut slots));
    match &first {
        SlotCommand::Reserve {
            engine: on,
            slots: 2,
            value,
            ttl,
        } => {
            assert_eq!(*on, engine(1));
            assert_eq!(value.fencing, 5);
            assert_eq!(value.instance, "me");
            assert_eq!(*ttl, TTL);
        }
        other => panic!("{other:?}"),
    }
    slots.reply(at(1), op, Ok(SlotReply::Full));
    let outputs = drain(&mut slots);
    assert_eq!(reserved(&outputs), None, "not answered yet");
    let (op, second) = command(&outputs);
    assert!(matches!(second, SlotCommand::Reserve { engine: on, .. } if on == engine(2)));
    slots.reply(at(2), op, Ok(SlotReply::Reserved { slot: 0 }));
    let (_, on) = reserved(&drain(&mut slots)).flatten().expect("reserved");
    assert_eq!(on, engine(2));
    assert_eq!(slots.held()[0].slot, Some(0));

    slots.reserve(at(3), 8, "d", 6, vec![engine(1)]);
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(4), op, Ok(SlotReply::Full));
    assert_eq!(reserved(&drain(&mut slots)), Some(None), "capacity answer");
    slots.reserve(at(5), 9, "e", 6, Vec::new());
    assert_eq!(reserved(&drain(&mut slots)), Some(None));
}

#[test]
fn redis_silent_opens_without_a_slot_and_reserves_at_the_next_renewal() {
    let mut slots = machine();
    slots.reserve(at(0), 7, "c", 5, vec![engine(1), engine(2)]);
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(1000), op, Err("timeout".into()));
    let (_, on) = reserved(&drain(&mut slots))
        .flatten()
        .expect("opened anyway");
    assert_eq!(on, engine(1));
    assert_eq!(slots.held()[0].slot, None);
    let due = slots.poll_timeout().expect("renewal");
    assert_eq!(due, at(1000) + TTL / 3);
    slots.handle_timeout(due);
    let (op, again) = command(&drain(&mut slots));
    assert!(matches!(again, SlotCommand::Reserve { engine: on, .. } if on == engine(1)));
    slots.reply(due, op, Ok(SlotReply::Reserved { slot: 1 }));
    drain(&mut slots);
    assert_eq!(slots.held()[0].slot, Some(1));
}

#[test]
fn a_started_session_is_recorded_then_renewed_with_its_slot() {
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (op, write) = command(&drain(&mut slots));
    assert!(
        matches!(&write, SlotCommand::Record { channel, record: r, ttl } if channel == "c" && *r == record("me", 5) && *ttl == TTL * 3)
    );
    slots.reply(at(3), op, Ok(SlotReply::Done));
    let due = slots.poll_timeout().expect("renewal");
    assert_eq!(due, at(3) + TTL / 3);
    slots.handle_timeout(due);
    let (op, keep) = command(&drain(&mut slots));
    match keep {
        SlotCommand::Keep {
            slot: Some((on, 1, _)),
            record: Some((channel, kept)),
            ..
        } => {
            assert_eq!(on, engine(1));
            assert_eq!(channel, "c");
            assert_eq!(kept, record("me", 5));
        }
        other => panic!("{other:?}"),
    }
    // The slot expired meanwhile (a partition): reserved again at once.
    slots.reply(
        due,
        op,
        Ok(SlotReply::Kept {
            slot: false,
            record: true,
        }),
    );
    let (op, again) = command(&drain(&mut slots));
    assert!(matches!(again, SlotCommand::Reserve { .. }));
    slots.reply(due, op, Ok(SlotReply::Full));
    let outputs = drain(&mut slots);
    assert!(outputs
        .iter()
        .any(|output| matches!(output, SlotOutput::Notice(SlotNotice::Unreserved { .. }))));
    assert_eq!(slots.held()[0].slot, None, "runs over the cap, counted");
}

#[test]
fn a_stop_releases_before_the_lease_goes_and_retries_until_confirmed() {
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(3), op, Ok(SlotReply::Done));
    slots.stopped(at(4), id);
    assert!(slots.held().is_empty());
    assert!(slots.busy("c"));
    assert!(!slots.busy("d"));
    let (op, release) = command(&drain(&mut slots));
    assert!(matches!(
        &release,
        SlotCommand::Release { slot: Some((_, 1, _)), record: Some((channel, _)), .. } if channel == "c"
    ));
    slots.reply(at(5), op, Err("down".into()));
    assert!(slots.busy("c"));
    let due = slots.poll_timeout().expect("retry");
    slots.handle_timeout(due);
    let (op, again) = command(&drain(&mut slots));
    assert_eq!(again, release);
    slots.reply(due, op, Ok(SlotReply::Done));
    assert!(!slots.busy("c"));
    assert_eq!(slots.poll_timeout(), None);
}

#[test]
fn a_new_owner_claims_an_older_record_once_and_is_asked_to_stop_it() {
    let mut slots = machine();
    slots.acquired(at(0), "c", 9);
    let (op, claim) = command(&drain(&mut slots));
    assert!(matches!(
        &claim,
        SlotCommand::Claim { channel, rule: ClaimRule::Older { below: 9, except: None }, .. } if channel == "c"
    ));
    slots.reply(at(1), op, Err("down".into()));
    let due = slots.poll_timeout().expect("retried");
    slots.handle_timeout(due);
    let (op, again) = command(&drain(&mut slots));
    assert_eq!(again, claim);
    slots.reply(due, op, Ok(SlotReply::Claimed(record("dead", 4))));
    let outputs = drain(&mut slots);
    assert_eq!(
        outputs
            .iter()
            .filter(
                |output| matches!(output, SlotOutput::Orphan(found) if *found == record("dead", 4))
            )
            .count(),
        1
    );
    // Its takeover mark is written again with the renewals (a Redis restart loses
    // it) until it lapses.
    let claimed_at = due;
    let due = slots.poll_timeout().expect("the mark's renewal");
    assert_eq!(due, claimed_at + slots.config().renew_every);
    slots.handle_timeout(due);
    let (op, mark) = command(&drain(&mut slots));
    assert_eq!(
        mark,
        SlotCommand::Mark {
            stream: record("dead", 4).stream_id,
            instance: "me".into(),
            ttl: slots.config().taken_ttl - slots.config().renew_every,
        }
    );
    slots.reply(due, op, Ok(SlotReply::Done));
    let lapsed = due + slots.config().taken_ttl;
    slots.handle_timeout(lapsed);
    assert!(drain(&mut slots).is_empty());
    assert_eq!(slots.poll_timeout(), None, "nothing more to claim or mark");

    slots.acquired(at(2), "d", 9);
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(3), op, Ok(SlotReply::NotClaimed(None)));
    assert!(!drain(&mut slots)
        .iter()
        .any(|output| matches!(output, SlotOutput::Orphan(_))));
}

#[test]
fn a_new_lease_over_this_instances_own_running_session_spares_it() {
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    drain(&mut slots);
    slots.acquired(at(3), "c", 8);
    let (_, claim) = command(&drain(&mut slots));
    let SlotCommand::Claim { rule, .. } = claim else {
        panic!("{claim:?}");
    };
    assert!(!rule.allows(&record("me", 5)), "its own session runs on");
    assert!(rule.allows(&record("dead", 4)));
    assert!(!rule.allows(&record("dead", 4).ended()), "handled already");
    assert!(!rule.allows(&record("newer", 9)));
}

#[test]
fn a_returning_owner_acts_only_while_its_record_is_its_own() {
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(3), op, Ok(SlotReply::Done));
    slots.lost(at(4), "c");
    let (op, claim) = command(&drain(&mut slots));
    let SlotCommand::Claim { rule, .. } = &claim else {
        panic!("{claim:?}");
    };
    assert!(rule.allows(&record("me", 5)));
    assert!(!rule.allows(&record("me", 5).ended()));
    assert!(!rule.allows(&record("newer", 9)));
    slots.reply(at(5), op, Ok(SlotReply::TakenOver { by: "newer".into() }));
    let outputs = drain(&mut slots);
    assert!(outputs.contains(&SlotOutput::LostDecided {
        channel: "c".into(),
        act: false
    }));
    // Its stop then writes nothing over the newer owner's record.
    slots.stopped(at(6), id);
    let (_, release) = command(&drain(&mut slots));
    assert!(matches!(release, SlotCommand::Release { record: None, .. }));

    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(3), op, Ok(SlotReply::Done));
    slots.lost(at(4), "c");
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(5), op, Ok(SlotReply::Claimed(record("me", 5))));
    assert!(drain(&mut slots).contains(&SlotOutput::LostDecided {
        channel: "c".into(),
        act: true
    }));

    // Nothing recorded: acts, as a single instance does.
    let mut slots = machine();
    slots.lost(at(0), "x");
    assert_eq!(
        drain(&mut slots),
        vec![SlotOutput::LostDecided {
            channel: "x".into(),
            act: true
        }]
    );
}

#[test]
fn a_record_found_ended_is_not_written_again_and_values_round_trip() {
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(
        at(3),
        op,
        Ok(SlotReply::Superseded(record("me", 5).ended())),
    );
    drain(&mut slots);
    let due = slots.poll_timeout().expect("renewal");
    slots.handle_timeout(due);
    let (_, keep) = command(&drain(&mut slots));
    assert!(matches!(keep, SlotCommand::Keep { record: None, .. }));
    let value = record("me", 5);
    assert_eq!(SessionRecord::decode(&value.encode()), Some(value));
    assert_eq!(SessionRecord::decode("{}"), None);
    assert_eq!(SlotValue::decode("nope"), None);
}

#[test]
fn a_restarted_instance_acts_on_what_it_left_only_if_nobody_took_it_over() {
    let rule = ClaimRule::Left {
        instance: "me".into(),
        stream_id: record("me", 5).stream_id,
    };
    assert!(rule.allows(&record("me", 5)));
    assert!(!rule.allows(&record("me", 5).ended()), "ended already");
    assert!(!rule.allows(&record("me", 6)), "another stream of its");
    assert!(!rule.allows(&record("newer", 5)));
    assert!(rule.owner_acts(&Ok(SlotReply::Claimed(record("me", 5)))));
    assert!(rule.owner_acts(&Ok(SlotReply::NotClaimed(None))));
    assert!(rule.owner_acts(&Err("down".into())));
    assert!(!rule.owner_acts(&Ok(SlotReply::NotClaimed(Some(record("me", 5).ended())))));
    // Another stream's record, and no takeover mark of this one: nobody took it over
    // (its record expired, or Redis restarted), so it is ended here.
    assert!(rule.owner_acts(&Ok(SlotReply::NotClaimed(Some(record("newer", 9))))));
    // The mark says another instance claimed it (its record may be gone since).
    assert!(!rule.owner_acts(&Ok(SlotReply::TakenOver { by: "newer".into() })));
}

#[test]
fn a_restarted_instance_asks_again_while_redis_is_silent_then_acts() {
    let lease = LeaseConfig::new("me".into(), "http://me".into(), Duration::from_secs(10));
    let config = SlotsConfig::new(&lease, 2);
    let rule = ClaimRule::Left {
        instance: "me".into(),
        stream_id: record("me", 5).stream_id,
    };
    let silent: Result<SlotReply, String> = Err("down".into());
    assert_eq!(
        LeftVerdict::of(&config, &rule, &silent, at(0), at(1_000), &mut false),
        LeftVerdict::AskAgain(at(1_000) + config.retry_after)
    );
    let late = at(0) + config.taken_ttl;
    assert_eq!(
        LeftVerdict::of(&config, &rule, &silent, at(0), late, &mut false),
        LeftVerdict::Act
    );
    let taken = Ok(SlotReply::TakenOver { by: "newer".into() });
    assert_eq!(
        LeftVerdict::of(&config, &rule, &taken, at(0), at(1_000), &mut false),
        LeftVerdict::Leave
    );
    let claimed = Ok(SlotReply::Claimed(record("me", 5)));
    assert_eq!(
        LeftVerdict::of(&config, &rule, &claimed, at(0), at(1_000), &mut false),
        LeftVerdict::Act
    );
    // Nothing of it found: asked again after the confirmation delay, then acted on.
    let nothing = Ok(SlotReply::NotClaimed(None));
    let mut absent_seen = false;
    assert_eq!(
        LeftVerdict::of(&config, &rule, &nothing, at(0), at(1_000), &mut absent_seen),
        LeftVerdict::AskAgain(at(1_000) + config.confirm_absence)
    );
    assert_eq!(
        LeftVerdict::of(&config, &rule, &nothing, at(0), at(9_000), &mut absent_seen),
        LeftVerdict::Act
    );
}

#[test]
fn an_owner_ends_its_session_only_while_its_record_is_its_own() {
    let mut slots = machine();
    let id = holding(&mut slots);
    // Nothing recorded: acts at once.
    slots.ending(at(1), 3, id, None);
    assert_eq!(
        drain(&mut slots),
        vec![SlotOutput::EndDecided {
            ticket: 3,
            act: true
        }]
    );
    slots.started(at(2), id, record("me", 5));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(3), op, Ok(SlotReply::Done));
    slots.ending(at(4), 4, id, None);
    let (op, claim) = command(&drain(&mut slots));
    assert!(matches!(
        claim,
        SlotCommand::Claim {
            rule: ClaimRule::Mine { .. },
            ..
        }
    ));
    // A newer owner claimed it while this instance was cut off.
    slots.reply(at(5), op, Ok(SlotReply::TakenOver { by: "newer".into() }));
    assert!(drain(&mut slots).contains(&SlotOutput::EndDecided {
        ticket: 4,
        act: false
    }));
    slots.stopped(at(6), id);
    let (_, release) = command(&drain(&mut slots));
    assert!(matches!(release, SlotCommand::Release { record: None, .. }));
}

#[test]
fn a_record_waits_for_the_claim_of_an_older_live_one_and_never_replaces_a_newer() {
    let mine = record("me", 5);
    assert_eq!(mine.replaces(None), Replace::Write);
    assert_eq!(mine.replaces(Some(&record("dead", 4))), Replace::Wait);
    assert_eq!(
        mine.replaces(Some(&record("dead", 4).ended())),
        Replace::Write
    );
    assert_eq!(mine.replaces(Some(&record("newer", 9))), Replace::Never);
    assert_eq!(mine.replaces(Some(&mine.clone())), Replace::Write);
    assert_eq!(mine.replaces(Some(&mine.ended())), Replace::Never);
    let mut earlier = record("me", 5);
    earlier.stream_id = "earlier".into();
    assert_eq!(mine.replaces(Some(&earlier.ended())), Replace::Write);
}

#[test]
fn a_stop_while_the_end_is_decided_leaves_the_record_to_the_decision() {
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(3), op, Ok(SlotReply::Done));
    slots.ending(at(4), 4, id, None);
    let (claim, _) = command(&drain(&mut slots));
    slots.stopped(at(4), id);
    let (_, release) = command(&drain(&mut slots));
    assert!(matches!(
        release,
        SlotCommand::Release {
            slot: Some(_),
            record: None,
            ..
        }
    ));
    slots.reply(at(5), claim, Ok(SlotReply::Claimed(record("me", 5))));
    assert!(drain(&mut slots).contains(&SlotOutput::EndDecided {
        ticket: 4,
        act: true
    }));
}

#[test]
fn an_owner_cut_off_from_redis_waits_for_it_to_end_its_session() {
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(3), op, Ok(SlotReply::Done));
    // Even under its own lease, it waits for Redis: the record must be marked ended.
    slots.ending(at(4), 4, id, Some((5, at(9000))));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(5), op, Err("down".into()));
    assert!(!drain(&mut slots)
        .iter()
        .any(|output| matches!(output, SlotOutput::EndDecided { .. })));
    let due = slots.poll_timeout().expect("asked again");
    slots.handle_timeout(due);
    let (op, _) = command(&drain(&mut slots));
    slots.reply(due, op, Ok(SlotReply::Claimed(record("me", 5))));
    assert!(drain(&mut slots).contains(&SlotOutput::EndDecided {
        ticket: 4,
        act: true
    }));

    // Its lease may have expired: asked again until Redis answers.
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(3), op, Ok(SlotReply::Done));
    slots.ending(at(4), 4, id, Some((5, at(4))));
    let (op, claim) = command(&drain(&mut slots));
    slots.reply(at(5), op, Err("down".into()));
    assert!(!drain(&mut slots)
        .iter()
        .any(|output| matches!(output, SlotOutput::EndDecided { .. })));
    let due = slots.poll_timeout().expect("asked again");
    slots.handle_timeout(due);
    let (op, again) = command(&drain(&mut slots));
    assert_eq!(again, claim);
    slots.reply(
        due,
        op,
        Ok(SlotReply::NotClaimed(Some(record("me", 5).ended()))),
    );
    assert!(drain(&mut slots).contains(&SlotOutput::EndDecided {
        ticket: 4,
        act: false
    }));
}

#[test]
fn an_owner_silent_redis_leaves_for_a_record_lifetime_stops_then_waits_to_end() {
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (op, _) = command(&drain(&mut slots));
    slots.reply(at(3), op, Ok(SlotReply::Done));
    slots.ending(at(4), 4, id, None);
    let record_ttl = slots.config().record_ttl;
    let mut now = at(4);
    let mut stops = 0;
    // Redis silent past the record's time to live: one stop, no end yet.
    while now < at(4) + record_ttl + Duration::from_secs(5) {
        let (op, _) = command(&drain(&mut slots));
        slots.reply(now, op, Err("down".into()));
        let outputs = drain(&mut slots);
        stops += outputs
            .iter()
            .filter(|output| **output == SlotOutput::StopDue { ticket: 4 })
            .count();
        assert!(!outputs
            .iter()
            .any(|output| matches!(output, SlotOutput::EndDecided { .. })));
        now = slots.poll_timeout().expect("asked again");
        slots.handle_timeout(now);
    }
    assert_eq!(stops, 1, "the stop goes out once");
    // Redis answers: the mark says another instance took it over.
    let (op, _) = command(&drain(&mut slots));
    slots.reply(now, op, Ok(SlotReply::TakenOver { by: "newer".into() }));
    assert!(drain(&mut slots).contains(&SlotOutput::EndDecided {
        ticket: 4,
        act: false
    }));
}

#[test]
fn a_lost_channel_waits_for_its_record_write_in_flight() {
    let mut slots = machine();
    let id = holding(&mut slots);
    slots.started(at(2), id, record("me", 5));
    let (write, command_sent) = command(&drain(&mut slots));
    assert!(matches!(command_sent, SlotCommand::Record { .. }));
    // Lost while the write is in flight: nothing is decided until it is answered (the
    // write could land after an answer and leave a live record for a later claimer).
    slots.lost(at(3), "c");
    assert!(drain(&mut slots).is_empty());
    slots.reply(at(4), write, Ok(SlotReply::Done));
    let (op, claim) = command(&drain(&mut slots));
    assert!(matches!(
        claim,
        SlotCommand::Claim {
            rule: ClaimRule::Mine { .. },
            ..
        }
    ));
    slots.reply(at(5), op, Ok(SlotReply::Claimed(record("me", 5))));
    assert!(drain(&mut slots).contains(&SlotOutput::LostDecided {
        channel: "c".into(),
        act: true
    }));
    // The channel then ends: decided already, not asked again.
    slots.ending(at(6), 7, id, None);
    assert_eq!(
        drain(&mut slots),
        vec![SlotOutput::EndDecided {
            ticket: 7,
            act: true
        }]
    );
}
