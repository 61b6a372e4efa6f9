//! The channel task: one per channel, generic over the format. It owns the channel's
//! core machine ([`ComposedChannel`]), feeds it the mailbox's messages, the
//! completions of the I/O it asked for and the time, and performs its outputs. It
//! decides nothing: every deadline, retry and bound is the machine's.

use std::collections::BTreeMap;
use std::sync::Arc;

use acemux_core::channel::{ComposedChannel, Input, Media, Output, RequestId};
use acemux_core::cluster::{ReservationId, Route, SessionRecord};
use acemux_core::lifecycle::EngineAddr;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::calls::LifecycleApplier;
use super::viewers::ChannelStatus;
use super::{ChannelKey, ChannelMsg, Proxy};
use crate::metrics::ChannelLabels;
use crate::net::Net;

mod ends;

/// Completions held at most. Helper tasks wait when it is full: for the playback
/// reader that is the backpressure towards the engine.
const COMPLETIONS: usize = 64;

/// Mailbox messages taken at most before the outputs they caused are performed.
const MESSAGE_BATCH: usize = 64;

/// The cluster's answer to a route request, with the engines to avoid.
pub(super) type Routed = (Route, Vec<EngineAddr>);

/// The engine picked with a slot reserved cluster-wide (none: every candidate full).
pub(super) type Picked = Option<(Option<ReservationId>, EngineAddr)>;

/// An engine slot this channel holds.
struct Reservation {
    id: ReservationId,
    engine: EngineAddr,
    /// The session opened on it, once it started.
    command_url: Option<String>,
}

/// What a channel task needs to perform outputs, whatever the format.
pub(super) struct Env<N: Net, I> {
    pub(super) proxy: Proxy<N>,
    pub(super) id: u64,
    pub(super) key: ChannelKey,
    pub(super) labels: ChannelLabels,
    /// Where helper tasks report completions.
    pub(super) completions: mpsc::Sender<Input<I>>,
    /// What the status page shows of the channel.
    pub(super) status: Arc<ChannelStatus>,
    /// Cluster mode: the instance the channel relays from now, if another owns it.
    pub(super) relay: Option<super::relay::RelayTarget>,
}

/// The io side of a format: the connections and waiters behind the machine's ids.
pub(super) trait Format<N: Net>: Send + 'static {
    /// The core media part.
    type Media: Media<Input: Send + 'static, Output: Send> + Send + 'static;

    /// The media part of a channel created now.
    fn media(&self, proxy: &Proxy<N>) -> Self::Media;

    /// Turns a mailbox message into a machine input (keeping what the message carries:
    /// a viewer's queue, a waiter's reply).
    fn message(&mut self, message: ChannelMsg) -> Option<<Self::Media as Media>::Input>;

    /// Notes a completion before the machine sees it (metrics, handles of finished
    /// helpers).
    fn completed(
        &mut self,
        env: &Env<N, <Self::Media as Media>::Input>,
        input: &<Self::Media as Media>::Input,
    );

    /// Performs a media output; a completion known at once (a viewer whose queue is
    /// gone) is pushed to `feedback`.
    fn perform(
        &mut self,
        env: &Env<N, <Self::Media as Media>::Input>,
        output: <Self::Media as Media>::Output,
        feedback: &mut Vec<<Self::Media as Media>::Input>,
    );

    /// The channel ended: nothing more is performed for its viewers.
    fn ended(&mut self);
}

/// One channel's task.
pub(super) struct ChannelTask<N: Net, F: Format<N>> {
    env: Env<N, <F::Media as Media>::Input>,
    format: F,
    machine: ComposedChannel<F::Media>,
    completion_rx: mpsc::Receiver<Input<<F::Media as Media>::Input>>,
    /// Session requests in flight, to abandon.
    requests: BTreeMap<RequestId, AbortHandle>,
    stream_id: watch::Sender<Option<String>>,
    applier: LifecycleApplier,
    stop_waiters: Vec<oneshot::Sender<()>>,
    /// Cluster mode: where the cluster answers the channel's route requests.
    routes: (mpsc::Sender<Routed>, mpsc::Receiver<Routed>),
    /// Cluster mode: where the cluster answers the channel's slot requests.
    picks: (mpsc::Sender<Picked>, mpsc::Receiver<Picked>),
    /// Cluster mode: the engine slots the channel holds.
    reservations: Vec<Reservation>,
    /// Cluster mode: whether this instance stops each owned session and records its end.
    decisions: ends::Decisions,
    /// Where those answers come.
    decided: ends::Answers,
}

impl<N: Net, F: Format<N>> ChannelTask<N, F> {
    pub(super) fn new(
        proxy: Proxy<N>,
        id: u64,
        key: ChannelKey,
        stream_id: watch::Sender<Option<String>>,
        status: Arc<ChannelStatus>,
        format: F,
    ) -> Self {
        let shared = proxy.0.clone();
        shared.metrics.channels.inc();
        let (completions, completion_rx) = mpsc::channel(COMPLETIONS);
        let now = shared.lifecycle.clock().now();
        let mut channel = shared.config.channel.clone();
        if key.format == crate::engine::StreamFormat::Hls {
            // A playlist advances one segment at a time: silence is judged on its own bound.
            channel.upstream_stall_timeout = shared.config.hls_stall_timeout;
        }
        let machine =
            ComposedChannel::new(now, channel, proxy.engine_calls(), format.media(&proxy));
        ChannelTask {
            env: Env {
                labels: ChannelLabels::new(&key),
                proxy,
                id,
                key,
                completions,
                status,
                relay: None,
            },
            format,
            machine,
            completion_rx,
            requests: BTreeMap::new(),
            stream_id,
            applier: LifecycleApplier::spawn(shared.lifecycle.clone()),
            stop_waiters: Vec::new(),
            routes: mpsc::channel(1),
            picks: mpsc::channel(1),
            reservations: Vec::new(),
            decisions: ends::Decisions::new(),
            decided: mpsc::unbounded_channel(),
        }
    }

    /// Runs the channel until its machine is finished.
    pub(super) async fn run(mut self, mut inbox: mpsc::Receiver<ChannelMsg>) {
        let clock = self.env.proxy.0.lifecycle.clock();
        let mut retired = false;
        loop {
            if self.drain() && !retired {
                retired = true;
                let stops = self
                    .env
                    .proxy
                    .retire(&self.env.key, self.env.id, &mut inbox);
                self.stop_waiters.extend(stops);
            }
            // A stop is answered once the end it caused is applied (or left to the
            // channel's new owner).
            if retired && !self.undecided() {
                for done in self.stop_waiters.drain(..) {
                    self.applier.notify(done);
                }
            }
            if self.machine.is_finished() && !self.undecided() {
                break;
            }
            let sleep = clock.sleep_until_earliest([self.machine.poll_timeout()]);
            tokio::select! {
                biased;
                Some(input) = self.completion_rx.recv() => {
                    self.completed(&input);
                    self.machine.handle_input(clock.now(), input);
                }
                Some((route, exclude)) = self.routes.1.recv() => self.routed(route, exclude),
                Some(picked) = self.picks.1.recv() => self.picked(picked),
                Some((command_url, act)) = self.decided.1.recv() => self.decided(command_url, act),
                message = inbox.recv(), if !retired => match message {
                    Some(message) => {
                        let now = clock.now();
                        self.message(now, message);
                        // A crowd's messages are taken in batches: one wake-up, one
                        // timer reset and one drain for many. An ended channel takes no
                        // more; what is left goes to its successor.
                        for _ in 1..MESSAGE_BATCH {
                            if self.machine.is_ended() {
                                break;
                            }
                            match inbox.try_recv() {
                                Ok(message) => self.message(now, message),
                                Err(_) => break,
                            }
                        }
                    }
                    // Unreachable while the directory holds a sender; should every
                    // sender go, nothing can reach the channel any more.
                    None => self.machine.handle_input(
                        clock.now(),
                        Input::Stop(acemux_core::lifecycle::EndReason::Unreachable),
                    ),
                },
                () = sleep => self.machine.handle_timeout(clock.now()),
            }
        }
        for (_, request) in std::mem::take(&mut self.requests) {
            request.abort();
        }
        self.release_reservations(|_| true);
        self.applier.finish().await;
        tracing::debug!(channel = %self.env.key, "channel task finished");
    }

    /// The cluster's answer to a route request: the pool picks an engine (the lease is
    /// this instance's, or Redis is unreachable), or the owner is the channel's engine.
    fn routed(&mut self, route: Route, exclude: Vec<EngineAddr>) {
        let now = self.env.proxy.0.lifecycle.clock().now();
        let picked = match route {
            Route::Own { .. } | Route::Local => {
                self.env.relay = None;
                let fencing = match route {
                    Route::Own { fencing } => fencing,
                    _ => 0,
                };
                let candidates = self.env.proxy.pool().candidates(now, &exclude);
                match self.env.proxy.0.cluster.get() {
                    Some(cluster) if !candidates.is_empty() => {
                        // Answered through `picks` once a slot is reserved cluster-wide.
                        let (cluster, picks) = (cluster.clone(), self.picks.0.clone());
                        let channel = self.env.labels.channel.clone();
                        tokio::spawn(async move {
                            let picked = cluster.reserve(&channel, fencing, candidates).await;
                            if let Err(mpsc::error::SendError(Some((Some(id), _)))) =
                                picks.send(picked).await
                            {
                                // The channel is gone: nothing opens on the slot.
                                cluster.session_stopped(id);
                            }
                        });
                        return;
                    }
                    _ => candidates.into_iter().next(),
                }
            }
            // An HLS channel's players are relayed the owner's playlist before any
            // channel starts here (`hls_routes`); one that started as the lease went
            // elsewhere meanwhile has no engine, and its players ask again.
            Route::Relay(owner) if self.env.key.format == crate::engine::StreamFormat::Hls => {
                tracing::info!(channel = %self.env.key, owner = %owner.instance,
                    "another instance took the channel meanwhile; its players are relayed from it");
                None
            }
            Route::Relay(owner) => {
                let secret = self
                    .env
                    .proxy
                    .0
                    .cluster
                    .get()
                    .map(|cluster| cluster.secret().to_owned())
                    .unwrap_or_default();
                match super::relay::RelayTarget::new(&owner.advertise, &secret) {
                    Some(target) => {
                        let engine = target.engine.clone();
                        self.env.relay = Some(target);
                        Some(engine)
                    }
                    None => {
                        tracing::warn!(channel = %self.env.key, owner = %owner.instance, advertise = %owner.advertise,
                            "the channel's owner advertises an unusable address");
                        None
                    }
                }
            }
        };
        self.machine.handle_input(now, Input::EnginePicked(picked));
    }

    /// The engine picked with a cluster-wide slot (or none free anywhere: the
    /// capacity answer, as when this instance's engines are full).
    fn picked(&mut self, picked: Picked) {
        let now = self.env.proxy.0.lifecycle.clock().now();
        let engine = picked.map(|(id, engine)| {
            if let Some(id) = id {
                self.reservations.push(Reservation {
                    id,
                    engine: engine.clone(),
                    command_url: None,
                });
            }
            engine
        });
        self.machine.handle_input(now, Input::EnginePicked(engine));
    }

    /// Gives back the slots `which` selects.
    fn release_reservations(&mut self, which: impl Fn(&Reservation) -> bool) {
        let Some(cluster) = self.env.proxy.0.cluster.get() else {
            return;
        };
        self.reservations.retain(|reservation| {
            if which(reservation) {
                cluster.session_stopped(reservation.id);
                false
            } else {
                true
            }
        });
    }

    /// Gives back the slots of sessions that never opened (a new pick replaces them);
    /// the cluster, if any.
    fn release_unopened(&mut self) -> Option<&crate::cluster::Cluster> {
        self.release_reservations(|reservation| reservation.command_url.is_none());
        self.env.proxy.0.cluster.get()
    }

    /// The `stream_started` of `session`.
    fn stream_started(
        &self,
        session: &acemux_core::channel::EngineSession,
    ) -> acemux_core::lifecycle::StreamStarted {
        let clustered = self.env.proxy.0.cluster.get().is_some();
        super::calls::stream_started(&self.env.key, session.clone(), clustered)
    }

    /// A session started on a reserved engine: its record goes to Redis.
    fn reserved_session_started(
        &mut self,
        session: &acemux_core::channel::EngineSession,
        started: acemux_core::lifecycle::StreamStarted,
    ) {
        let Some(cluster) = self.env.proxy.0.cluster.get() else {
            return;
        };
        let Some(reservation) = self.reservations.iter_mut().find(|reservation| {
            reservation.engine == session.engine && reservation.command_url.is_none()
        }) else {
            return;
        };
        reservation.command_url = Some(session.session.command_url.clone());
        let record = SessionRecord {
            instance: cluster.instance().to_owned(),
            fencing: cluster
                .view()
                .leases
                .iter()
                .find(|lease| lease.channel == self.env.labels.channel)
                .map_or(0, |lease| lease.fencing),
            engine: session.engine.clone(),
            command_url: session.session.command_url.clone(),
            stream_id: super::calls::stream_id(&self.env.key, session),
            started,
            started_at: self.env.proxy.0.lifecycle.clock().now(),
            ended: false,
        };
        cluster.session_started(reservation.id, record);
    }

    fn message(&mut self, now: acemux_core::Instant, message: ChannelMsg) {
        match message {
            ChannelMsg::Stop { reason, done } => {
                self.stop_waiters.push(done);
                let input = if reason == acemux_core::lifecycle::EndReason::Shutdown {
                    Input::Shutdown
                } else {
                    Input::Stop(reason)
                };
                self.machine.handle_input(now, input);
            }
            message => {
                if let Some(input) = self.format.message(message) {
                    self.machine.handle_input(now, Input::Media(input));
                }
            }
        }
    }

    fn completed(&mut self, input: &Input<<F::Media as Media>::Input>) {
        match input {
            Input::SessionAnswer { request, .. } => {
                self.requests.remove(request);
            }
            Input::Media(media) => self.format.completed(&self.env, media),
            _ => {}
        }
    }

    /// Performs every pending output (outputs can cause inputs, so until the machine
    /// is quiet); says whether the channel ended on the way.
    fn drain(&mut self) -> bool {
        let mut ended = false;
        let mut feedback = Vec::new();
        loop {
            let Some(output) = self.machine.poll_output() else {
                if feedback.is_empty() {
                    return ended;
                }
                let now = self.env.proxy.0.lifecycle.clock().now();
                for input in feedback.drain(..) {
                    self.machine.handle_input(now, Input::Media(input));
                }
                continue;
            };
            match output {
                Output::Media(output) => self.format.perform(&self.env, output, &mut feedback),
                Output::Ended { reason } => {
                    ended = true;
                    self.format.ended();
                    tracing::info!(channel = %self.env.key, %reason, "channel ended");
                    let shared = &self.env.proxy.0;
                    shared.metrics.channels.dec();
                    shared.metrics.remove_channel(&self.env.labels);
                    // Slots (and records) go before the lease.
                    self.release_reservations(|_| true);
                    let shared = &self.env.proxy.0;
                    if let Some(cluster) = shared.cluster.get() {
                        // Gives back the lease it holds or is taking (also one a route
                        // request still in flight brings); nothing for a channel that
                        // relayed.
                        cluster.finished(&self.env.labels.channel);
                    }
                }
                Output::PickEngine { exclude } => match self.release_unopened().cloned() {
                    Some(cluster) => {
                        // Answered (within the cluster's wait bound) through `routes`.
                        let routes = self.routes.0.clone();
                        super::relay::ask_route(cluster, &self.env.key, exclude, routes);
                    }
                    _ => {
                        let now = self.env.proxy.0.lifecycle.clock().now();
                        let picked = self.env.proxy.pool().pick(now, &exclude);
                        self.machine.handle_input(now, Input::EnginePicked(picked));
                    }
                },
                Output::RequestSession { request, engine } => {
                    let handle = match &self.env.relay {
                        Some(relay) if relay.engine == engine => {
                            super::relay::relay_session(&self.env, request, relay)
                        }
                        _ => super::calls::request_session(&self.env, request, engine),
                    };
                    self.requests.insert(request, handle);
                }
                Output::AbandonRequest { request } => {
                    if let Some(handle) = self.requests.remove(&request) {
                        handle.abort();
                    }
                }
                Output::StopSession {
                    stop, command_url, ..
                } if command_url == super::relay::RELAY_COMMAND => {
                    // A relayed session: the owner stops its own.
                    self.answer_stop_here(stop);
                }
                Output::StopSession {
                    stop,
                    attempt,
                    engine,
                    command_url,
                } => self.stop_owned(stop, attempt, engine, command_url),
                Output::Pool(change) => {
                    let now = self.env.proxy.0.lifecycle.clock().now();
                    super::calls::pool_change(&self.env.proxy, now, change);
                }
                Output::FetchStats { poll, url, .. } => {
                    super::calls::fetch_stats(&self.env, poll, url);
                }
                Output::Stats(stats) => {
                    if let Some(id) = self.stream_id.borrow().clone() {
                        super::calls::publish_stats(&self.env, &id, Some(stats));
                    }
                }
                Output::Started(session) => {
                    self.env.status.update(|state| {
                        state.phase = "playing";
                        state.engine = Some(session.engine.clone());
                    });
                    if super::relay::is_relayed(&session) {
                        tracing::info!(channel = %self.env.key, owner = %session.engine, "relayed stream started");
                        continue;
                    }
                    let started = self.stream_started(&session);
                    self.reserved_session_started(&session, started.clone());
                    let id = super::calls::stream_id(&self.env.key, &session);
                    tracing::info!(channel = %self.env.key, stream = %id, engine = %session.engine, "stream started");
                    self.stream_id.send_replace(Some(id));
                    self.applier.started(started);
                }
                Output::SessionEnded { session, reason } => {
                    if reason != acemux_core::lifecycle::EndReason::Idle {
                        self.env.status.update(|state| state.phase = "recovering");
                    }
                    if super::relay::is_relayed(&session) {
                        tracing::info!(channel = %self.env.key, owner = %session.engine, %reason, "relayed stream ended");
                        continue;
                    }
                    let id = super::calls::stream_id(&self.env.key, &session);
                    super::calls::publish_stats(&self.env, &id, None);
                    self.stream_id.send_replace(None);
                    self.end_owned(&session.session.command_url, id, reason);
                }
                Output::Notice(notice) => super::calls::notice(&self.env, notice),
            }
        }
    }
}
