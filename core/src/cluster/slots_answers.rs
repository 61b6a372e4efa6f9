//! What Redis answered to a slot reservation ([`Slots::reserved`]) and to a claim of a
//! channel's session record ([`Slots::claimed`]), as [`Slots::reply`] hands them on.

use super::*;

impl Slots {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reserved(
        &mut self,
        now: Instant,
        ticket: u64,
        id: ReservationId,
        mut rest: VecDeque<EngineAddr>,
        first: EngineAddr,
        value: SlotValue,
        result: Result<SlotReply, String>,
    ) {
        let slot = match result {
            Ok(SlotReply::Reserved { slot }) => {
                self.notice(SlotNotice::Reserved {
                    channel: value.channel.clone(),
                    engine: value.engine.clone(),
                    slot,
                });
                Some(slot)
            }
            Ok(SlotReply::Full) => {
                self.notice(SlotNotice::Full {
                    channel: value.channel.clone(),
                    engine: value.engine.clone(),
                });
                match rest.pop_front() {
                    Some(next) => {
                        let value = SlotValue {
                            engine: next.clone(),
                            ..value
                        };
                        self.send_reserve(now, ticket, id, rest, first, value);
                    }
                    None => self.out.push_back(SlotOutput::Reserved {
                        ticket,
                        reserved: None,
                    }),
                }
                return;
            }
            other => {
                // Redis does not answer: the session opens on the best candidate without
                // a slot, reserved at the next renewal.
                self.failed("reserve", unexpected(other));
                self.notice(SlotNotice::Unreserved {
                    channel: value.channel.clone(),
                    engine: first.clone(),
                });
                None
            }
        };
        let engine = if slot.is_some() {
            value.engine.clone()
        } else {
            first
        };
        let value = SlotValue {
            engine: engine.clone(),
            ..value
        };
        self.held.insert(
            id,
            Held {
                channel: value.channel.clone(),
                fencing: value.fencing,
                engine: engine.clone(),
                slot,
                value,
                record: None,
                written: false,
                attempted: false,
                decided: None,
                deciding: false,
                superseded: false,
                next: now + self.config.renew_every,
                op: None,
            },
        );
        self.out.push_back(SlotOutput::Reserved {
            ticket,
            reserved: Some((id, engine)),
        });
    }

    pub(super) fn claimed(
        &mut self,
        now: Instant,
        channel: &str,
        lost: Option<(ClaimRule, Option<ReservationId>)>,
        result: Result<SlotReply, String>,
    ) {
        if let Some((rule, id)) = lost {
            let act = rule.owner_acts(&result);
            // Nothing found is confirmed by the end's own question, not settled here.
            let answered = result.is_ok() && !rule.finds_nothing(&result);
            if let Err(error) = result {
                self.failed("claim", error);
            }
            if !act || answered {
                // A newer owner handles the session: nothing of it is given back here.
                // Or this instance claimed its record (or none of it is left): its end
                // is decided, not asked again.
                if let Some(held) = id.and_then(|id| self.held.get_mut(&id)) {
                    held.superseded = true;
                    held.decided = Some(act);
                }
            }
            self.out.push_back(SlotOutput::LostDecided {
                channel: channel.to_owned(),
                act,
            });
            return;
        }
        let Some(retried) = self.claiming.get_mut(channel) else {
            return;
        };
        match result {
            Ok(SlotReply::Claimed(record)) => {
                self.claiming.remove(channel);
                let until = now + self.config.taken_ttl;
                self.marks.insert(
                    record.stream_id.clone(),
                    (until, Some(now + self.config.renew_every)),
                );
                self.out.push_back(SlotOutput::Orphan(record));
            }
            Ok(SlotReply::NotClaimed(Some(found)))
                if self
                    .config
                    .planted
                    .has(crate::planted::Bug::OrphanEndedUnguarded)
                    && found.instance != self.config.instance =>
            {
                self.claiming.remove(channel);
                self.out.push_back(SlotOutput::Orphan(found));
            }
            Ok(_) => {
                self.claiming.remove(channel);
            }
            Err(error) => {
                retried.next = Some(now + self.config.retry_after).filter(|at| *at < retried.until);
                if retried.next.is_none() {
                    self.claiming.remove(channel);
                }
                self.failed("claim", error);
            }
        }
    }
}
