//! The event log's checks after every step: each stream started once across every
//! instance's store, ended at most once, one active stream per content and store.

use std::time::Duration;

use acemux::store::{EventQuery, EventStore};
use acemux_core::lifecycle::{EndReason, EventKind};
use futures::FutureExt;

use super::{Checker, StreamSeen};
use crate::instances::Instance;

impl Checker {
    /// The new events of instance `index`'s store: each stream started once across
    /// every store (a session's events are recorded by its owner only), ended at most
    /// once, and no second stream of a content while one is active in that store.
    pub(super) fn check_events(
        &mut self,
        now: Duration,
        index: usize,
        instances: &[Instance],
    ) -> Result<(), String> {
        if self.last_seq.len() <= index {
            self.last_seq.resize(index + 1, 0);
        }
        let store = &instances[index].store;
        // One instance's lines are as they always were; a cluster's name their store.
        let prefix = if instances.len() > 1 {
            format!("{} ", instances[index].host)
        } else {
            String::new()
        };
        let query = EventQuery {
            after: self.last_seq[index],
            limit: 1000,
            stream_id: None,
        };
        let events = match store.events(query).now_or_never() {
            Some(Ok(events)) => events,
            Some(Err(error)) => return Err(format!("the event store failed: {error}")),
            None => return Err("the memory store did not answer at once".into()),
        };
        for event in events {
            if event.seq != self.last_seq[index] + 1 {
                return Err(format!(
                    "{prefix}event sequence jumped from {} to {}",
                    self.last_seq[index], event.seq
                ));
            }
            self.last_seq[index] = event.seq;
            let id = event.stream.id.clone();
            self.event_lines.push(format!(
                "{prefix}{} {} {} {} {:?}",
                event.seq,
                event.event_id,
                event.kind.as_str(),
                id,
                event.stream.end_reason
            ));
            match event.kind {
                EventKind::StreamStarted => {
                    if let Some(seen) = self.streams.get(&id) {
                        return Err(if seen.instance == index {
                            format!("{prefix}stream_started twice for {id}")
                        } else {
                            format!(
                                "stream_started for {id} recorded by {} and {}",
                                instances[seen.instance].host, instances[index].host
                            )
                        });
                    }
                    let content_id = event.stream.stream.key.clone();
                    let active_same_content = self
                        .streams
                        .values()
                        .filter(|s| {
                            s.content_id == content_id
                                && s.ended_at.is_none()
                                && s.instance == index
                        })
                        .count();
                    if active_same_content > 0 {
                        return Err(format!(
                            "{prefix}a second stream of {content_id} started while one is active ({id})"
                        ));
                    }
                    self.streams.insert(
                        id,
                        StreamSeen {
                            content_id,
                            ended_at: None,
                            ended_elsewhere: false,
                            instance: index,
                        },
                    );
                }
                EventKind::StreamEnded => {
                    let marks_lost = self.streams.get(&id).is_some_and(|seen| {
                        seen.ended_elsewhere
                            && seen
                                .ended_at
                                .is_some_and(|at| self.takeover_marks_lost(at, now))
                    });
                    match self.streams.get_mut(&id) {
                    // A dead owner's stream, ended by the instance that took it over.
                    Some(seen)
                        if seen.instance != index
                            && event.stream.end_reason == Some(EndReason::OwnerLost)
                            && seen.ended_at.is_none() =>
                    {
                        seen.ended_at = Some(now);
                        seen.ended_elsewhere = true;
                        self.caps.owner_lost_ends += 1;
                    }
                    Some(seen) if seen.instance != index => {
                        return Err(format!(
                            "{prefix}stream_ended for {id}, whose stream_started another instance recorded"
                        ))
                    }
                    None => {
                        return Err(format!(
                            "{prefix}stream_ended for {id} without stream_started"
                        ))
                    }
                    Some(_) if marks_lost => {
                        self.waive("a taken-over stream ended again by its returning owner: Redis restarted empty while its claimer could not write its mark again");
                    }
                    Some(seen) if seen.ended_at.is_some() => {
                        return Err(format!("{prefix}stream_ended twice for {id}"))
                    }
                    Some(seen) => seen.ended_at = Some(now),
                    }
                }
            }
        }
        Ok(())
    }
}
