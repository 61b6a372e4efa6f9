//! One simulated world: acemux, engines behind a "gluetun" relay, an event
//! receiver and players, all running the real code over turmoil, from one seed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use acemux::metrics::Metrics;
use acemux::proxy::ProxyConfig;
use acemux::store::MemoryStore;
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

mod faults;

pub use faults::Fault;

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
                    let listener = TurmoilNet::listen(ENGINE_PORT).await?;
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
            checker.engine_cap(config.proxy.max_streams_per_engine);
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
        crate::instances::all_events(&self.store)
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

    /// Requests that failed while acemux was down (excused by the crash).
    pub fn excused_requests(&self) -> usize {
        self.checker.excused_requests(&self.observer)
    }

    /// Streams a dead owner left that another instance ended (`owner_lost`).
    pub fn owner_lost_ends(&self) -> u64 {
        self.checker.owner_lost_ends()
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
