//! The engine calls of one channel: session requests with their deadline and the watch
//! for late answers, and stops with their retries. Part of
//! [`ComposedChannel`](super::ComposedChannel); the inner [`Channel`](super::Channel)
//! decides *that* a session is requested or stopped, this part decides how long a
//! request is waited for and how often a stop is tried.

use std::collections::{BTreeMap, VecDeque};

use super::vocab::{EngineCallConfig, Notice, Output, PoolChange, RequestId, StopId};
use super::{EngineSession, SessionError, SessionInput as ChannelInput};
use crate::lifecycle::EngineAddr;
use crate::machine::Deadlines;
use crate::planted::Bug;
use crate::time::Instant;

#[derive(Clone, Debug)]
struct PendingStop {
    engine: EngineAddr,
    command_url: String,
    attempt: u32,
}

/// Session requests and stops in progress.
#[derive(Debug)]
pub(super) struct EngineCalls {
    config: EngineCallConfig,
    next_request: u64,
    next_stop: u64,
    /// A [`Output::PickEngine`] is waiting for its answer.
    picking: bool,
    /// The request the channel waits for.
    current: Option<RequestId>,
    /// Every request not answered yet (the current one and the watched ones).
    requests: BTreeMap<RequestId, EngineAddr>,
    /// The current request's answer deadline; each watched request's end of watch.
    deadlines: Deadlines<RequestId>,
    stops: BTreeMap<StopId, PendingStop>,
    stop_retries: Deadlines<StopId>,
    shutting_down: bool,
}

impl EngineCalls {
    pub(super) fn new(config: EngineCallConfig) -> Self {
        EngineCalls {
            config,
            next_request: 1,
            next_stop: 1,
            picking: false,
            current: None,
            requests: BTreeMap::new(),
            deadlines: Deadlines::default(),
            stops: BTreeMap::new(),
            stop_retries: Deadlines::default(),
            shutting_down: false,
        }
    }

    /// The channel wants a session: ask the driver to pick an engine.
    pub(super) fn request_session<M>(
        &mut self,
        exclude: Vec<crate::lifecycle::EngineAddr>,
        out: &mut VecDeque<Output<M>>,
    ) {
        self.picking = true;
        out.push_back(Output::PickEngine { exclude });
    }

    /// The pool's pick: request the session from it, or tell the channel there is none.
    pub(super) fn engine_picked<M>(
        &mut self,
        now: Instant,
        picked: Option<EngineAddr>,
        out: &mut VecDeque<Output<M>>,
    ) -> Option<ChannelInput> {
        if !std::mem::take(&mut self.picking) {
            return None;
        }
        let Some(engine) = picked else {
            out.push_back(Output::Notice(Notice::NoEngine));
            return Some(ChannelInput::NoEngine);
        };
        let request = RequestId(self.next_request);
        self.next_request += 1;
        self.requests.insert(request, engine.clone());
        self.current = Some(request);
        self.deadlines
            .set(request, now + self.config.request_timeout);
        out.push_back(Output::RequestSession { request, engine });
        None
    }

    /// An engine's answer: for the current request of a channel still running
    /// (`wanted`), the channel's input; a session for any other request (timed out,
    /// watched, unknown, or asked for by a channel that has ended since) is stopped at
    /// once.
    pub(super) fn answer<M>(
        &mut self,
        request: RequestId,
        result: Result<EngineSession, SessionError>,
        wanted: bool,
        out: &mut VecDeque<Output<M>>,
    ) -> Option<ChannelInput> {
        let engine = self.requests.remove(&request);
        self.deadlines.remove(request);
        let current = self.current == Some(request);
        if current {
            self.current = None;
        }
        if engine.is_some() && current && wanted {
            let engine = engine?;
            return Some(match result {
                Ok(session) => {
                    out.push_back(Output::Pool(PoolChange::Opened(session.engine.clone())));
                    ChannelInput::SessionReady(session)
                }
                Err(error) => {
                    self.failed(&engine, error.clone(), out);
                    ChannelInput::SessionFailed { engine, error }
                }
            });
        }
        if let Ok(session) = result {
            // Whatever happened to its request, the engine has opened this session and
            // nobody will read it: stop it rather than leave it running.
            out.push_back(Output::Notice(Notice::LateSession {
                engine: session.engine.clone(),
                session_id: session.session.playback_session_id.clone(),
            }));
            if !self.config.planted.has(Bug::LateSessionLeftRunning) {
                self.stop(session.engine, session.session.command_url, out);
            }
        }
        None
    }

    fn failed<M>(&self, engine: &EngineAddr, error: SessionError, out: &mut VecDeque<Output<M>>) {
        out.push_back(Output::Pool(PoolChange::Failed {
            engine: engine.clone(),
            unreachable: !matches!(error, SessionError::Refused(_)),
        }));
        out.push_back(Output::Notice(Notice::SessionFailed {
            engine: engine.clone(),
            error,
        }));
    }

    /// Starts stopping a session: the first attempt now, retries on failure.
    pub(super) fn stop<M>(
        &mut self,
        engine: EngineAddr,
        command_url: String,
        out: &mut VecDeque<Output<M>>,
    ) {
        let stop = StopId(self.next_stop);
        self.next_stop += 1;
        let sends = if self.config.planted.has(Bug::StopSentTwice) {
            2
        } else {
            1
        };
        for _ in 0..sends {
            out.push_back(Output::StopSession {
                stop,
                attempt: 1,
                engine: engine.clone(),
                command_url: command_url.clone(),
            });
        }
        self.stops.insert(
            stop,
            PendingStop {
                engine,
                command_url,
                attempt: 1,
            },
        );
    }

    /// The answer to a stop attempt.
    pub(super) fn stop_answer<M>(
        &mut self,
        now: Instant,
        stop: StopId,
        result: Result<(), String>,
        out: &mut VecDeque<Output<M>>,
    ) {
        if self.stop_retries.contains(stop) {
            // An answer while a retry is scheduled: not one this machine asked for.
            return;
        }
        let Some(pending) = self.stops.get(&stop).cloned() else {
            return;
        };
        let Err(error) = result else {
            self.stops.remove(&stop);
            return;
        };
        let retry_in = (pending.attempt < self.config.stop_attempts).then(|| {
            let doublings = pending.attempt.saturating_sub(1).min(16);
            self.config
                .stop_retry_initial
                .saturating_mul(1 << doublings)
                .min(
                    self.config
                        .stop_retry_max
                        .max(self.config.stop_retry_initial),
                )
        });
        out.push_back(Output::Notice(Notice::StopFailed {
            engine: pending.engine,
            attempt: pending.attempt,
            error,
            retry_in,
        }));
        match retry_in {
            Some(delay) => self.stop_retries.set(stop, now + delay),
            None => {
                self.stops.remove(&stop);
            }
        }
    }

    /// Fires due deadlines; returns what the channel must be told.
    pub(super) fn handle_timeout<M>(
        &mut self,
        now: Instant,
        out: &mut VecDeque<Output<M>>,
    ) -> Vec<ChannelInput> {
        let mut inputs = Vec::new();
        while let Some(request) = self.deadlines.pop_due(now) {
            let Some(engine) = self.requests.get(&request).cloned() else {
                continue;
            };
            if self.current == Some(request) {
                self.current = None;
                self.failed(&engine, SessionError::Timeout, out);
                inputs.push(ChannelInput::SessionFailed {
                    engine: engine.clone(),
                    error: SessionError::Timeout,
                });
                // The engine may still grant it: watch it for a late answer.
                let watched = self.requests.len() - 1;
                if !self.shutting_down && watched < self.config.max_late_requests {
                    let for_at_most = self.config.late_answer_bound();
                    self.deadlines.set(request, now + for_at_most);
                    out.push_back(Output::Notice(Notice::RequestWatched {
                        request,
                        engine,
                        for_at_most,
                    }));
                    continue;
                }
                self.abandon(request, engine, !self.shutting_down, out);
            } else {
                self.abandon(request, engine, false, out);
            }
        }
        while let Some(stop) = self.stop_retries.pop_due(now) {
            let Some(pending) = self.stops.get_mut(&stop) else {
                continue;
            };
            pending.attempt += 1;
            out.push_back(Output::StopSession {
                stop,
                attempt: pending.attempt,
                engine: pending.engine.clone(),
                command_url: pending.command_url.clone(),
            });
        }
        inputs
    }

    fn abandon<M>(
        &mut self,
        request: RequestId,
        engine: EngineAddr,
        limit: bool,
        out: &mut VecDeque<Output<M>>,
    ) {
        self.requests.remove(&request);
        self.deadlines.remove(request);
        out.push_back(Output::AbandonRequest { request });
        out.push_back(Output::Notice(Notice::RequestAbandoned {
            request,
            engine,
            limit,
        }));
    }

    /// The process is shutting down: watched requests are abandoned now; the current
    /// one is waited for up to its deadline (a session it brings is stopped), then
    /// abandoned too.
    pub(super) fn shut_down<M>(&mut self, out: &mut VecDeque<Output<M>>) {
        self.shutting_down = true;
        self.picking = false;
        let watched: Vec<(RequestId, EngineAddr)> = self
            .requests
            .iter()
            .filter(|(request, _)| Some(**request) != self.current)
            .map(|(request, engine)| (*request, engine.clone()))
            .collect();
        for (request, engine) in watched {
            self.abandon(request, engine, false, out);
        }
    }

    /// Whether nothing is in progress: no request unanswered, no stop unconfirmed.
    pub(super) fn is_idle(&self) -> bool {
        !self.picking && self.requests.is_empty() && self.stops.is_empty()
    }

    /// Requests not answered yet, the current one included.
    pub(super) fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// Stops not yet confirmed or given up.
    pub(super) fn stops_in_flight(&self) -> usize {
        self.stops.len()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [self.deadlines.next(), self.stop_retries.next()]
            .into_iter()
            .flatten()
            .min()
    }
}
