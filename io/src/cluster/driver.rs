//! The cluster driver task: it owns the lease machine ([`Leases`]) and the slot machine
//! ([`Slots`]), performs their Redis commands (each on a task of its own, bounded by the
//! machine's timeout), answers the channels' route, slot and end requests, and hands
//! what the proxy and the lifecycle act on to the [`ClusterSinks`].

use std::collections::BTreeMap;
use std::sync::Arc;

use acemux_core::cluster::{
    Input, Leases, Notice, OpId, Output, ReservationId, Route, SlotNotice, SlotOutput, Slots,
    TicketId,
};
use acemux_core::lifecycle::EngineAddr;
use acemux_core::machine::Machine as _;
use tokio::sync::{mpsc, oneshot};

use super::redis::RedisClient;
use super::{Cluster, ClusterSinks, EndAnswer, Msg};
use crate::clock::Clock;
use crate::metrics::{LeaseEventLabels, Metrics, RedisCallLabels, SlotEventLabels};
use crate::net::Net;

type Replies<T> = mpsc::UnboundedSender<(OpId, Result<T, String>)>;

pub(super) struct Driver<N: Net> {
    machine: Leases,
    slots: Slots,
    redis: Arc<RedisClient<N>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    sinks: ClusterSinks,
    cluster: Cluster,
    /// Route requests waiting for their answer, with their channel.
    tickets: BTreeMap<TicketId, (String, oneshot::Sender<Route>)>,
    /// Slot requests waiting for their answer.
    reservations: BTreeMap<u64, oneshot::Sender<Option<(ReservationId, EngineAddr)>>>,
    /// Questions of ending sessions waiting for their answer.
    /// By ticket: where the answer goes, and the channel held back meanwhile.
    endings: BTreeMap<u64, (mpsc::UnboundedSender<EndAnswer>, Option<String>)>,
    /// Ended channels whose lease is given back once their record's release is
    /// confirmed.
    deferred: Vec<String>,
    next_ticket: u64,
}

impl<N: Net> Driver<N> {
    /// A driver of `machine` and `slots` over `redis`, reporting to `sinks`.
    pub(super) fn new(
        machine: Leases,
        slots: Slots,
        redis: Arc<RedisClient<N>>,
        clock: Clock,
        metrics: Arc<Metrics>,
        sinks: ClusterSinks,
        cluster: Cluster,
    ) -> Self {
        Driver {
            machine,
            slots,
            redis,
            clock,
            metrics,
            sinks,
            cluster,
            tickets: BTreeMap::new(),
            reservations: BTreeMap::new(),
            endings: BTreeMap::new(),
            deferred: Vec::new(),
            next_ticket: 1,
        }
    }

    pub(super) async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Msg>) {
        let (replies_tx, mut replies) = mpsc::unbounded_channel();
        let (slot_replies_tx, mut slot_replies) = mpsc::unbounded_channel();
        let mut shutdown: Option<(oneshot::Sender<()>, acemux_core::Instant)> = None;
        loop {
            // Lease outputs feed the slots (a loss, a lease taken) and the slots' release
            // lets a lease go: performed until both are quiet for this turn.
            self.perform(&replies_tx);
            self.perform_slots(&slot_replies_tx);
            self.finish_deferred();
            self.perform(&replies_tx);
            self.perform_slots(&slot_replies_tx);
            if shutdown.is_some() && self.machine.is_idle() && self.slots.is_idle() {
                break;
            }
            let deadline = shutdown.as_ref().map(|(_, at)| *at);
            let sleep = self.clock.sleep_until_earliest([
                self.machine.poll_timeout(),
                self.slots.poll_timeout().filter(|_| shutdown.is_none()),
                deadline,
            ]);
            tokio::select! {
                biased;
                Some((op, result)) = replies.recv() => {
                    self.machine.handle_input(self.clock.now(), Input::Reply { op, result });
                }
                Some((op, result)) = slot_replies.recv() => {
                    self.slots.reply(self.clock.now(), op, result);
                }
                message = inbox.recv(), if shutdown.is_none() => match message {
                    Some(Msg::Want { channel, reply }) => {
                        // A new channel of it takes the entry over: the ended one's
                        // deferred give-back would end the new one's lease or start.
                        self.deferred.retain(|ended| *ended != channel);
                        let ticket = TicketId(self.next_ticket);
                        self.next_ticket += 1;
                        self.machine.want(self.clock.now(), ticket, &channel);
                        self.tickets.insert(ticket, (channel, reply));
                    }
                    Some(Msg::Finished { channel }) => {
                        // Requests of the ended channel get no answer any more: their
                        // askers see the driver's answer dropped.
                        self.tickets.retain(|_, (asked_for, _)| *asked_for != channel);
                        // Its lease goes after its record is marked ended.
                        self.deferred.push(channel);
                    }
                    Some(Msg::Reserve { channel, fencing, candidates, reply }) => {
                        let ticket = self.next_ticket;
                        self.next_ticket += 1;
                        self.reservations.insert(ticket, reply);
                        self.slots.reserve(self.clock.now(), ticket, &channel, fencing, candidates);
                    }
                    Some(Msg::Started { id, record }) => {
                        self.slots.started(self.clock.now(), id, *record);
                    }
                    Some(Msg::Stopped { id }) => self.slots.stopped(self.clock.now(), id),
                    Some(Msg::HoldBack { channel }) => self.machine.hold_back(&channel),
                    Some(Msg::Resolved { channel }) => {
                        self.machine.resolved(self.clock.now(), &channel);
                    }
                    Some(Msg::Ending { id, reply }) => {
                        let ticket = self.next_ticket;
                        self.next_ticket += 1;
                        let now = self.clock.now();
                        let channel = self.slots.channel_of(id);
                        if let Some(channel) = &channel {
                            self.machine.hold_back(channel);
                        }
                        self.endings.insert(ticket, (reply, channel));
                        let lease = self.slots.channel_of(id).and_then(|channel| {
                            self.machine
                                .held()
                                .into_iter()
                                .find(|lease| lease.channel == channel)
                                .map(|lease| (lease.fencing, lease.expires))
                        });
                        self.slots.ending(now, ticket, id, lease);
                    }
                    Some(Msg::Shutdown { done }) => {
                        let bound = self.machine.config().redis_timeout * 2;
                        shutdown = Some((done, self.clock.now() + bound));
                    }
                    None => break,
                },
                () = sleep => {
                    let now = self.clock.now();
                    if deadline.is_some_and(|at| at <= now) {
                        tracing::warn!("leases not all given back in time at shutdown; they expire by themselves");
                        break;
                    }
                    self.machine.handle_timeout(now);
                    if shutdown.is_none() {
                        self.slots.handle_timeout(now);
                    }
                }
            }
        }
        if let Some((done, _)) = shutdown {
            let _ = done.send(());
        }
        // Nothing answers routes any more: waiting channels start here.
        for (_, (_, reply)) in std::mem::take(&mut self.tickets) {
            let _ = reply.send(Route::Local);
        }
    }

    /// Gives back the leases of ended channels whose records are released.
    fn finish_deferred(&mut self) {
        let now = self.clock.now();
        let (ready, waiting): (Vec<String>, Vec<String>) = std::mem::take(&mut self.deferred)
            .into_iter()
            .partition(|channel| !self.slots.busy(channel));
        self.deferred = waiting;
        for channel in ready {
            self.machine.finished(now, &channel);
        }
    }

    /// Performs one of a machine's Redis commands on a task of its own (its timeout
    /// bounds it); the answer comes back on `replies` under `op`.
    fn call<T, F, Fut>(&self, op: OpId, replies: &Replies<T>, command: F)
    where
        T: Send + 'static,
        F: FnOnce(Arc<RedisClient<N>>) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>> + Send + 'static,
    {
        let answer = command(self.redis.clone());
        let replies = replies.clone();
        tokio::spawn(async move {
            let _ = replies.send((op, answer.await));
        });
    }

    fn perform_slots(&mut self, replies: &Replies<acemux_core::cluster::SlotReply>) {
        while let Some(output) = self.slots.poll_output() {
            match output {
                SlotOutput::Redis {
                    op,
                    command,
                    timeout,
                } => self.call(op, replies, move |redis| async move {
                    redis.perform_slot(&command, timeout).await
                }),
                SlotOutput::Reserved { ticket, reserved } => {
                    if let Some(reply) = self.reservations.remove(&ticket) {
                        if let Err(Some((id, _))) = reply.send(reserved) {
                            // The channel is gone: nothing opens on the slot.
                            self.slots.stopped(self.clock.now(), id);
                        }
                    }
                }
                SlotOutput::Orphan(record) => {
                    tracing::warn!(instance = %record.instance, fencing = record.fencing, engine = %record.engine, stream = %record.stream_id,
                        "took over a channel whose owner left its engine session: stopping it and recording its end (owner_lost)");
                    self.slot_event("orphan_claimed");
                    let _ = self.sinks.orphans.send(record);
                }
                SlotOutput::EndDecided { ticket, act } => {
                    if let Some((reply, channel)) = self.endings.remove(&ticket) {
                        let _ = reply.send(EndAnswer::Decided(act));
                        if let Some(channel) = channel {
                            self.machine.resolved(self.clock.now(), &channel);
                        }
                    }
                }
                SlotOutput::StopDue { ticket } => {
                    if let Some((reply, _)) = self.endings.get(&ticket) {
                        tracing::warn!("Redis has not said for a session record's time to live whether a newer owner took this session over: stopping it now (again, if one did); its end waits for Redis");
                        let _ = reply.send(EndAnswer::StopNow);
                    }
                }
                SlotOutput::LostDecided { channel, act } => {
                    if !act {
                        tracing::warn!(%channel, "a newer owner has taken over this channel's session: leaving its stop and its end to it");
                        self.slot_event("lost_handled_elsewhere");
                    }
                    let _ = self.sinks.lost.send(channel);
                }
                SlotOutput::Notice(notice) => self.slot_notice(notice),
            }
        }
        let held = self.slots.held();
        self.metrics.cluster_engine_slots.set(
            i64::try_from(held.iter().filter(|slot| slot.slot.is_some()).count())
                .unwrap_or(i64::MAX),
        );
        *self
            .cluster
            .0
            .slots
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = held;
    }

    fn slot_event(&self, event: &str) {
        self.metrics
            .cluster_slot_events
            .get_or_create(&SlotEventLabels {
                event: event.to_owned(),
            })
            .inc();
    }

    fn slot_notice(&self, notice: SlotNotice) {
        match notice {
            SlotNotice::Reserved {
                channel,
                engine,
                slot,
            } => {
                tracing::debug!(%channel, %engine, slot, "engine slot reserved");
                self.slot_event("reserved");
            }
            SlotNotice::Full { channel, engine } => {
                tracing::info!(%channel, %engine, "engine full cluster-wide (--max-streams-per-engine)");
                self.slot_event("full");
            }
            SlotNotice::Unreserved { channel, engine } => {
                tracing::warn!(%channel, %engine, "engine session runs without a cluster-wide slot; reserving it again at the next renewal");
                self.slot_event("unreserved");
            }
            SlotNotice::Superseded {
                channel,
                instance,
                fencing,
            } => {
                tracing::warn!(%channel, %instance, fencing, "a newer owner's session record is in Redis; not writing this one");
                self.slot_event("superseded");
            }
            SlotNotice::RedisFailed { call, error } => {
                tracing::warn!(call, %error, "Redis call for engine slots failed");
                self.metrics
                    .cluster_redis_failures
                    .get_or_create(&RedisCallLabels {
                        call: format!("slot_{call}"),
                    })
                    .inc();
            }
            other => tracing::debug!(?other, "engine slot notice"),
        }
    }

    fn perform(&mut self, replies: &Replies<acemux_core::cluster::Reply>) {
        let mut changed = false;
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Redis {
                    op,
                    command,
                    timeout,
                } => self.call(op, replies, move |redis| async move {
                    redis.perform(&command, timeout).await
                }),
                Output::Route { ticket, route } => {
                    if let Some((_, reply)) = self.tickets.remove(&ticket) {
                        let _ = reply.send(route);
                    }
                    changed = true;
                }
                Output::Lost { channel, owner } => {
                    let owner = owner.map(|owner| owner.instance).unwrap_or_default();
                    tracing::warn!(%channel, %owner, "another instance owns the channel now; stopping it here");
                    self.event("lost");
                    // Stopped once the session record says who stops its session.
                    self.slots.lost(self.clock.now(), &channel);
                    changed = true;
                }
                Output::Notice(notice) => {
                    if let Notice::Acquired { channel, fencing } = &notice {
                        // A dead owner's session of the channel is claimed, once.
                        self.slots.acquired(self.clock.now(), channel, *fencing);
                    }
                    self.notice(notice);
                    changed = true;
                }
            }
        }
        if changed {
            let held = self.machine.held();
            self.metrics
                .cluster_leases
                .set(i64::try_from(held.len()).unwrap_or(i64::MAX));
            *self.cluster.held() = held;
        } else {
            // Renewals move expiries; keep the view current.
            *self.cluster.held() = self.machine.held();
        }
    }

    fn event(&self, event: &str) {
        self.metrics
            .cluster_lease_events
            .get_or_create(&LeaseEventLabels {
                event: event.to_owned(),
            })
            .inc();
    }

    fn notice(&self, notice: Notice) {
        match notice {
            Notice::Acquired { channel, fencing } => {
                tracing::info!(%channel, fencing, "took the channel's lease: its engine session is opened here");
                self.event("acquired");
            }
            Notice::LocalFallback { channel } => {
                tracing::warn!(%channel, "Redis did not answer in time: starting the channel here without a lease (--cluster-redis-wait)");
                self.event("local_fallback");
            }
            Notice::RedisFailed {
                channel,
                call,
                error,
            } => {
                tracing::warn!(%channel, call, %error, "Redis call failed");
                self.metrics
                    .cluster_redis_failures
                    .get_or_create(&RedisCallLabels {
                        call: call.to_owned(),
                    })
                    .inc();
            }
            Notice::StaleFencing {
                channel,
                got,
                highest,
            } => {
                tracing::warn!(%channel, got, highest, "lease taken with a fencing number not above one already seen (Redis restarted?); giving it back and raising the counter");
                self.event("stale_fencing");
            }
            Notice::Expired { channel } => {
                tracing::warn!(%channel, "the channel's lease was gone from Redis; taking it again");
                self.event("expired");
            }
            other => tracing::debug!(?other, "cluster notice"),
        }
    }
}
