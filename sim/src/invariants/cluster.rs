//! The cluster's rule: one engine session per channel across the engines, outside
//! the windows of the cluster's faults.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Checker;

/// A cluster's engine cap, and what was seen of it.
#[derive(Debug, Default)]
pub(super) struct CapSeen {
    /// `--max-streams-per-engine`, when the world is a cluster.
    cap: Option<usize>,
    /// Since when an engine has run more sessions than the cap, by engine.
    over_since: BTreeMap<String, Duration>,
    /// Windows over the cap waived, once each (engine and since when).
    waived: std::collections::BTreeSet<(String, Duration)>,
    /// Streams ended `owner_lost` by an instance other than their starter.
    pub(super) owner_lost_ends: u64,
}

impl Checker {
    /// The cluster's engines take at most `cap` sessions each, cluster-wide.
    pub fn engine_cap(&mut self, cap: usize) {
        self.caps.cap = Some(cap);
    }

    /// Streams a dead owner left that another instance ended (`owner_lost`).
    pub fn owner_lost_ends(&self) -> u64 {
        self.caps.owner_lost_ends
    }

    /// The engine cap holds across the cluster: no engine runs more sessions than
    /// `--max-streams-per-engine` for longer than the stop bound, unless that began
    /// within a cluster fault's window (a partition or crash lets a slot expire while its
    /// session runs, and an instance down leaves its session until the next owner stops
    /// it; the excess lasts until one of those sessions ends); each such window is
    /// counted once.
    pub(super) fn check_engine_cap(
        &mut self,
        now: Duration,
        running: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let Some(cap) = self.caps.cap.filter(|_| !self.cluster_hosts.is_empty()) else {
            return Ok(());
        };
        let mut per_engine: BTreeMap<&str, usize> = BTreeMap::new();
        for (session, engine) in running {
            if !self.orphans_waived.contains(session) {
                *per_engine.entry(engine.as_str()).or_default() += 1;
            }
        }
        self.caps
            .over_since
            .retain(|engine, _| per_engine.get(engine.as_str()).is_some_and(|n| *n > cap));
        for (engine, count) in per_engine {
            if count <= cap {
                continue;
            }
            let since = *self.caps.over_since.entry(engine.to_owned()).or_insert(now);
            if now <= since + self.rules.stop_bound {
                continue;
            }
            let explained = self.cluster_disturbed(since)
                || self.cluster_disturbed(now)
                || self.disturbed(Some(engine), now);
            if !explained {
                return Err(format!(
                    "{engine} runs {count} sessions, over the cluster-wide cap of {cap}, for {:?}, no cluster fault explains it",
                    now - since
                ));
            }
            if self.caps.waived.insert((engine.to_owned(), since)) {
                self.waive("engine over the cluster-wide cap across a cluster fault");
            }
        }
        Ok(())
    }

    /// The world is a cluster of these hosts (instances and Redis): faults on them
    /// explain more than one engine session of a content for a while.
    pub fn cluster(&mut self, hosts: Vec<String>) {
        self.cluster_hosts = hosts;
    }

    /// Whether a fault of the cluster (a partition or crash touching an instance or
    /// Redis) was in effect at `at` or recovering, or an instance was down: ownership
    /// may be split until it converges. Never in a world of one instance.
    pub(super) fn cluster_disturbed(&self, at: Duration) -> bool {
        if self.cluster_hosts.is_empty() {
            return false;
        }
        self.disturbed_by(None, at, |key| {
            (key.starts_with("partition") || key.starts_with("crash"))
                && key
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|part| self.cluster_hosts.iter().any(|host| host == part))
        }) || self.any_acemux_down(at)
    }

    /// A cluster's channels have one owner: across every engine, one session of a
    /// content at a time; more only within a cluster fault's window (the fault in
    /// effect and the recovery time after it, or an instance down), or a fault on one
    /// of those engines' path, and then counted. A world of one instance keeps this
    /// through its event rules (one active stream per content, each session stopped
    /// within the stop bound of its end).
    pub(super) fn check_one_owner(
        &mut self,
        now: Duration,
        across: &BTreeMap<String, Vec<String>>,
    ) -> Result<(), String> {
        if self.cluster_hosts.is_empty() {
            return Ok(());
        }
        self.duplicated_since
            .retain(|content_id, _| across.get(content_id).is_some_and(|on| on.len() > 1));
        for (content_id, on) in across {
            if on.len() < 2 {
                continue;
            }
            let since = *self
                .duplicated_since
                .entry(content_id.clone())
                .or_insert(now);
            if now <= since + self.rules.stop_bound {
                continue;
            }
            let explained = self.cluster_disturbed(now)
                || on.iter().any(|engine| self.disturbed(Some(engine), now));
            if !explained {
                return Err(format!(
                    "{} engine sessions of {content_id} run at once ({}) for {:?}, no cluster fault explains it",
                    on.len(),
                    on.join(", "),
                    now - since
                ));
            }
            if self.duplicates_waived.insert((content_id.clone(), since)) {
                self.waive("two engine sessions of one content across a cluster fault");
            }
        }
        Ok(())
    }
}
