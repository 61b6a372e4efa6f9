use super::*;

fn at(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

fn config() -> DirectoryConfig {
    DirectoryConfig::new("a".to_owned(), Duration::from_secs(5))
}

fn record(id: &str) -> InstanceRecord {
    InstanceRecord {
        id: id.to_owned(),
        advertise: format!("http://{id}:6878"),
        published_at: "2026-01-01T00:00:00Z".to_owned(),
        channels: vec![ChannelRecord {
            stream_id: format!("{id}-1"),
            key_type: "content_id".to_owned(),
            key: "abc".to_owned(),
            format: "ts".to_owned(),
            viewers: 2,
            started_at: "2026-01-01T00:00:00Z".to_owned(),
            container_id: None,
        }],
    }
}

fn outputs(machine: &mut Directory) -> Vec<DirOutput> {
    std::iter::from_fn(|| machine.poll_output()).collect()
}

/// The single Redis command among `outputs`.
fn command(outputs: &[DirOutput]) -> (OpId, DirCommand, Duration) {
    let commands: Vec<_> = outputs
        .iter()
        .filter_map(|output| match output {
            DirOutput::Redis {
                op,
                command,
                timeout,
            } => Some((*op, command.clone(), *timeout)),
            _ => None,
        })
        .collect();
    assert_eq!(commands.len(), 1, "{outputs:?}");
    commands[0].clone()
}

fn answers(outputs: &[DirOutput]) -> Vec<(TicketId, DirectoryAnswer)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            DirOutput::Answer { ticket, answer } => Some((*ticket, answer.clone())),
            _ => None,
        })
        .collect()
}

fn reply(machine: &mut Directory, now: Instant, op: OpId, result: Result<DirReply, String>) {
    machine.handle_input(now, DirInput::Reply { op, result });
}

/// Runs one whole publication cycle starting at `now`, the enrollment reading `records`.
fn cycle(machine: &mut Directory, now: Instant, records: Vec<InstanceRecord>) {
    machine.handle_timeout(now);
    let (op, publish, timeout) = command(&outputs(machine));
    assert_eq!(
        publish,
        DirCommand::Publish {
            ttl: Duration::from_secs(15)
        }
    );
    assert_eq!(timeout, Duration::from_secs(1));
    reply(machine, now, op, Ok(DirReply::Done));
    let (op, enroll, _) = command(&outputs(machine));
    assert_eq!(enroll, DirCommand::Enroll { max_instances: 64 });
    reply(machine, now, op, Ok(DirReply::Records(records)));
}

#[test]
fn publishes_at_once_then_enrolls_then_every_period() {
    let mut machine = Directory::new(config(), at(0));
    assert_eq!(machine.poll_timeout(), Some(at(0)));
    cycle(&mut machine, at(0), vec![record("a")]);
    assert!(outputs(&mut machine).is_empty());
    assert_eq!(machine.poll_timeout(), Some(at(5_000)));
    machine.handle_timeout(at(4_999));
    assert!(outputs(&mut machine).is_empty(), "not before the period");
    cycle(&mut machine, at(5_000), vec![record("a")]);
    assert_eq!(machine.poll_timeout(), Some(at(10_000)));
}

#[test]
fn a_failed_call_is_tried_again_after_the_retry_delay_and_the_record_outlives_it() {
    let mut machine = Directory::new(config(), at(0));
    machine.handle_timeout(at(0));
    let (op, _, _) = command(&outputs(&mut machine));
    reply(&mut machine, at(1_000), op, Err("timed out".to_owned()));
    let out = outputs(&mut machine);
    assert!(out.contains(&DirOutput::Notice(DirNotice::RedisFailed {
        call: "publish",
        error: "timed out".to_owned()
    })));
    assert_eq!(machine.poll_timeout(), Some(at(2_000)));
    // An enrollment that fails (an aborted transaction) starts the cycle again too.
    machine.handle_timeout(at(2_000));
    let (op, _, _) = command(&outputs(&mut machine));
    reply(&mut machine, at(2_000), op, Ok(DirReply::Done));
    let (op, _, _) = command(&outputs(&mut machine));
    reply(
        &mut machine,
        at(2_100),
        op,
        Err("transaction aborted".to_owned()),
    );
    let _ = outputs(&mut machine);
    assert_eq!(machine.poll_timeout(), Some(at(3_100)));
    // Retries come well within the record's time to live.
    assert!(config().retry_after * 3 < config().ttl);
}

#[test]
fn a_read_is_answered_from_a_fresh_enrollment_without_asking_redis() {
    let mut machine = Directory::new(config(), at(0));
    cycle(&mut machine, at(0), vec![record("a"), record("b")]);
    machine.read(at(1_000), TicketId(1));
    let out = outputs(&mut machine);
    let got = answers(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.freshness, Freshness::Ok);
    assert_eq!(got[0].1.records.len(), 2);
    assert!(out.iter().all(|o| !matches!(o, DirOutput::Redis { .. })));
}

#[test]
fn concurrent_readers_share_one_read() {
    let mut machine = Directory::new(config(), at(0));
    cycle(&mut machine, at(0), vec![record("a")]);
    machine.read(at(2_000), TicketId(1));
    let (op, read, _) = command(&outputs(&mut machine));
    assert_eq!(read, DirCommand::Read { max_instances: 64 });
    machine.read(at(2_100), TicketId(2));
    assert!(outputs(&mut machine).is_empty(), "no second read in flight");
    reply(
        &mut machine,
        at(2_200),
        op,
        Ok(DirReply::Records(vec![record("a"), record("b")])),
    );
    let got = answers(&outputs(&mut machine));
    assert_eq!(
        got.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        vec![TicketId(1), TicketId(2)]
    );
    assert!(got.iter().all(|(_, a)| a.freshness == Freshness::Ok
        && a.records.len() == 2
        && a.read_at == Some(at(2_200))));
}

#[test]
fn a_slow_redis_answers_readers_by_the_wait_bound_with_the_recent_read_marked_stale() {
    let mut machine = Directory::new(config(), at(0));
    cycle(&mut machine, at(0), vec![record("a"), record("b")]);
    machine.read(at(3_000), TicketId(1));
    let (op, _, _) = command(&outputs(&mut machine));
    assert_eq!(machine.poll_timeout(), Some(at(3_500)));
    machine.handle_timeout(at(3_500));
    let got = answers(&outputs(&mut machine));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.freshness, Freshness::Stale);
    assert_eq!(got[0].1.records.len(), 2);
    assert_eq!(got[0].1.read_at, Some(at(0)));
    // The late reply still refreshes the directory for later readers.
    reply(
        &mut machine,
        at(3_800),
        op,
        Ok(DirReply::Records(vec![record("a")])),
    );
    assert!(answers(&outputs(&mut machine)).is_empty());
    machine.read(at(4_000), TicketId(2));
    let got = answers(&outputs(&mut machine));
    assert_eq!(got[0].1.freshness, Freshness::Ok);
    assert_eq!(got[0].1.records.len(), 1);
}

#[test]
fn without_any_recent_read_an_unreachable_redis_reads_as_unavailable_and_is_not_hammered() {
    let mut machine = Directory::new(config(), at(0));
    machine.handle_timeout(at(0));
    let _ = outputs(&mut machine);
    machine.read(at(10), TicketId(1));
    let (op, _, _) = command(&outputs(&mut machine));
    reply(
        &mut machine,
        at(60),
        op,
        Err("connection refused".to_owned()),
    );
    let out = outputs(&mut machine);
    let got = answers(&out);
    assert_eq!(got[0].1.freshness, Freshness::Unavailable);
    assert!(got[0].1.records.is_empty());
    assert!(out.contains(&DirOutput::Notice(DirNotice::Degraded {
        freshness: Freshness::Unavailable
    })));
    // Within the retry delay, readers are answered at once without a call.
    machine.read(at(500), TicketId(2));
    let out = outputs(&mut machine);
    assert!(out.iter().all(|o| !matches!(o, DirOutput::Redis { .. })));
    assert_eq!(answers(&out)[0].1.freshness, Freshness::Unavailable);
    // After it, Redis is asked again.
    machine.read(at(1_060), TicketId(3));
    let (_, read, _) = command(&outputs(&mut machine));
    assert_eq!(read, DirCommand::Read { max_instances: 64 });
}

#[test]
fn a_read_older_than_the_records_time_to_live_is_not_shown() {
    let mut machine = Directory::new(config(), at(0));
    cycle(&mut machine, at(0), vec![record("a"), record("b")]);
    // Redis vanished: the publication cycle fails from now on.
    machine.read(at(15_001), TicketId(1));
    let _ = outputs(&mut machine);
    machine.handle_timeout(at(15_501));
    let got = answers(&outputs(&mut machine));
    assert_eq!(got[0].1.freshness, Freshness::Unavailable);
}

#[test]
fn withdrawing_stops_publications_and_deletes_the_record() {
    let mut machine = Directory::new(config(), at(0));
    cycle(&mut machine, at(0), vec![record("a")]);
    machine.withdraw();
    let (op, withdraw, _) = command(&outputs(&mut machine));
    assert_eq!(withdraw, DirCommand::Withdraw);
    assert!(!machine.is_idle());
    reply(&mut machine, at(100), op, Ok(DirReply::Done));
    assert!(machine.is_idle());
    assert_eq!(machine.poll_timeout(), None);
    machine.handle_timeout(at(20_000));
    assert!(outputs(&mut machine).is_empty());
}

#[test]
fn withdrawing_while_publishing_ignores_the_publication_s_reply() {
    let mut machine = Directory::new(config(), at(0));
    machine.handle_timeout(at(0));
    let (publish, _, _) = command(&outputs(&mut machine));
    machine.withdraw();
    let (withdraw, _, _) = command(&outputs(&mut machine));
    reply(&mut machine, at(10), publish, Ok(DirReply::Done));
    assert!(
        outputs(&mut machine).is_empty(),
        "no enrollment after withdrawal"
    );
    assert!(!machine.is_idle());
    reply(&mut machine, at(20), withdraw, Ok(DirReply::Done));
    assert!(machine.is_idle());
}

#[test]
fn the_list_keeps_live_ids_in_order_adds_me_and_drops_the_rest() {
    let ids = |list: &[&str]| list.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>();
    // Right already: nothing written.
    assert_eq!(next_list(&ids(&["b", "a"]), "a", &ids(&["b"]), 64), None);
    // Missing: added.
    assert_eq!(
        next_list(&ids(&["b"]), "a", &ids(&["b"]), 64),
        Some(ids(&["b", "a"]))
    );
    // Dead ids and duplicates dropped, me kept where it is.
    assert_eq!(
        next_list(&ids(&["a", "b", "c", "b"]), "a", &ids(&["b"]), 64),
        Some(ids(&["a", "b"]))
    );
    // Every instance present, in any order: nothing written, whoever enrolls (the
    // list does not churn between instances).
    for me in ["a", "b", "c"] {
        assert_eq!(
            next_list(&ids(&["c", "a", "b"]), me, &ids(&["a", "b", "c"]), 64),
            None
        );
    }
    // Listed beyond the bound: moved within it.
    assert_eq!(
        next_list(&ids(&["b", "c", "a"]), "a", &ids(&["a", "b", "c"]), 2),
        Some(ids(&["b", "a"]))
    );
    // Bounded, me always kept.
    assert_eq!(
        next_list(&ids(&["b", "c", "d"]), "a", &ids(&["b", "c", "d"]), 2),
        Some(ids(&["b", "a"]))
    );
    assert_eq!(next_list(&[], "a", &[], 0), Some(ids(&["a"])));
}

#[test]
fn records_and_lists_round_trip_and_garbage_reads_as_nothing() {
    let value = record("a").encode();
    assert_eq!(InstanceRecord::decode(&value), Some(record("a")));
    assert_eq!(InstanceRecord::decode("{\"lease\":1}"), None);
    let list = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(decode_list(&encode_list(&list)), list);
    assert!(decode_list("not json").is_empty());
}
