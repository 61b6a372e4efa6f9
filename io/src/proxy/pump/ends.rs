//! Cluster mode: a session this instance owns is stopped, and its end recorded, here
//! only while its session record in Redis is still this instance's (the slot machine's
//! [`ending`](acemux_core::cluster::Slots::ending)). A newer owner that took the
//! channel over while this instance was cut off has claimed the record, stopped the
//! session and recorded its end (`owner_lost`): this instance then does neither. The
//! stops and the end of a session wait for that answer (bounded by a Redis call); a
//! session without a record (none written, or not in cluster mode) is not asked about.

use std::collections::BTreeMap;

use acemux_core::channel::{Input, Media, StopId};
use acemux_core::lifecycle::{EndReason, EngineAddr};

use super::{ChannelTask, Format};
use crate::cluster::EndAnswer;
use crate::net::Net;

/// Whether this instance stops a session and records its end, by command URL.
pub(in crate::proxy) enum Decision {
    /// Asked; what waits for the answer. `stop_now`: Redis stayed silent for a record's
    /// time to live, so stops go out at once; only the end waits.
    Pending {
        stops: Vec<(StopId, u32, EngineAddr)>,
        ends: Vec<(String, EndReason)>,
        stop_now: bool,
    },
    /// Answered.
    Made(bool),
}

/// Where the answers come, by command URL.
pub(in crate::proxy) type Answers = (
    tokio::sync::mpsc::UnboundedSender<(String, EndAnswer)>,
    tokio::sync::mpsc::UnboundedReceiver<(String, EndAnswer)>,
);

/// The decisions of one channel.
pub(in crate::proxy) type Decisions = BTreeMap<String, Decision>;

impl<N: Net, F: Format<N>> ChannelTask<N, F> {
    /// The answer for the session of `command_url`: known, or `None` while asked (asked
    /// now if it was not).
    fn owner_decision(&mut self, command_url: &str) -> Option<bool> {
        match self.decisions.get(command_url) {
            Some(Decision::Made(act)) => return Some(*act),
            Some(Decision::Pending { .. }) => return None,
            None => {}
        }
        let reservation = self
            .reservations
            .iter()
            .find(|reservation| reservation.command_url.as_deref() == Some(command_url))
            .map(|reservation| reservation.id);
        let (Some(cluster), Some(id)) = (self.env.proxy.0.cluster.get(), reservation) else {
            return Some(true);
        };
        // Asked now: before the slot is given back.
        let mut answers = cluster.session_ending(id);
        let (decided, url) = (self.decided.0.clone(), command_url.to_owned());
        tokio::spawn(async move {
            loop {
                // Without the driver (shutting down): it does.
                let answer = answers.recv().await.unwrap_or(EndAnswer::Decided(true));
                let last = matches!(answer, EndAnswer::Decided(_));
                if decided.send((url.clone(), answer)).is_err() || last {
                    return;
                }
            }
        });
        self.decisions.insert(
            command_url.to_owned(),
            Decision::Pending {
                stops: Vec::new(),
                ends: Vec::new(),
                stop_now: false,
            },
        );
        None
    }

    /// Stops the owned session of `command_url` once the answer allows it.
    pub(super) fn stop_owned(
        &mut self,
        stop: StopId,
        attempt: u32,
        engine: EngineAddr,
        command_url: String,
    ) {
        match self.owner_decision(&command_url) {
            Some(true) => {
                self.release_reservations(|reservation| {
                    reservation.command_url.as_deref() == Some(command_url.as_str())
                });
                super::super::calls::stop_session(&self.env, stop, attempt, engine, command_url);
            }
            Some(false) => {
                tracing::info!(channel = %self.env.key, %engine, "not stopping the engine session: the channel's new owner did");
                self.answer_stop_here(stop);
                self.release_reservations(|reservation| {
                    reservation.command_url.as_deref() == Some(command_url.as_str())
                });
            }
            None => match self.decisions.get_mut(&command_url) {
                Some(Decision::Pending { stop_now: true, .. }) => {
                    super::super::calls::stop_session(
                        &self.env,
                        stop,
                        attempt,
                        engine,
                        command_url,
                    );
                }
                Some(Decision::Pending { stops, .. }) => stops.push((stop, attempt, engine)),
                _ => {}
            },
        }
    }

    /// Records the end of the owned stream `id` (session `command_url`) once the answer
    /// allows it.
    pub(super) fn end_owned(&mut self, command_url: &str, id: String, reason: EndReason) {
        match self.owner_decision(command_url) {
            Some(act) => self.record_end(act, id, reason),
            None => {
                if let Some(Decision::Pending { ends, .. }) = self.decisions.get_mut(command_url) {
                    ends.push((id, reason));
                }
            }
        }
    }

    /// An answer for the session of `command_url` came.
    pub(super) fn decided(&mut self, command_url: String, answer: EndAnswer) {
        let act = match answer {
            EndAnswer::Decided(act) => act,
            EndAnswer::StopNow => {
                if let Some(Decision::Pending {
                    stops, stop_now, ..
                }) = self.decisions.get_mut(&command_url)
                {
                    *stop_now = true;
                    for (stop, attempt, engine) in std::mem::take(stops) {
                        super::super::calls::stop_session(
                            &self.env,
                            stop,
                            attempt,
                            engine,
                            command_url.clone(),
                        );
                    }
                }
                return;
            }
        };
        let Some(Decision::Pending { stops, ends, .. }) = self
            .decisions
            .insert(command_url.clone(), Decision::Made(act))
        else {
            return;
        };
        for (stop, attempt, engine) in stops {
            if act {
                super::super::calls::stop_session(
                    &self.env,
                    stop,
                    attempt,
                    engine,
                    command_url.clone(),
                );
            } else {
                tracing::info!(channel = %self.env.key, %engine, "not stopping the engine session: the channel's new owner did");
                self.answer_stop_here(stop);
            }
        }
        for (id, reason) in ends {
            self.record_end(act, id, reason);
        }
        self.release_reservations(|reservation| {
            reservation.command_url.as_deref() == Some(command_url.as_str())
        });
    }

    /// Whether an answer is still awaited.
    pub(super) fn undecided(&self) -> bool {
        self.decisions
            .values()
            .any(|decision| matches!(decision, Decision::Pending { .. }))
    }

    fn record_end(&mut self, act: bool, id: String, reason: EndReason) {
        if act {
            tracing::info!(channel = %self.env.key, stream = %id, %reason, "stream ended");
            self.applier.ended(id, reason);
        } else {
            // Recorded once, by the owner that claimed it.
            tracing::info!(channel = %self.env.key, stream = %id, "stream ended here; the channel's new owner recorded its end (owner_lost)");
            self.env
                .proxy
                .0
                .metrics
                .cluster_slot_events
                .get_or_create(&crate::metrics::SlotEventLabels {
                    event: "lost_handled_elsewhere".to_owned(),
                })
                .inc();
        }
    }

    /// Answers a stop at once: the session is not stopped from here.
    pub(super) fn answer_stop_here(&self, stop: StopId) {
        let completions: tokio::sync::mpsc::Sender<Input<<F::Media as Media>::Input>> =
            self.env.completions.clone();
        tokio::spawn(async move {
            let _ = completions
                .send(Input::StopAnswer {
                    stop,
                    result: Ok(()),
                })
                .await;
        });
    }
}
