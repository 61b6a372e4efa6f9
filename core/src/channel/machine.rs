//! The channel state machine.

use std::collections::VecDeque;

use crate::lifecycle::{EndReason, EngineAddr, SessionInfo};
use crate::machine::{Machine, TimerKind as Kind, TimerTable};
use crate::time::{Duration, Instant};

/// Timing and retry bounds of a channel.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// From the channel's creation to its first media byte; past it viewers get an error.
    pub start_timeout: Duration,
    /// Upstream silence after which the playback connection is reopened.
    pub upstream_stall_timeout: Duration,
    /// First delay before a retry (session request or reconnect); doubles per failure.
    pub initial_backoff: Duration,
    /// Longest delay between retries.
    pub max_backoff: Duration,
    /// Reconnects to one session's playback URL before a new session is requested.
    pub reconnects_per_session: u32,
    /// Session requests per round before the start fails (or, once playing, before the
    /// round starts over after `max_backoff`).
    pub session_attempts: u32,
    /// Longest time spent recovering once a started stream's outage is detected (by a
    /// stall or a failed playback); past it the channel ends.
    pub recovery_timeout: Duration,
    /// Time without viewers before the session is stopped.
    pub idle_grace: Duration,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            start_timeout: Duration::from_secs(30),
            upstream_stall_timeout: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            reconnects_per_session: 3,
            session_attempts: 3,
            recovery_timeout: Duration::from_secs(60),
            idle_grace: Duration::from_secs(10),
        }
    }
}

/// A playback session granted by an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineSession {
    /// The engine that granted it.
    pub engine: EngineAddr,
    /// Where the media is read.
    pub playback_url: String,
    /// Session id, stat and command URLs.
    pub session: SessionInfo,
}

/// Why an engine did not grant a session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The engine answered with an error (unknown content, refused…).
    Refused(String),
    /// The engine could not be reached or answered nonsense.
    Failed(String),
    /// The engine did not answer in time.
    Timeout,
}

/// Why a channel could not start; each maps to one HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartFailure {
    /// No engine could take the session (503 `no_engine_available`).
    NoEngine,
    /// Engines refused or failed (502 `engine_error`).
    Engine(String),
    /// Nothing arrived in time (504 `engine_timeout`).
    Timeout,
}

impl StartFailure {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StartFailure::NoEngine => "no_engine_available",
            StartFailure::Engine(_) => "engine_error",
            StartFailure::Timeout => "engine_timeout",
        }
    }
}

/// What the driver reports to the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The requested session was granted.
    SessionReady(EngineSession),
    /// The session request to `engine` failed.
    SessionFailed {
        /// The engine asked.
        engine: EngineAddr,
        /// What went wrong.
        error: SessionError,
    },
    /// The pool had no engine to ask.
    NoEngine,
    /// The playback URL answered with a success status.
    PlaybackOpened,
    /// The playback request failed before any body.
    PlaybackFailed(String),
    /// `n` bytes of media arrived.
    Data(usize),
    /// The playback body ended (cleanly or not).
    PlaybackEnded,
    /// The channel now has this many viewers.
    Viewers(usize),
    /// Replace the current session with one on another engine (preferred): its
    /// playback is closed, it is stopped and ended with `reason`, and viewers stay
    /// while the new one is requested, within the recovery bound. Ignored without a
    /// session.
    Replace(EndReason),
    /// Stop the channel (an operator asked, or the process is shutting down).
    Stop(EndReason),
}

/// What the channel asks of the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Pick an engine (preferring ones not in `exclude`) and request a session.
    RequestSession {
        /// Engines that failed this round.
        exclude: Vec<EngineAddr>,
    },
    /// Open (or reopen) the playback URL.
    OpenPlayback {
        /// The URL.
        url: String,
    },
    /// Close the playback connection.
    ClosePlayback,
    /// Stop the session on its engine (`command_url?method=stop`); once per session.
    StopSession {
        /// The engine.
        engine: EngineAddr,
        /// The command URL.
        command_url: String,
    },
    /// The session delivered its first media: a `stream_started`.
    SessionStarted(EngineSession),
    /// A session that had started is over: a `stream_ended`.
    SessionEnded {
        /// The session.
        session: EngineSession,
        /// Why.
        reason: EndReason,
    },
    /// The channel could not start; waiting viewers get this error.
    StartFailed(StartFailure),
    /// The channel is over; close every viewer. Last output of the machine.
    Ended {
        /// Why.
        reason: EndReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Requesting,
    Opening,
    Playing,
    Reconnecting,
    Ended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKind {
    StartDeadline,
    Stall,
    Retry,
    Idle,
    Recovery,
}

impl Kind for TimerKind {
    const ALL: &'static [Self] = &[
        TimerKind::StartDeadline,
        TimerKind::Stall,
        TimerKind::Retry,
        TimerKind::Idle,
        TimerKind::Recovery,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug)]
struct Session {
    info: EngineSession,
    started: bool,
    reconnects: u32,
}

/// One channel: its engine session, retries and idle state.
#[derive(Debug)]
pub struct Channel {
    config: ChannelConfig,
    phase: Phase,
    session: Option<Session>,
    attempts: u32,
    excluded: Vec<EngineAddr>,
    last_failure: Option<StartFailure>,
    ever_started: bool,
    viewers: usize,
    timers: TimerTable<TimerKind>,
    outputs: VecDeque<Output>,
}

impl Channel {
    /// A channel created at `now`; it asks for a session at once. Until the driver
    /// reports viewers, the idle grace runs.
    pub fn new(now: Instant, config: ChannelConfig) -> Self {
        let mut channel = Channel {
            phase: Phase::Requesting,
            session: None,
            attempts: 0,
            excluded: Vec::new(),
            last_failure: None,
            ever_started: false,
            viewers: 0,
            timers: TimerTable::default(),
            outputs: VecDeque::new(),
            config,
        };
        channel.set(TimerKind::StartDeadline, now + channel.config.start_timeout);
        channel.set(TimerKind::Idle, now + channel.config.idle_grace);
        channel.outputs.push_back(Output::RequestSession {
            exclude: Vec::new(),
        });
        channel
    }

    /// Whether the channel has ended (no more outputs will come).
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Whether media has flowed at least once.
    pub fn has_started(&self) -> bool {
        self.ever_started
    }

    /// The current session, if any.
    pub fn session(&self) -> Option<&EngineSession> {
        self.session.as_ref().map(|session| &session.info)
    }

    /// The next request to the driver.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Feeds one report from the driver. Reports that do not fit the current phase
    /// (late answers for an abandoned session) are ignored.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.phase == Phase::Ended {
            return;
        }
        match input {
            Input::SessionReady(info) => self.session_ready(now, info),
            Input::SessionFailed { engine, error } => {
                if self.phase == Phase::Requesting {
                    self.excluded.push(engine);
                    self.last_failure = Some(match error {
                        SessionError::Refused(message) | SessionError::Failed(message) => {
                            StartFailure::Engine(message)
                        }
                        SessionError::Timeout => StartFailure::Timeout,
                    });
                    self.request_failed(now);
                }
            }
            Input::NoEngine => {
                if self.phase == Phase::Requesting {
                    if self.last_failure.is_none() {
                        self.last_failure = Some(StartFailure::NoEngine);
                    }
                    self.request_failed(now);
                }
            }
            Input::PlaybackOpened => {
                if self.phase == Phase::Opening {
                    self.phase = Phase::Playing;
                }
            }
            Input::Data(bytes) => {
                if bytes > 0 && matches!(self.phase, Phase::Opening | Phase::Playing) {
                    self.data(now);
                }
            }
            Input::PlaybackFailed(_) | Input::PlaybackEnded => {
                if matches!(self.phase, Phase::Opening | Phase::Playing) {
                    self.reconnect(now);
                }
            }
            Input::Viewers(count) => {
                self.viewers = count;
                if count == 0 {
                    if self.timer(TimerKind::Idle).is_none() {
                        self.set(TimerKind::Idle, now + self.config.idle_grace);
                    }
                } else {
                    self.clear(TimerKind::Idle);
                }
            }
            Input::Replace(reason) => {
                if matches!(self.phase, Phase::Opening | Phase::Playing) {
                    self.outputs.push_back(Output::ClosePlayback);
                }
                if matches!(
                    self.phase,
                    Phase::Opening | Phase::Playing | Phase::Reconnecting
                ) {
                    self.clear(TimerKind::Stall);
                    self.clear(TimerKind::Retry);
                    self.start_recovery(now);
                    self.replace_session(reason);
                }
            }
            Input::Stop(reason) => self.end(reason),
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for &kind in TimerKind::ALL {
            if self.phase == Phase::Ended {
                return;
            }
            if self.timers.take_due(kind, now) {
                self.fire(now, kind);
            }
        }
    }

    fn fire(&mut self, now: Instant, kind: TimerKind) {
        match kind {
            TimerKind::StartDeadline => {
                if !self.ever_started {
                    let failure = match self.phase {
                        // A session was granted but sent nothing: the engine is too slow.
                        Phase::Opening | Phase::Playing | Phase::Reconnecting => {
                            StartFailure::Timeout
                        }
                        _ => self.last_failure.clone().unwrap_or(StartFailure::Timeout),
                    };
                    self.outputs.push_back(Output::StartFailed(failure));
                    self.end(EndReason::StartTimeout);
                }
            }
            TimerKind::Stall => {
                if matches!(self.phase, Phase::Opening | Phase::Playing) {
                    self.outputs.push_back(Output::ClosePlayback);
                    self.reconnect(now);
                }
            }
            TimerKind::Retry => match self.phase {
                Phase::Requesting => self.outputs.push_back(Output::RequestSession {
                    exclude: self.excluded.clone(),
                }),
                Phase::Reconnecting => self.open_playback(now),
                _ => {}
            },
            TimerKind::Idle => {
                if self.viewers == 0 {
                    self.end(EndReason::Idle);
                }
            }
            TimerKind::Recovery => self.end(EndReason::UpstreamLost),
        }
    }

    fn session_ready(&mut self, now: Instant, info: EngineSession) {
        if self.phase != Phase::Requesting {
            // A late grant for a request this channel no longer waits for: stop it so
            // the engine does not keep a session nobody reads.
            self.outputs.push_back(Output::StopSession {
                engine: info.engine,
                command_url: info.session.command_url,
            });
            return;
        }
        self.session = Some(Session {
            info,
            started: false,
            reconnects: 0,
        });
        self.clear(TimerKind::Retry);
        self.open_playback(now);
    }

    fn open_playback(&mut self, now: Instant) {
        let Some(session) = &self.session else {
            return;
        };
        self.phase = Phase::Opening;
        self.outputs.push_back(Output::OpenPlayback {
            url: session.info.playback_url.clone(),
        });
        self.set(TimerKind::Stall, now + self.config.upstream_stall_timeout);
    }

    fn data(&mut self, now: Instant) {
        self.phase = Phase::Playing;
        self.set(TimerKind::Stall, now + self.config.upstream_stall_timeout);
        self.clear(TimerKind::Recovery);
        self.clear(TimerKind::StartDeadline);
        self.ever_started = true;
        self.attempts = 0;
        self.excluded.clear();
        self.last_failure = None;
        if let Some(session) = &mut self.session {
            session.reconnects = 0;
            if !session.started {
                session.started = true;
                self.outputs
                    .push_back(Output::SessionStarted(session.info.clone()));
            }
        }
    }

    fn request_failed(&mut self, now: Instant) {
        self.attempts += 1;
        if self.attempts < self.config.session_attempts {
            let delay = self.backoff(self.attempts);
            self.set(TimerKind::Retry, now + delay);
            return;
        }
        if self.ever_started {
            // Recovering: keep trying, slowly, until the recovery bound ends the channel.
            self.attempts = 0;
            self.excluded.clear();
            self.set(TimerKind::Retry, now + self.config.max_backoff);
            return;
        }
        let failure = self.last_failure.clone().unwrap_or(StartFailure::NoEngine);
        self.outputs.push_back(Output::StartFailed(failure));
        self.end(EndReason::StartFailed);
    }

    /// Starts the recovery bound of a started stream's outage, unless it runs.
    fn start_recovery(&mut self, now: Instant) {
        if self.ever_started && self.timer(TimerKind::Recovery).is_none() {
            self.set(TimerKind::Recovery, now + self.config.recovery_timeout);
        }
    }

    /// Stops the current session (ending it with `reason`) and requests a new one,
    /// preferring other engines.
    fn replace_session(&mut self, reason: EndReason) {
        let Some(engine) = self.session.as_ref().map(|s| s.info.engine.clone()) else {
            return;
        };
        self.stop_session(reason);
        self.phase = Phase::Requesting;
        self.attempts = 0;
        self.excluded = vec![engine];
        self.outputs.push_back(Output::RequestSession {
            exclude: self.excluded.clone(),
        });
    }

    fn reconnect(&mut self, now: Instant) {
        self.clear(TimerKind::Stall);
        self.start_recovery(now);
        let Some(session) = &mut self.session else {
            return;
        };
        session.reconnects += 1;
        if session.reconnects > self.config.reconnects_per_session {
            self.replace_session(EndReason::UpstreamStalled);
            return;
        }
        let reconnects = session.reconnects;
        let delay = self.backoff(reconnects);
        self.phase = Phase::Reconnecting;
        self.set(TimerKind::Retry, now + delay);
    }

    /// Stops the current session (once) and reports its end if it had started.
    fn stop_session(&mut self, reason: EndReason) {
        let Some(session) = self.session.take() else {
            return;
        };
        self.outputs.push_back(Output::StopSession {
            engine: session.info.engine.clone(),
            command_url: session.info.session.command_url.clone(),
        });
        if session.started {
            self.outputs.push_back(Output::SessionEnded {
                session: session.info,
                reason,
            });
        }
    }

    fn end(&mut self, reason: EndReason) {
        if self.phase == Phase::Ended {
            return;
        }
        if matches!(self.phase, Phase::Opening | Phase::Playing) {
            self.outputs.push_back(Output::ClosePlayback);
        }
        self.stop_session(reason.clone());
        self.phase = Phase::Ended;
        self.timers.clear_all();
        self.outputs.push_back(Output::Ended { reason });
    }

    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.config
            .initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.config.max_backoff)
    }

    fn timer(&self, kind: TimerKind) -> Option<Instant> {
        self.timers.get(kind)
    }

    fn set(&mut self, kind: TimerKind, at: Instant) {
        self.timers.set(kind, at);
    }

    fn clear(&mut self, kind: TimerKind) {
        self.timers.clear(kind);
    }
}

impl Machine for Channel {
    type Input = Input;
    type Output = Output;

    fn handle_input(&mut self, now: Instant, input: Input) {
        Channel::handle_input(self, now, input);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Channel::handle_timeout(self, now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        Channel::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Channel::poll_timeout(self)
    }
}
