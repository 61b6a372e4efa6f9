//! One simulated world: acemux, engines behind a "gluetun" relay, an event
//! receiver and players, all running the real code over turmoil, from one seed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use acemux::metrics::Metrics;
use acemux::net::Net;
use acemux::proxy::ProxyConfig;
use acemux::store::{EventStore, MemoryStore, StoreFaults};
use acemux::webhook::DeliveryPolicy;
use acemux::ServeOptions;
use acemux_core::planted::Bug;
use acemux_core::rng::SeededRng;
use acemux_testkit::emulator::{Emulator, EmulatorConfig, Faults};

use crate::hosts::{orchestrator, receiver};
use crate::instances::{
    instance_hosts, serve_options, spawn_acemux, spawn_redis, ClusterSetup, Instance,
};
use crate::invariants::Checker;
use crate::net::TurmoilNet;
use crate::observe::Observer;
use crate::players::{run_player, Player};
use crate::relay::{run_relay, RelayControl, Route};
use crate::trace::{self, TraceLayer};

/// acemux's port.
pub const ACEMUX_PORT: u16 = 6880;
/// The engines' port.
pub const ENGINE_PORT: u16 = 6878;
/// The orchestrator host's port.
pub(crate) const ORCHESTRATOR_PORT: u16 = 8000;

/// The relay's first port; engine `i` is reached at `gluetun:GLUETUN_BASE_PORT + i`.
pub const GLUETUN_BASE_PORT: u16 = 19000;
/// The receiver's port.
pub const RECEIVER_PORT: u16 = 8080;
/// The wall-clock origin every simulated acemux uses (2023-11-14).
pub(crate) const CLOCK_ORIGIN_UNIX_MICROS: u64 = 1_700_000_000_000_000;

/// How a world is built.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// The one seed everything derives from.
    pub seed: u64,
    /// The scenario's name, for replay commands.
    pub scenario: &'static str,
    /// Engines behind the relay.
    pub engines: usize,
    /// acemux's proxy bounds (engines filled in).
    pub proxy: ProxyConfig,
    /// Deliver events to acemux's own event API.
    pub self_webhook: bool,
    /// Deliver events to the external receiver.
    pub receiver_webhook: bool,
    /// Webhook delivery timing.
    pub delivery: DeliveryPolicy,
    /// turmoil's per-socket capacity, in segments.
    pub tcp_capacity: usize,
    /// Faults of the engines at start, per content id.
    pub engine_faults: BTreeMap<String, Faults>,
    /// Scenario-wide checking rules.
    pub rules: Rules,
    /// Engines from an orchestrator's list instead of `--engine`: the host
    /// `orchestrator` serves this body at `/engines` (changed with
    /// [`World::set_orchestrator_list`]), polled every 2 s.
    pub orchestrator_list: Option<String>,
    /// Several instances sharing channels through Redis (hosts `acemux1`..`acemuxN`
    /// and `redis`) instead of one host `acemux`.
    pub cluster: Option<ClusterSetup>,
}

/// What the invariants tolerate in a scenario.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Longest time an engine session may run after its `stream_ended`, the engine
    /// being reachable.
    pub stop_bound: Duration,
    /// Longest gap between two pieces of media a reading TS viewer may see, outside
    /// fault windows.
    pub media_gap: Duration,
    /// How long after a fault ends (or an engine crashes) the media-gap rule waits:
    /// time for acemux to notice and replace the upstream.
    pub recovery: Duration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            stop_bound: Duration::from_secs(15),
            media_gap: Duration::from_secs(4),
            recovery: Duration::from_secs(40),
        }
    }
}

thread_local! {
    /// The bug planted in the worlds this thread builds (see [`plant_on_this_thread`]).
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Plants `bug` (or nothing) in every world built on this thread from now on: the
/// self-test of the simulation (`sim/tests/planted.rs`, `acemux-sim --plant`). A seed
/// runs on one thread, so parallel runs do not see each other's bug.
pub fn plant_on_this_thread(bug: Option<Bug>) {
    PLANTED.with(|planted| planted.set(bug));
}

impl WorldConfig {
    /// A world with `engines` healthy engines, webhooks to the receiver, and the
    /// default proxy bounds shortened to simulated-minute scale.
    pub fn new(scenario: &'static str, seed: u64, engines: usize) -> Self {
        let mut proxy = ProxyConfig::default();
        if let Some(bug) = PLANTED.with(std::cell::Cell::get) {
            proxy.plant(bug);
        }
        proxy.channel.idle_grace = Duration::from_secs(5);
        proxy.channel.start_timeout = Duration::from_secs(20);
        proxy.fanout.ring_capacity_bytes = 512 * 1024;
        proxy.hls_idle_timeout = Duration::from_secs(10);
        // Stats polled as `acemux serve` does.
        proxy.stats = acemux_core::channel::StatsConfig {
            interval: Some(Duration::from_secs(5)),
            no_peers_timeout: Some(Duration::from_secs(60)),
        };
        WorldConfig {
            seed,
            scenario,
            engines,
            proxy,
            self_webhook: false,
            receiver_webhook: true,
            delivery: DeliveryPolicy {
                api_key: None,
                attempt_timeout: Duration::from_secs(5),
                initial_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(8),
                ..ServeOptions::default().delivery
            },
            tcp_capacity: 64,
            engine_faults: BTreeMap::new(),
            rules: Rules::default(),
            orchestrator_list: None,
            cluster: None,
        }
    }
}

/// A fault the schedule applies at a simulated time.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Sets the latency of the link between two hosts (both directions).
    Latency(&'static str, String, Duration),
    /// Drops everything between two hosts until repaired.
    Partition(&'static str, String),
    /// Ends a partition.
    Repair(&'static str, String),
    /// Holds messages between two hosts until released.
    Hold(&'static str, String),
    /// Delivers held messages.
    Release(&'static str, String),
    /// The relay stops (`true`) or resumes forwarding.
    RelayStall(bool),
    /// Faults of an engine's emulator for one content id (the engine host, the content).
    EngineFaults(String, String, Box<Faults>),
    /// Ends them.
    ClearEngineFaults(String, String),
    /// The event receiver answers this status to every event (200: healthy).
    ReceiverStatus(u16),
    /// A host crashes (all its tasks and sockets gone): an engine, an acemux instance
    /// or the Redis host.
    Crash(String),
    /// A crashed host starts again (an engine as a new engine, acemux on its store,
    /// Redis empty).
    Restart(String),
    /// acemux's event store becomes slow or failing (the default: healthy again).
    Store(StoreFaults),
}

/// One engine host and the emulators it ran (a new one per restart).
#[derive(Clone)]
pub struct EngineHandle {
    /// Host name.
    pub name: String,
    /// Every emulator this host ran, oldest first.
    pub emulators: Arc<Mutex<Vec<Emulator>>>,
}

impl EngineHandle {
    /// Every emulator this host ran, oldest first.
    pub fn emulators(&self) -> Vec<Emulator> {
        self.emulators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A failed run: what broke, when, and how to replay it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The scenario.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// Simulated time of the failure.
    pub at: Duration,
    /// What broke.
    pub message: String,
}

impl Failure {
    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        replay_command(self.scenario, self.seed)
    }
}

/// The command that replays `scenario` with `seed`.
pub fn replay_command(scenario: &str, seed: u64) -> String {
    format!("cargo run -p acemux-sim --release -- --scenario {scenario} --seed {seed}")
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "scenario {} seed {} failed at {:?} simulated: {}\n  replay: {}",
            self.scenario,
            self.seed,
            self.at,
            self.message,
            self.replay_command()
        )
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Simulated time run.
    pub simulated: Duration,
    /// Hash of the whole trace (see [`crate::trace`]).
    pub trace_hash: u64,
    /// Counters worth printing.
    pub summary: String,
}

/// A built world, stepped by the scenario.
pub struct World<'a> {
    /// The simulation.
    pub sim: turmoil::Sim<'a>,
    /// How it was built.
    pub config: WorldConfig,
    /// What players and the receiver saw.
    pub observer: Observer,
    /// acemux's event store (the first instance's, in a cluster world).
    pub store: Arc<MemoryStore>,
    /// Every acemux instance: `acemux` alone, or `acemux1`..`acemuxN`.
    pub instances: Vec<Instance>,
    /// What the simulated Redis holds, in a cluster world.
    pub redis: Option<crate::redis::RedisView>,
    /// The engines.
    pub engines: Vec<EngineHandle>,
    /// The relay's switches.
    pub relay: Arc<RelayControl>,
    /// acemux's metrics, once it runs (the first instance's, in a cluster world).
    pub metrics: Arc<Mutex<Option<Arc<Metrics>>>>,
    /// The workload's random numbers (turmoil has its own, from the same seed).
    pub rng: SeededRng,
    schedule: Vec<(Duration, Fault)>,
    checker: Checker,
    trace_layer: TraceLayer,
    _trace_guard: tracing::subscriber::DefaultGuard,
    player_hosts: usize,
    /// The body the orchestrator host serves at `/engines`.
    orchestrator_list: Arc<Mutex<String>>,
    /// What the event receiver answers.
    receiver_status: Arc<std::sync::atomic::AtomicU16>,
    /// Contents given emulator faults by the schedule, cleared when healing.
    faulted_contents: std::collections::BTreeSet<String>,
}

/// The webhook URL of acemux itself.
pub fn self_webhook_url() -> String {
    format!("http://acemux:{ACEMUX_PORT}")
}

/// The webhook URL of the external receiver.
pub fn receiver_webhook_url() -> String {
    format!("http://receiver:{RECEIVER_PORT}")
}

impl<'a> World<'a> {
    /// Builds the hosts; nothing has run yet.
    pub fn build(config: WorldConfig) -> World<'a> {
        let trace_layer = TraceLayer::default();
        let trace_guard = trace::install(trace_layer.clone());
        let mut rng = SeededRng::new(config.seed);
        let mut sim = turmoil::Builder::new()
            .rng_seed(rng.next_u64())
            .simulation_duration(Duration::from_secs(24 * 3600))
            // 30 ms steps: every timeout and fault window of the scenarios is hundreds of
            // milliseconds or more, and a step costs about the same whatever its length
            // (each host's runtime is entered once per step), so runs are about ten
            // times faster than at 1 ms; message latencies (1–10 ms) land on the next step.
            .tick_duration(Duration::from_millis(30))
            .epoch(UNIX_EPOCH + Duration::from_micros(CLOCK_ORIGIN_UNIX_MICROS))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(10))
            .tcp_capacity(config.tcp_capacity)
            .build();
        let observer = Observer::new();
        let relay = RelayControl::new();

        let mut engines = Vec::new();
        for index in 0..config.engines {
            let handle = EngineHandle {
                name: format!("engine{}", index + 1),
                emulators: Arc::new(Mutex::new(Vec::new())),
            };
            let emulators = handle.emulators.clone();
            let faults = config.engine_faults.clone();
            sim.host(handle.name.as_str(), move || {
                let mut ran = emulators.lock().unwrap_or_else(|p| p.into_inner());
                // Engines, and each restart of one, number their sessions apart.
                let first_session_number =
                    (index as u64 + 1) * 1_000_000 + ran.len() as u64 * 10_000;
                let emulator = Emulator::new(EmulatorConfig {
                    faults: faults.clone(),
                    first_session_number,
                    media: crate::media_index::MediaIndex::simulated().media().clone(),
                    ..EmulatorConfig::default()
                });
                ran.push(emulator.clone());
                drop(ran);
                async move {
                    let listener = TurmoilNet
                        .bind(
                            SocketAddr::from(([0, 0, 0, 0], ENGINE_PORT)),
                            acemux::net::DEFAULT_BACKLOG,
                        )
                        .await?;
                    emulator.serve(listener, std::future::pending()).await;
                    Ok(())
                }
            });
            engines.push(handle);
        }

        let routes: Vec<Route> = engines
            .iter()
            .enumerate()
            .map(|(index, engine)| Route {
                listen_port: GLUETUN_BASE_PORT + index as u16,
                upstream_host: engine.name.clone(),
                upstream_port: ENGINE_PORT,
            })
            .collect();
        {
            let relay = relay.clone();
            sim.host("gluetun", move || run_relay(routes.clone(), relay.clone()));
        }

        let receiver_status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        {
            let observer = observer.clone();
            let status = receiver_status.clone();
            sim.host("receiver", move || {
                receiver(observer.clone(), status.clone())
            });
        }
        let orchestrator_list = Arc::new(Mutex::new(
            config.orchestrator_list.clone().unwrap_or_default(),
        ));
        if config.orchestrator_list.is_some() {
            let list = orchestrator_list.clone();
            sim.host("orchestrator", move || orchestrator(list.clone()));
        }

        let mut webhooks = Vec::new();
        if config.self_webhook {
            webhooks.push(self_webhook_url());
        }
        if config.receiver_webhook {
            webhooks.push(receiver_webhook_url());
        }
        let redis = config.cluster.as_ref().map(|_| spawn_redis(&mut sim));
        let mut instances = Vec::new();
        for host in instance_hosts(config.cluster.as_ref()) {
            let store = MemoryStore::new(webhooks.clone());
            store.plant(config.proxy.planted);
            let metrics = Arc::new(Mutex::new(None));
            let options = serve_options(&config, &webhooks, rng.next_u64());
            spawn_acemux(
                &mut sim,
                &host,
                store.clone(),
                metrics.clone(),
                options,
                config.cluster.as_ref(),
                CLOCK_ORIGIN_UNIX_MICROS,
            );
            instances.push(Instance {
                host,
                store,
                metrics,
            });
        }
        let store = instances[0].store.clone();
        let metrics = instances[0].metrics.clone();

        let mut checker = Checker::new(config.rules.clone());
        if config.cluster.is_some() {
            let mut hosts: Vec<String> = instances.iter().map(|i| i.host.clone()).collect();
            hosts.push(crate::instances::REDIS_HOST.to_owned());
            checker.cluster(hosts);
        }
        // Emulator faults set from the start are faults for the whole run, on every
        // engine: a window open until healing.
        let engine_names: Vec<String> = engines.iter().map(|e| e.name.clone()).collect();
        for content in config.engine_faults.keys() {
            checker.fault_window(
                Duration::ZERO,
                format!("emulator {} {content}", engine_names.join(" ")),
                true,
            );
        }
        World {
            sim,
            config,
            observer,
            store,
            instances,
            redis,
            engines,
            relay,
            metrics,
            rng,
            schedule: Vec::new(),
            checker,
            trace_layer,
            _trace_guard: trace_guard,
            player_hosts: 0,
            orchestrator_list,
            receiver_status,
            faulted_contents: std::collections::BTreeSet::new(),
        }
    }

    /// What the orchestrator's engine list answers from now on.
    pub fn set_orchestrator_list(&mut self, body: String) {
        self.observer
            .lock()
            .trace
            .add_text(&format!("orchestrator list {body}"));
        *self
            .orchestrator_list
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = body;
    }

    /// Adds a host running `players` concurrently.
    pub fn players(&mut self, players: Vec<Player>) {
        self.player_hosts += 1;
        let name = format!("players{}", self.player_hosts);
        for player in &players {
            self.checker.player_host(&player.name, &name);
            self.checker
                .player_target(&player.name, crate::instances::target_host(&player.target));
        }
        let observer = self.observer.clone();
        self.sim.client(name, async move {
            let runs = players
                .into_iter()
                .map(|player| run_player(player, observer.clone()));
            futures::future::join_all(runs).await;
            Ok(())
        });
    }

    /// Schedules `fault` at simulated time `at`.
    pub fn at(&mut self, at: Duration, fault: Fault) {
        let position = self.schedule.partition_point(|(when, _)| *when <= at);
        self.schedule.insert(position, (at, fault));
    }

    /// A random duration in `[low, high)`, from the workload's RNG.
    pub fn random_duration(&mut self, low: Duration, high: Duration) -> Duration {
        let span = (high - low).as_millis().max(1) as u64;
        low + Duration::from_millis(self.rng.next_u64() % span)
    }

    /// A random number in `[0, n)`.
    pub fn random_below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    /// acemux's whole event log so far (the in-memory store answers at once); empty
    /// if it cannot be read.
    pub fn events(&self) -> Vec<acemux_core::lifecycle::Event> {
        use futures::FutureExt as _;
        self.store
            .events(acemux::store::EventQuery {
                after: 0,
                limit: 1_000_000,
                stream_id: None,
            })
            .now_or_never()
            .and_then(Result::ok)
            .unwrap_or_default()
    }

    /// Simulated time so far.
    pub fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// A failure now.
    pub fn fail(&self, message: String) -> Failure {
        Failure {
            scenario: self.config.scenario,
            seed: self.config.seed,
            at: self.elapsed(),
            message,
        }
    }

    /// Steps until simulated time `until`, applying due faults and checking every
    /// invariant after each step.
    pub fn run_until(&mut self, until: Duration) -> Result<(), Failure> {
        while self.elapsed() < until {
            self.step()?;
        }
        Ok(())
    }

    /// One step and its checks.
    pub fn step(&mut self) -> Result<(), Failure> {
        while self
            .schedule
            .first()
            .is_some_and(|(at, _)| *at <= self.elapsed())
        {
            let (_, fault) = self.schedule.remove(0);
            self.apply(fault);
        }
        self.sim
            .step()
            .map_err(|error| self.fail(format!("a host failed: {error}")))?;
        let now = self.elapsed();
        let checked = self
            .checker
            .check_step(now, &self.observer, &self.instances, &self.engines);
        checked.map_err(|message| self.fail(message))
    }

    fn apply(&mut self, fault: Fault) {
        tracing::info!(?fault, "fault");
        let now = self.elapsed();
        match &fault {
            Fault::Latency(a, b, latency) => self.checker.fault_window(
                now,
                format!("latency {a}-{b}"),
                *latency > Duration::from_millis(50),
            ),
            Fault::Partition(a, b) | Fault::Repair(a, b) => self.checker.fault_window(
                now,
                format!("partition {a}-{b}"),
                matches!(fault, Fault::Partition(..)),
            ),
            Fault::Hold(a, b) | Fault::Release(a, b) => self.checker.fault_window(
                now,
                format!("hold {a}-{b}"),
                matches!(fault, Fault::Hold(..)),
            ),
            Fault::RelayStall(stalled) => {
                self.checker
                    .fault_window(now, "relay stall".into(), *stalled)
            }
            Fault::EngineFaults(engine, content, _) | Fault::ClearEngineFaults(engine, content) => {
                self.checker.fault_window(
                    now,
                    format!("emulator {engine} {content}"),
                    matches!(fault, Fault::EngineFaults(..)),
                )
            }
            Fault::ReceiverStatus(status) => {
                self.checker
                    .fault_window(now, "receiver status".into(), *status != 200)
            }
            Fault::Store(faults) => self.checker.fault_window(
                now,
                "store acemux".into(),
                *faults != StoreFaults::default(),
            ),
            Fault::Crash(host) | Fault::Restart(host) => {
                self.checker
                    .fault_window(now, format!("crash {host}"), false);
                self.checker
                    .host_down(host, matches!(fault, Fault::Crash(_)));
                if self.instance(host).is_some() {
                    let down = matches!(fault, Fault::Crash(_));
                    self.checker.acemux_down(host, now, down);
                    if !down {
                        self.observer.lock().acemux_restarts += 1;
                    }
                }
            }
        }
        match fault {
            Fault::Latency(a, b, latency) => self.sim.set_link_latency(a, b.as_str(), latency),
            Fault::Partition(a, b) => self.sim.partition(a, b.as_str()),
            Fault::Repair(a, b) => self.sim.repair(a, b.as_str()),
            Fault::Hold(a, b) => self.sim.hold(a, b.as_str()),
            Fault::Release(a, b) => self.sim.release(a, b.as_str()),
            Fault::RelayStall(stalled) => self.relay.set_stalled(stalled),
            Fault::EngineFaults(engine, content, faults) => {
                if let Some(emulator) = self.emulator_of(&engine) {
                    if let Err(error) = emulator.set_faults(&content, *faults) {
                        tracing::warn!(%error, "scheduled emulator faults refused");
                    }
                }
                self.faulted_contents.insert(content);
            }
            Fault::ClearEngineFaults(engine, content) => {
                if let Some(emulator) = self.emulator_of(&engine) {
                    emulator.clear_faults(&content);
                }
            }
            Fault::ReceiverStatus(status) => self
                .receiver_status
                .store(status, std::sync::atomic::Ordering::SeqCst),
            Fault::Store(faults) => self.store.set_faults(faults),
            Fault::Crash(host) => {
                let sim = &mut self.sim;
                self.trace_layer.unhashed(|| sim.crash(host.as_str()));
                self.lose_uncommitted(&host);
            }
            Fault::Restart(host) => {
                let sim = &mut self.sim;
                self.trace_layer.unhashed(|| sim.bounce(host.as_str()));
                // A restart of a running process kills it first.
                self.lose_uncommitted(&host);
            }
        }
    }

    /// The acemux instance on host `host`.
    fn instance(&self, host: &str) -> Option<&Instance> {
        self.instances.iter().find(|instance| instance.host == host)
    }

    /// What the store of acemux instance `host` had not acknowledged dies with its
    /// process (nothing if `host` is not an instance).
    fn lose_uncommitted(&mut self, host: &str) {
        let Some(instance) = self.instance(host) else {
            return;
        };
        let lost = instance.store.lose_uncommitted();
        for _ in 0..lost {
            self.checker
                .waive("unacknowledged event lost with a crashed acemux");
        }
    }

    /// Removes every fault (links repaired and released at the base latency, relay
    /// forwarding, engine faults cleared, crashed engines restarted), then steps
    /// until the system is clean, within `budget` of simulated time.
    pub fn heal_then_converge(&mut self, budget: Duration) -> Result<Outcome, Failure> {
        self.schedule.clear();
        self.checker.healed(self.elapsed());
        self.relay.set_stalled(false);
        let engine_names: Vec<String> = self.engines.iter().map(|e| e.name.clone()).collect();
        for name in &engine_names {
            self.sim.repair("gluetun", name.as_str());
            self.sim.release("gluetun", name.as_str());
            self.sim
                .set_link_latency("gluetun", name.as_str(), Duration::from_millis(5));
            if !self.sim.is_host_running(name.as_str()) {
                self.sim.bounce(name.as_str());
                self.checker.host_down(name, false);
            }
        }
        let hosts: Vec<String> = self.instances.iter().map(|i| i.host.clone()).collect();
        for host in &hosts {
            self.sim.repair(host.as_str(), "gluetun");
            self.sim.release(host.as_str(), "gluetun");
            self.sim
                .set_link_latency(host.as_str(), "gluetun", Duration::from_millis(5));
        }
        if self.config.cluster.is_some() {
            self.heal_cluster(&hosts);
        }
        self.receiver_status
            .store(200, std::sync::atomic::Ordering::SeqCst);
        self.store.set_faults(StoreFaults::default());
        for engine in &self.engines {
            for emulator in engine.emulators() {
                for content in self
                    .config
                    .engine_faults
                    .keys()
                    .chain(self.faulted_contents.iter())
                {
                    emulator.clear_faults(content);
                }
            }
        }
        let deadline = self.elapsed() + budget;
        loop {
            let clean = self
                .checker
                .clean_state(&self.observer, &self.instances, &self.engines);
            match clean {
                Ok(()) => break,
                Err(reason) if self.elapsed() >= deadline => {
                    return Err(self.fail(format!(
                        "no clean state within {budget:?} after healing: {reason}"
                    )))
                }
                Err(_) => {}
            }
            // Clean-state checks are costlier than a step: look every 100 steps.
            for _ in 0..100 {
                self.step()?;
            }
        }
        self.checker
            .final_checks(&self.observer, &self.instances, &self.config)
            .map_err(|message| self.fail(message))?;
        Ok(self.outcome())
    }

    /// A cluster world's links between instances and to Redis repaired, crashed
    /// instances and Redis started again (Redis empty, as a restart leaves it).
    fn heal_cluster(&mut self, hosts: &[String]) {
        let mut peers: Vec<&str> = hosts.iter().map(String::as_str).collect();
        peers.push(crate::instances::REDIS_HOST);
        for (index, a) in peers.iter().enumerate() {
            for b in &peers[index + 1..] {
                self.sim.repair(*a, *b);
                self.sim.release(*a, *b);
            }
        }
        let now = self.elapsed();
        for host in peers {
            if !self.sim.is_host_running(host) {
                let sim = &mut self.sim;
                self.trace_layer.unhashed(|| sim.bounce(host));
                self.checker.host_down(host, false);
                if self.instance(host).is_some() {
                    self.checker.acemux_down(host, now, false);
                    self.observer.lock().acemux_restarts += 1;
                }
            }
        }
    }

    /// The running emulator of engine host `name`.
    fn emulator_of(&self, name: &str) -> Option<Emulator> {
        self.engines
            .iter()
            .find(|engine| engine.name == name)
            .and_then(|engine| engine.emulators().last().cloned())
    }

    /// Requests that failed while acemux was down (excused by the crash).
    pub fn excused_requests(&self) -> usize {
        self.checker.excused_requests(&self.observer)
    }

    /// The hash and summary of the run so far.
    pub fn outcome(&self) -> Outcome {
        let record = self.observer.lock();
        let mut hash = self.trace_layer.hash();
        hash.add_text(&format!("{:x}", record.trace.value()));
        let events = self.checker.events_seen();
        hash.add_text(&format!("events {events}"));
        for event in self.checker.event_lines() {
            hash.add_text(event);
        }
        for (rule, count) in &self.checker.waivers {
            hash.add_text(&format!("waived {rule} {count}"));
        }
        let requests = record.requests.len();
        let ts_bytes: u64 = record.ts_viewers.values().map(|v| v.bytes).sum();
        Outcome {
            simulated: self.elapsed(),
            trace_hash: hash.value(),
            summary: format!(
                "{requests} requests, {} TS viewers ({ts_bytes} bytes), {} HLS playlists, {} segments, {events} events, {} received, {} streams deleted",
                record.ts_viewers.len(),
                record.hls_playlists,
                record.hls_segments,
                record.received.len(),
                record.deleted_streams.len()
            ) + &self
                .checker
                .waivers
                .iter()
                .map(|(rule, count)| format!(", waived {count}× ({rule})"))
                .collect::<String>(),
        }
    }
}
