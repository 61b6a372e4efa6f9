//! The engines' checks, every [`ENGINE_CHECK_EVERY`](super::ENGINE_CHECK_EVERY) of
//! simulated time: no session told to stop twice, none running long after its stream
//! ended or without a recorded stream, and sessions of one content on several engines
//! only inside the windows a fault explains.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Checker, StreamSeen};
use crate::world::EngineHandle;

impl Checker {
    /// The engines' sessions against the rules (see the module docs).
    pub(super) fn check_engines(
        &mut self,
        now: Duration,
        engines: &[EngineHandle],
    ) -> Result<(), String> {
        let mut running = BTreeMap::new();
        let mut repeated_stops = Vec::new();
        // The engines running a session of each content (one entry per session).
        let mut across: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for engine in engines {
            // A crashed engine's sessions died with it.
            if self.down_hosts.contains(&engine.name) {
                continue;
            }
            let emulators = engine.emulators();
            let last = emulators.len().saturating_sub(1);
            for (index, emulator) in emulators.into_iter().enumerate() {
                let stats = emulator.stats();
                let mut playing: BTreeMap<&str, usize> = BTreeMap::new();
                for (content_id, content) in &stats.contents {
                    for (session_id, session) in &content.sessions {
                        if session.stop_commands > 1 {
                            repeated_stops.push((
                                engine.name.clone(),
                                format!("{content_id}|{session_id}"),
                                session.stop_commands,
                            ));
                        }
                        // A crashed engine's sessions died with it.
                        if !session.stopped && index == last {
                            let id = format!("{content_id}|{session_id}");
                            // A session acemux cannot know (waived above) is not one of
                            // its channel's.
                            if !self.orphans_waived.contains(&id) {
                                *playing.entry(content_id.as_str()).or_default() += 1;
                            }
                            running.insert(id, engine.name.clone());
                        }
                    }
                }
                // One channel per content, one session per channel: an engine never
                // runs two sessions of one content for long (a replaced session ends
                // within the stop bound, like any other).
                for (content_id, count) in playing {
                    across
                        .entry(content_id.to_owned())
                        .or_default()
                        .extend(std::iter::repeat_n(engine.name.clone(), count));
                    if count > 1 {
                        let since = *self
                            .doubled_since
                            .entry(format!("{}|{content_id}", engine.name))
                            .or_insert(now);
                        // Explained by a fault on the engine's path (a stop delayed), an
                        // acemux crash (a grant lost with the process that asked), or a
                        // cluster fault (two instances each took the channel).
                        let explained = self.disturbed(Some(&engine.name), now)
                            || self.any_acemux_down(now)
                            || self.cluster_disturbed(now);
                        if now > since + self.rules.stop_bound && !explained {
                            return Err(format!(
                                "{} runs {count} sessions of {content_id} for {:?}",
                                engine.name,
                                now - since
                            ));
                        }
                    } else {
                        self.doubled_since
                            .remove(&format!("{}|{content_id}", engine.name));
                    }
                }
            }
        }
        self.check_one_owner(now, &across)?;
        self.check_engine_cap(now, &running)?;
        // A stop sent again is only explained by a fault on that engine's path: the
        // first one's answer was lost, so acemux could not know it arrived.
        for (engine, stream_id, stops) in repeated_stops {
            if self.stops_waived.contains(&stream_id) {
                continue;
            }
            // A restarted acemux does not know which of its stops arrived: it stops the
            // sessions of streams that ended shortly before again. An owner cut off from
            // Redis for a session record's time to live stops its session although a
            // newer owner may have stopped it already.
            if !self.disturbed(Some(&engine), now)
                && self.acemux_down.is_empty()
                && !self.cluster_disturbed(now)
            {
                return Err(format!(
                    "{engine} session {stream_id} was told to stop {stops} times"
                ));
            }
            self.stops_waived.insert(stream_id);
            self.waive("stop sent again after a fault on the engine's path or the cluster's");
        }
        self.unregistered_since
            .retain(|stream_id, _| running.contains_key(stream_id));
        for (stream_id, engine) in &running {
            // Waived once for the fault that explains it; no longer checked while it
            // runs (a recorded one must still be stopped by the clean state).
            if self.orphans_waived.contains(stream_id) {
                continue;
            }
            // A session whose grant or stop was lost to a fault on its engine's path is
            // scoped out (and counted): acemux cannot know it exists, or that its stop
            // arrived.
            let excused = self.lost_messages(engine, now);
            match self.streams.get(stream_id) {
                Some(StreamSeen {
                    ended_at: Some(ended_at),
                    ..
                }) if now > *ended_at + self.rules.stop_bound => {
                    // A stop delayed by a slow or stalled path, or cut short by an
                    // acemux crash (the restarted one stops it again), is late, not
                    // lost: the clean state after healing still requires it.
                    let delayed = self.disturbed(Some(engine), now)
                        || self.any_acemux_down(now)
                        || self.cluster_disturbed(now);
                    if !excused && !delayed {
                        return Err(format!(
                            "{engine} session {stream_id} still runs {:?} after its stream_ended",
                            now - *ended_at
                        ));
                    }
                    if self.orphans_waived.insert(stream_id.clone()) {
                        self.waive("session stopped late after a fault");
                    }
                }
                Some(_) => {}
                None => {
                    let since = *self
                        .unregistered_since
                        .entry(stream_id.clone())
                        .or_insert(now);
                    // Granted around an acemux crash: the answer died with the
                    // process that asked, and the new one cannot know the session.
                    // (Granted before the crash but not yet recorded, or around the
                    // restart.)
                    let answer_lost_in_crash = self.acemux_down.iter().any(|(_, down, up)| {
                        *down <= now && since <= up.unwrap_or(now) + self.rules.recovery
                    });
                    // A slow or failing store records the session late, not never: the
                    // bound runs from when the store was healthy again (unless the
                    // process that could record it is gone).
                    let store_healthy_from = self
                        .fault_log
                        .iter()
                        .filter(|(key, _, _)| key.starts_with("store"))
                        .map(|(_, _, end)| end.unwrap_or(now))
                        .max()
                        .unwrap_or(Duration::ZERO);
                    let bound_from = if answer_lost_in_crash {
                        since
                    } else {
                        since.max(store_healthy_from)
                    };
                    if now > bound_from + self.rules.stop_bound * 2 {
                        if !excused && !answer_lost_in_crash {
                            return Err(format!(
                                "{engine} session {stream_id} runs unrecorded for {:?}",
                                now - since
                            ));
                        }
                        if self.orphans_waived.insert(stream_id.clone()) {
                            self.waive("session unrecorded after a fault on its engine");
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
