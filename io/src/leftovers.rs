//! On start, what a previous run left: streams acemux itself proxied (label
//! `source=acemux`) that are still `started` have no channel any more (the process
//! that played them stopped without ending them: killed, power lost). Each is ended
//! once, with reason `restarted`, and its engine session is stopped through its command
//! URL, retried like every stop (the core's [`LeftoverStops`]), so it does not hold an
//! engine slot for ever. Sessions of streams that ended shortly before the start
//! ([`RESTOP_WINDOW`]) are stopped again: the run may have been killed while their stop
//! was still being retried.

use std::sync::Arc;

use acemux_core::channel::{
    leftovers, EngineCallConfig, LeftoverInput, LeftoverStops, Notice, Output, RESTOP_WINDOW,
};
use acemux_core::cluster::LeftVerdict;
use acemux_core::lifecycle::EndReason;
use acemux_core::lifecycle::StreamState;
use acemux_core::machine::Machine;
use acemux_core::planted::{Bug, Planted};
use tokio::sync::{mpsc, watch};

use crate::engine::EngineClient;
use crate::lifecycle::{ApplyError, Lifecycle, Staged};
use crate::metrics::Metrics;
use crate::net::Net;

/// The label acemux puts on the streams it proxies.
const SOURCE_LABEL: (&str, &str) = ("source", "acemux");

/// What a start must clean up: the ends of the streams a previous run left started,
/// already numbered, and the sessions to stop (again).
#[derive(Default)]
pub struct Leftovers {
    ends: Vec<(StreamState, Result<Staged, ApplyError>)>,
    stop_again: Vec<StreamState>,
    /// Cluster mode: streams Redis has not said yet whether another instance took over
    /// (it did not answer, or found nothing of it once), with whether it found nothing;
    /// decided by [`resolve_deferred`].
    pub deferred: Vec<(StreamState, bool)>,
}

/// Finds what a previous run left and numbers the ends of its streams, before anything
/// is served: a channel started by the first request after the restart must come after
/// them in the log, however slow the store is to commit them.
///
/// In cluster mode (`cluster`), a stream whose channel another instance took over (and
/// whose end it recorded, `owner_lost`) is left alone: neither ended nor stopped here.
/// One Redis does not answer for is deferred ([`Leftovers::deferred`]): its channel
/// waits until it is decided ([`resolve_deferred`]), and nothing else waits for it.
pub async fn stage_leftovers<N: Net>(
    lifecycle: &Lifecycle,
    planted: Planted,
    cluster: Option<&crate::cluster::LeftoverCheck<N>>,
) -> Leftovers {
    if planted.has(Bug::LeftoversForgotten) {
        return Leftovers::default();
    }
    let clock = lifecycle.clock();
    let streams = lifecycle.streams(None);
    let found = leftovers(&streams, clock.now(), |stream| {
        stream.labels.get(SOURCE_LABEL.0).map(String::as_str) == Some(SOURCE_LABEL.1)
    });
    if !found.to_end.is_empty() {
        tracing::warn!(
            streams = found.to_end.len(),
            "streams this proxy played before it stopped are still started: ending them (reason restarted) and stopping their engine sessions"
        );
    }
    if !found.to_stop_again.is_empty() {
        tracing::info!(
            sessions = found.to_stop_again.len(),
            window = ?RESTOP_WINDOW,
            "stopping again the engine sessions of streams that ended shortly before this start (a stop cut short by the restart must not leak a session)"
        );
    }
    let mut ends = Vec::with_capacity(found.to_end.len());
    let mut deferred = Vec::new();
    for stream in found.to_end {
        if let Some(cluster) = cluster {
            let now = clock.now();
            let mut absent_seen = false;
            match cluster.verdict(stream, now, now, &mut absent_seen).await {
                LeftVerdict::Act => {}
                LeftVerdict::Leave => {
                    tracing::info!(stream = %stream.id, "another instance took this stream's channel over and recorded its end (owner_lost): leaving it alone");
                    continue;
                }
                LeftVerdict::AskAgain(_) => {
                    deferred.push((stream.clone(), absent_seen));
                    continue;
                }
            }
        }
        let staged = lifecycle.stage_end(&stream.id, EndReason::Restarted).await;
        ends.push((stream.clone(), staged));
    }
    Leftovers {
        ends,
        stop_again: found.to_stop_again.into_iter().cloned().collect(),
        deferred,
    }
}

/// Cluster mode: asks Redis again (at the times [`LeftVerdict`] says) about the streams
/// [`stage_leftovers`] deferred, until each is decided: ended and stopped here, or left
/// to the instance that took it over. Each channel waits meanwhile (`hold_back`, given
/// before this runs) and is let go (`resolved`) once its stream is decided.
pub async fn resolve_deferred<N: Net>(
    lifecycle: Arc<Lifecycle>,
    (check, cluster): (crate::cluster::LeftoverCheck<N>, crate::cluster::Cluster),
    deferred: Vec<(StreamState, bool)>,
    engines: EngineClient<N>,
    config: EngineCallConfig,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let clock = lifecycle.clock();
    let since = clock.now();
    // The first asks again at once when Redis was silent, after the confirmation delay
    // when it found nothing.
    let confirm = check.confirm_absence();
    let mut pending: Vec<(StreamState, bool, acemux_core::time::Instant)> = deferred
        .into_iter()
        .map(|(stream, absent)| {
            let at = if absent { since + confirm } else { since };
            (stream, absent, at)
        })
        .collect();
    while !pending.is_empty() {
        let now = clock.now();
        let mut later = Vec::new();
        for (stream, mut absent_seen, at) in pending {
            if at > now {
                later.push((stream, absent_seen, at));
                continue;
            }
            let verdict = check.verdict(&stream, since, now, &mut absent_seen).await;
            let channel = crate::cluster::LeftoverCheck::<N>::channel_of(&stream)
                .unwrap_or_default()
                .to_owned();
            match verdict {
                LeftVerdict::AskAgain(next) => later.push((stream, absent_seen, next)),
                LeftVerdict::Leave => {
                    tracing::info!(stream = %stream.id, "another instance took this stream's channel over and recorded its end (owner_lost): leaving it alone");
                    cluster.resolved(&channel);
                }
                LeftVerdict::Act => {
                    let staged = lifecycle.stage_end(&stream.id, EndReason::Restarted).await;
                    cluster.resolved(&channel);
                    let found = Leftovers {
                        ends: vec![(stream, staged)],
                        ..Leftovers::default()
                    };
                    tokio::spawn(end_leftovers(
                        lifecycle.clone(),
                        found,
                        engines.clone(),
                        config.clone(),
                        metrics.clone(),
                        stopped.clone(),
                    ));
                }
            }
        }
        pending = later;
        let next = pending.iter().map(|(_, _, at)| *at).min();
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stopped| *stopped) => return,
            () = clock.sleep_until_earliest([next]) => {}
        }
    }
}

/// Confirms the ends staged by [`stage_leftovers`] and stops the engine sessions;
/// returns once every stop is confirmed or given up (or at shutdown).
pub async fn end_leftovers<N: Net>(
    lifecycle: Arc<Lifecycle>,
    found: Leftovers,
    engines: EngineClient<N>,
    config: EngineCallConfig,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    if found.ends.is_empty() && found.stop_again.is_empty() {
        return;
    }
    let clock = lifecycle.clock();
    let Leftovers {
        ends, stop_again, ..
    } = found;
    let mut to_stop = Vec::with_capacity(ends.len() + stop_again.len());
    for (stream, staged) in ends {
        let confirmed = match staged {
            Ok(staged) => lifecycle.confirm(staged).await.map(drop),
            Err(error) => Err(error),
        };
        match confirmed {
            Ok(()) => {
                tracing::info!(stream = %stream.id, engine = %stream.engine, "ended a stream left from before the restart")
            }
            Err(error) => {
                tracing::error!(stream = %stream.id, %error, "could not end a stream left from before the restart")
            }
        }
        to_stop.push(stream);
    }
    to_stop.extend(stop_again);
    let sessions = to_stop
        .iter()
        .map(|stream| (stream.engine.clone(), stream.session.command_url.clone()))
        .collect();
    stop_sessions(
        &clock,
        sessions,
        &engines,
        config,
        &metrics,
        &mut stopped,
        "left from before the restart",
    )
    .await;
    tracing::info!("sessions left from before the restart are handled");
}

/// Stops each `(engine, command URL)` session, retried like every stop (the core's
/// [`LeftoverStops`]); returns once each is confirmed or given up (or at shutdown),
/// with how many were given up. `what` says in logs whose sessions they are.
pub async fn stop_sessions<N: Net>(
    clock: &crate::clock::Clock,
    sessions: Vec<(acemux_core::lifecycle::EngineAddr, String)>,
    engines: &EngineClient<N>,
    config: EngineCallConfig,
    metrics: &Metrics,
    stopped: &mut watch::Receiver<bool>,
    what: &'static str,
) -> usize {
    let mut stops = LeftoverStops::new(config);
    for (engine, command_url) in sessions {
        stops.handle_input(
            clock.now(),
            LeftoverInput::Stop {
                engine,
                command_url,
            },
        );
    }
    let mut given_up = 0;
    let (answers, mut answered) = mpsc::unbounded_channel();
    loop {
        while let Some(output) = stops.poll_output() {
            match output {
                Output::StopSession {
                    stop,
                    attempt,
                    engine,
                    command_url,
                } => {
                    if attempt == 1 {
                        metrics.engine_stops.inc();
                    }
                    tracing::info!(%engine, attempt, what, "stopping an engine session");
                    let (engines, answers) = (engines.clone(), answers.clone());
                    tokio::spawn(async move {
                        let result = engines.stop(&command_url).await;
                        let _ = answers.send(LeftoverInput::Answer { stop, result });
                    });
                }
                Output::Notice(Notice::StopFailed {
                    engine,
                    attempt,
                    error,
                    retry_in,
                }) => match retry_in {
                    Some(retry_in) => {
                        tracing::warn!(%engine, %error, attempt, ?retry_in, what, "engine did not confirm the stop of a session")
                    }
                    None => {
                        given_up += 1;
                        tracing::warn!(%engine, %error, attempt, what, "engine did not confirm the stop of a session; giving up")
                    }
                },
                other => tracing::debug!(?other, "session stops"),
            }
        }
        if stops.is_done() {
            return given_up;
        }
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stopped| *stopped) => return given_up,
            Some(answer) = answered.recv() => stops.handle_input(clock.now(), answer),
            () = clock.sleep_until_earliest([stops.poll_timeout()]) => stops.handle_timeout(clock.now()),
        }
    }
}
