//! How the end of an owner's session is decided ([`Slots::ending`], [`Slots::lost`]):
//! after its record write in flight, by claiming its own record in Redis.

use super::*;

impl Slots {
    /// The session of reservation `id` ends here (its channel stops it): answered with
    /// [`SlotOutput::EndDecided`] for `ticket`: this instance stops it and records its
    /// end only if its record is still its own and not ended (marked ended now), or
    /// there is none; never once a newer owner claimed it (that owner did both).
    ///
    /// `lease`: the fencing number of the channel's lease this instance holds and when
    /// it expires as last confirmed. While Redis does not answer the question is asked
    /// again (every `retry_after`): even under its own lease, the record must be marked
    /// ended before acting, or an owner taking the channel after the lease lapsed would
    /// claim it too. After a record's time to live without an answer the session is
    /// stopped ([`SlotOutput::StopDue`]: its record has expired or was claimed, so no
    /// later claim can come); its end waits for the answer for the takeover mark's time
    /// to live at most (then it is recorded here).
    pub fn ending(
        &mut self,
        now: Instant,
        ticket: u64,
        id: ReservationId,
        lease: Option<(u64, Instant)>,
    ) {
        if let Some(act) = self.held.get(&id).and_then(|held| held.decided) {
            self.out.push_back(SlotOutput::EndDecided { ticket, act });
            return;
        }
        if self.hold_decision(id, Decision::Ending { ticket, id, lease }) {
            return;
        }
        let record = self.held.get(&id).and_then(|held| {
            held.claimable()
                .map(|record| (held.channel.clone(), record))
        });
        self.decide_ending(now, ticket, id, lease, record);
    }

    fn decide_ending(
        &mut self,
        now: Instant,
        ticket: u64,
        id: ReservationId,
        lease: Option<(u64, Instant)>,
        record: Option<(String, SessionRecord)>,
    ) {
        let Some((channel, record)) = record else {
            self.out
                .push_back(SlotOutput::EndDecided { ticket, act: true });
            return;
        };
        let covered =
            lease.is_some_and(|(fencing, expires)| fencing == record.fencing && expires > now);
        let command = SlotCommand::Claim {
            channel,
            rule: ClaimRule::Mine { record },
            record_ttl: self.config.record_ttl,
            taken_ttl: self.config.taken_ttl,
            instance: self.config.instance.clone(),
        };
        let ending = Ending {
            ticket,
            id,
            command: command.clone(),
            covered,
            until: now + self.config.taken_ttl,
            stop_at: now + self.config.record_ttl,
            stop_due: false,
            absent_seen: false,
        };
        self.send(now, command, Op::Ending(Box::new(ending)));
    }

    /// Another instance owns `channel` now: answered with [`SlotOutput::LostDecided`]:
    /// act (stop the session, record its end) only if this instance's record is still
    /// its own and not ended; without a record (none written, or Redis does not answer)
    /// it acts, as a single instance does.
    ///
    /// The decision is about the channel's latest session; an earlier one being replaced
    /// has its own ([`Slots::ending`]).
    pub fn lost(&mut self, now: Instant, channel: &str) {
        self.claiming.remove(channel);
        let latest = self
            .held
            .iter()
            .rev()
            .find(|(_, held)| held.channel == channel)
            .map(|(id, _)| *id);
        let Some(id) = latest else {
            self.decide_lost(now, channel, None, None);
            return;
        };
        let decision = Decision::Lost {
            channel: channel.to_owned(),
            id,
        };
        if self.hold_decision(id, decision) {
            return;
        }
        let record = self.held.get(&id).and_then(Held::claimable);
        self.decide_lost(now, channel, Some(id), record);
    }

    fn decide_lost(
        &mut self,
        now: Instant,
        channel: &str,
        id: Option<ReservationId>,
        record: Option<SessionRecord>,
    ) {
        let Some(record) = record else {
            self.out.push_back(SlotOutput::LostDecided {
                channel: channel.to_owned(),
                act: true,
            });
            return;
        };
        let rule = ClaimRule::Mine { record };
        let command = SlotCommand::Claim {
            channel: channel.to_owned(),
            rule: rule.clone(),
            record_ttl: self.config.record_ttl,
            taken_ttl: self.config.taken_ttl,
            instance: self.config.instance.clone(),
        };
        self.send(
            now,
            command,
            Op::Claim {
                channel: channel.to_owned(),
                lost: Some((rule, id)),
            },
        );
    }

    /// Starts deciding the end of reservation `id`'s session: no record write starts
    /// any more. Whether `decision` waits for a write in flight (it is taken up again
    /// when that is answered, whether or not the reservation is still held then).
    pub(super) fn hold_decision(&mut self, id: ReservationId, decision: Decision) -> bool {
        let Some(held) = self.held.get_mut(&id) else {
            return false;
        };
        held.deciding = true;
        let Some(op) = held
            .op
            .filter(|op| matches!(self.ops.get(op), Some(Op::Record(_))))
        else {
            return false;
        };
        let Some(record) = held.record.clone() else {
            return false;
        };
        let channel = held.channel.clone();
        self.waiting.insert(op, (channel, record, decision));
        true
    }

    /// Takes up the end decision that waited for the record write `op`, now answered
    /// (whatever it answered: the claim that follows finds what Redis holds).
    pub(super) fn resume_decision(&mut self, now: Instant, op: OpId) {
        let Some((channel, record, decision)) = self.waiting.remove(&op) else {
            return;
        };
        match decision {
            Decision::Ending { ticket, id, lease } => {
                self.decide_ending(now, ticket, id, lease, Some((channel, record)));
            }
            Decision::Lost { channel, id } => {
                self.decide_lost(now, &channel, Some(id), Some(record));
            }
        }
    }
}
