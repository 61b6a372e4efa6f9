//! The final checks after convergence: what the event receiver got against every
//! instance's event log.

use std::collections::BTreeMap;

use acemux::store::{EventQuery, EventStore};
use futures::FutureExt;

use super::Checker;
use crate::instances::Instance;
use crate::observe::Observer;
use crate::world::WorldConfig;

impl Checker {
    /// After convergence: events delivered to the receiver are exactly the store's,
    /// each received with one body; every session stopped once.
    pub fn final_checks(
        &mut self,
        observer: &Observer,
        instances: &[Instance],
        config: &WorldConfig,
    ) -> Result<(), String> {
        // Every instance's log, and the events each gave up delivering.
        let receiver_hook = crate::world::receiver_webhook_url();
        let mut events = Vec::new();
        let mut closed_ids = std::collections::BTreeSet::new();
        for instance in instances {
            let logged = instance
                .store
                .events(EventQuery {
                    after: 0,
                    limit: 100_000,
                    stream_id: None,
                })
                .now_or_never()
                .and_then(Result::ok)
                .ok_or("the event log cannot be read")?;
            let closed = instance.store.rejected(&receiver_hook);
            closed_ids.extend(
                logged
                    .iter()
                    .filter(|event| closed.contains(&event.seq))
                    .map(|event| event.event_id.clone()),
            );
            events.extend(logged);
        }
        if config.receiver_webhook {
            let record = observer.lock();
            let mut received: BTreeMap<&str, &str> = BTreeMap::new();
            for event in &record.received {
                if let Some(previous) = received.insert(&event.idempotency_key, &event.body) {
                    if previous != event.body {
                        return Err(format!(
                            "event {} received twice with different bodies",
                            event.idempotency_key
                        ));
                    }
                }
            }
            let rejected: std::collections::BTreeSet<&str> =
                record.rejected.iter().map(String::as_str).collect();
            // Given up by acemux (an outbox over --webhook-max-pending, or attempts
            // exhausted), as the store recorded it: the event stays in the log.
            let given_up: std::collections::BTreeSet<&str> = events
                .iter()
                .filter(|event| {
                    closed_ids.contains(&event.event_id)
                        && !rejected.contains(event.event_id.as_str())
                })
                .map(|event| event.event_id.as_str())
                .collect();
            if !given_up.is_empty() {
                // Only a bound explains giving up: the outbox's, or the attempts'.
                if config.delivery.max_pending == 0 && config.delivery.max_attempts == 0 {
                    return Err(format!(
                        "{} deliveries given up with no outbox or attempt bound",
                        given_up.len()
                    ));
                }
                // Counted by the running processes (a restarted one counts afresh).
                let counted: u64 = instances
                    .iter()
                    .map(|instance| {
                        instance
                            .metrics
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .as_ref()
                            .map_or(0, |metrics| {
                                metrics
                                    .webhook_given_up
                                    .get_or_create(&acemux::metrics::WebhookLabels {
                                        webhook: receiver_hook.clone(),
                                    })
                                    .get()
                            })
                    })
                    .sum();
                if self.acemux_down.is_empty() && counted != given_up.len() as u64 {
                    return Err(format!(
                        "{} deliveries given up, acemux_webhook_given_up_total says {counted}",
                        given_up.len()
                    ));
                }
                for _ in &given_up {
                    self.waive("delivery given up at the outbox or attempt bound");
                }
            }
            // Refused for good and also accepted: the refusal (or the acceptance) did not
            // reach acemux, only explained by a fault on the receiver's link or an acemux
            // crash.
            let receiver_faults = !self.acemux_down.is_empty()
                || self
                    .fault_log
                    .iter()
                    .any(|(key, _, _)| key.contains("receiver"));
            for event in &events {
                if given_up.contains(event.event_id.as_str()) {
                    continue;
                }
                if rejected.contains(event.event_id.as_str()) {
                    if received.contains_key(event.event_id.as_str()) {
                        if !receiver_faults {
                            return Err(format!(
                                "event {} was sent again after the receiver refused it for good",
                                event.event_id
                            ));
                        }
                        *self
                            .waivers
                            .entry("event accepted and refused across a receiver fault")
                            .or_default() += 1;
                    }
                    continue;
                }
                if !received.contains_key(event.event_id.as_str()) {
                    return Err(format!(
                        "event {} ({} {}) never reached the receiver",
                        event.event_id,
                        event.kind.as_str(),
                        event.stream.id
                    ));
                }
            }
            let answered: std::collections::BTreeSet<&str> = received
                .keys()
                .copied()
                .chain(rejected)
                .chain(given_up)
                .collect();
            if answered.len() != events.len() {
                return Err(format!(
                    "the receiver accepted or refused {} distinct events, the log holds {}",
                    answered.len(),
                    events.len()
                ));
            }
        }
        Ok(())
    }
}
