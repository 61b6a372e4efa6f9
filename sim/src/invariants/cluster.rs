//! The cluster's rule: one engine session per channel across the engines, outside
//! the windows of the cluster's faults.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Checker;

impl Checker {
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
