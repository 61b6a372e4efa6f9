//! Two instances' lease machines against a model of Redis (keys with expiry, a
//! counter, calls that run at any time within their bound, fail before or after they
//! take effect, or never answer until the bound), under random steps. Checked after
//! every step:
//! - safety: at no time do both instances believe they hold the lease (with a belief
//!   that has not expired), and a belief that has not expired is what Redis holds;
//! - every route request is answered once, within the wait bound for Redis;
//! - an instance's fencing numbers never go back, across Redis restarts too.

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::machine::Machine;
use crate::time::Duration;

const CHANNEL: &str = "a";
const TTL: Duration = Duration::from_millis(900);

#[derive(Clone, Debug)]
enum Step {
    Want(usize),
    Finished(usize),
    /// Answer pending call `index` (modulo their number): performed now and
    /// answered, performed but the answer lost (an error), or not performed (an error).
    Answer {
        index: usize,
        mode: u8,
    },
    Advance(u64),
    /// Redis restarts without its data.
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0..2usize).prop_map(Step::Want),
        1 => (0..2usize).prop_map(Step::Finished),
        6 => (any::<usize>(), 0..4u8).prop_map(|(index, mode)| Step::Answer { index, mode }),
        4 => (1..400u64).prop_map(Step::Advance),
    ]
}

#[derive(Default)]
struct Redis {
    values: BTreeMap<String, (String, Option<Instant>)>,
}

impl Redis {
    fn get(&mut self, now: Instant, key: &str) -> Option<String> {
        match self.values.get(key) {
            Some((_, Some(expiry))) if *expiry <= now => {
                self.values.remove(key);
                None
            }
            Some((value, _)) => Some(value.clone()),
            None => None,
        }
    }

    fn perform(&mut self, now: Instant, command: &Command) -> Reply {
        let lease = |channel: &str| format!("lease:{channel}");
        match command {
            Command::Acquire {
                channel,
                instance,
                advertise,
                ttl,
            } => {
                let counter = format!("fencing:{channel}");
                let fencing = self
                    .get(now, &counter)
                    .and_then(|value| value.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                self.values.insert(counter, (fencing.to_string(), None));
                if let Some(value) = self.get(now, &lease(channel)) {
                    return Reply::Taken(Holder::decode(&value));
                }
                let holder = Holder {
                    instance: instance.clone(),
                    advertise: advertise.clone(),
                    fencing,
                };
                self.values
                    .insert(lease(channel), (holder.encode(), Some(now + *ttl)));
                Reply::Acquired { fencing }
            }
            Command::Renew { channel, mine, ttl } => {
                let current = self.get(now, &lease(channel));
                let holder = current.as_deref().and_then(Holder::decode);
                if holder.as_ref() != Some(mine) {
                    return Reply::Gone(holder);
                }
                self.values
                    .insert(lease(channel), (mine.encode(), Some(now + *ttl)));
                Reply::Kept
            }
            Command::Release { channel, mine } => {
                let current = self.get(now, &lease(channel));
                if current.as_deref().and_then(Holder::decode).as_ref() == Some(mine) {
                    self.values.remove(&lease(channel));
                }
                Reply::Done
            }
            Command::RaiseFencing { channel, at_least } => {
                let counter = format!("fencing:{channel}");
                let value = self
                    .get(now, &counter)
                    .and_then(|value| value.parse::<u64>().ok())
                    .unwrap_or(0);
                if value < *at_least {
                    self.values.insert(counter, (at_least.to_string(), None));
                }
                Reply::Done
            }
        }
    }
}

struct Pending {
    machine: usize,
    op: OpId,
    command: Command,
    deadline: Instant,
    /// Performed already; its answer not delivered yet.
    done: Option<Reply>,
}

struct World {
    now: Instant,
    redis: Redis,
    machines: Vec<Leases>,
    pending: Vec<Pending>,
    /// Route requests not answered yet: (machine, ticket) → when asked.
    asked: BTreeMap<(usize, TicketId), Instant>,
    next_ticket: u64,
    /// Each machine's highest fencing number routed as its own.
    own: Vec<u64>,
    restarted: bool,
}

impl World {
    fn new() -> Self {
        let machine = |name: &str| {
            let mut config = LeaseConfig::new(name.into(), format!("http://{name}:1"), TTL);
            config.wait_for_redis = Duration::from_millis(600);
            Leases::new(config)
        };
        World {
            now: Instant::from_micros(1_000_000),
            redis: Redis::default(),
            machines: vec![machine("one"), machine("two")],
            pending: Vec::new(),
            asked: BTreeMap::new(),
            next_ticket: 1,
            own: vec![0, 0],
            restarted: false,
        }
    }

    fn drain(&mut self) {
        for index in 0..self.machines.len() {
            while let Some(output) = self.machines[index].poll_output() {
                match output {
                    Output::Redis {
                        op,
                        command,
                        timeout,
                    } => self.pending.push(Pending {
                        machine: index,
                        op,
                        command,
                        deadline: self.now + timeout,
                        done: None,
                    }),
                    Output::Route { ticket, route } => {
                        let asked = self
                            .asked
                            .remove(&(index, ticket))
                            .expect("a route answers a request once");
                        let waited = self.now - asked;
                        assert!(
                            waited <= self.machines[index].config().wait_for_redis,
                            "answered after {waited:?}"
                        );
                        if let Route::Own { fencing } = route {
                            assert!(
                                fencing >= self.own[index],
                                "fencing went back: {fencing} after {}",
                                self.own[index]
                            );
                            self.own[index] = fencing;
                        }
                    }
                    Output::Lost { .. } | Output::Notice(_) => {}
                }
            }
        }
    }

    fn check(&mut self) {
        let believers: Vec<(usize, HeldLease)> = self
            .machines
            .iter()
            .enumerate()
            .flat_map(|(index, machine)| machine.held().into_iter().map(move |l| (index, l)))
            .filter(|(_, lease)| lease.expires > self.now)
            .collect();
        if self.restarted {
            // A Redis that forgets its leases gives no safety; fencing still holds.
            return;
        }
        assert!(believers.len() <= 1, "two owners at once: {believers:?}");
        if let Some((index, lease)) = believers.first() {
            let value = self.redis.get(self.now, &format!("lease:{CHANNEL}"));
            let holder = value.as_deref().and_then(Holder::decode);
            assert_eq!(
                holder.map(|holder| (holder.instance, holder.fencing)),
                Some((
                    self.machines[*index].config().instance.clone(),
                    lease.fencing
                )),
                "an unexpired belief is what Redis holds"
            );
        }
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Want(index) => {
                let ticket = TicketId(self.next_ticket);
                self.next_ticket += 1;
                self.asked.insert((index, ticket), self.now);
                self.machines[index].want(self.now, ticket, CHANNEL);
            }
            Step::Finished(index) => self.machines[index].finished(self.now, CHANNEL),
            Step::Answer { index, mode } => {
                if self.pending.is_empty() {
                    return;
                }
                let index = index % self.pending.len();
                let result = match (self.pending[index].done.take(), mode) {
                    // Performed earlier: its answer arrives now.
                    (Some(reply), _) => Ok(reply),
                    (None, 0) => Ok(self.redis.perform(self.now, &self.pending[index].command)),
                    (None, 1) => {
                        // Performed now, answered later (or never: then its bound).
                        let reply = self.redis.perform(self.now, &self.pending[index].command);
                        self.pending[index].done = Some(reply);
                        self.drain();
                        self.check();
                        return;
                    }
                    (None, 2) => {
                        self.redis.perform(self.now, &self.pending[index].command);
                        Err("answer lost".to_owned())
                    }
                    (None, _) => Err("refused".to_owned()),
                };
                let call = self.pending.remove(index);
                let input = Input::Reply {
                    op: call.op,
                    result,
                };
                self.machines[call.machine].handle_input(self.now, input);
            }
            Step::Advance(millis) => {
                // Time moves on as a driver sees it: woken at every machine's timer and
                // every call's bound on the way.
                let target = self.now + Duration::from_millis(millis);
                loop {
                    let next = self
                        .machines
                        .iter()
                        .filter_map(Leases::poll_timeout)
                        .chain(self.pending.iter().map(|call| call.deadline))
                        .chain([target])
                        .min()
                        .unwrap_or(target);
                    self.now = self.now.max(next);
                    // The driver's bound: a call not answered by its deadline fails.
                    let (late, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
                        .into_iter()
                        .partition(|call| call.deadline <= self.now);
                    self.pending = kept;
                    for call in late {
                        let input = Input::Reply {
                            op: call.op,
                            result: Err("timed out".to_owned()),
                        };
                        self.machines[call.machine].handle_input(self.now, input);
                    }
                    for machine in &mut self.machines {
                        if machine.poll_timeout().is_some_and(|at| at <= self.now) {
                            machine.handle_timeout(self.now);
                        }
                    }
                    self.drain();
                    self.check();
                    if self.now >= target {
                        break;
                    }
                }
            }
            Step::Restart => {
                self.redis = Redis::default();
                self.restarted = true;
            }
        }
        self.drain();
        self.check();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn one_owner_at_a_time_and_every_route_in_time(steps in vec(step(), 1..200)) {
        let mut world = World::new();
        for step in steps {
            world.step(step);
        }
    }

    #[test]
    fn fencing_numbers_never_go_back_across_redis_restarts(
        steps in vec(prop_oneof![8 => step(), 1 => Just(Step::Restart)], 1..200)
    ) {
        let mut world = World::new();
        for step in steps {
            world.step(step);
        }
    }
}
