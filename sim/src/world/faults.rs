//! Faults: what the schedule applies to a world, and healing them all before the
//! clean state a run must reach.

use std::time::Duration;

use acemux::store::StoreFaults;
use acemux_testkit::emulator::{Emulator, Faults};

use super::{Failure, Outcome, World};
use crate::instances::Instance;

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

impl World<'_> {
    pub(super) fn apply(&mut self, fault: Fault) {
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
}
