//! One channel as one machine: the engine session ([`Channel`]), its engine calls
//! (request deadlines, late answers, stop retries) and a format's media part (the TS
//! fan-out and its viewers, or the HLS fetch loop and its players), wired together
//! inside the core so that a driver only performs outputs and reports completions.

use std::collections::VecDeque;

use super::engine::EngineCalls;
use super::stats::{StatsAction, StatsWatch};
use super::vocab::{EngineCallConfig, Input, Notice, Output, PoolChange};
use super::{
    Channel, ChannelConfig, EngineSession, SessionInput, SessionOutput as ChannelOutput,
    StartFailure,
};
use crate::lifecycle::EndReason;
use crate::machine::Machine;
use crate::time::Instant;

/// What the engine session tells the media part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaCommand {
    /// Open (or reopen) the session's media at `url`.
    OpenPlayback {
        /// The playback URL (for HLS, the playlist).
        url: String,
    },
    /// Close the media connection (a reopen follows, or the channel ends).
    ClosePlayback {
        /// Because upstream went silent (not because the session is being replaced
        /// for another reason, or the channel ends).
        stalled: bool,
    },
    /// The channel could not start: tell whoever waits.
    StartFailed(StartFailure),
    /// The channel is over: close every viewer, stop every timer.
    Ended(EndReason),
}

/// What a media part may do while it handles something: feed the engine session and
/// emit outputs.
pub struct Context<'a, O> {
    channel: &'a mut Channel,
    outputs: &'a mut VecDeque<Output<O>>,
}

impl<O> Context<'_, O> {
    /// Feeds the engine session (media arrived, playback opened or failed, viewer count).
    pub fn feed(&mut self, now: Instant, input: SessionInput) {
        self.channel.handle_input(now, input);
    }

    /// The engine session, to read.
    pub fn channel(&self) -> &Channel {
        self.channel
    }

    /// Emits a media output.
    pub fn emit(&mut self, output: O) {
        self.outputs.push_back(Output::Media(output));
    }

    /// Emits a notice.
    pub fn notice(&mut self, notice: Notice) {
        self.outputs.push_back(Output::Notice(notice));
    }
}

/// A format's half of a channel.
pub trait Media {
    /// Inputs of this format (viewers, media completions).
    type Input;
    /// Outputs of this format (deliveries, fetches, snapshots).
    type Output;

    /// Handles one input of this format.
    fn handle_input(
        &mut self,
        now: Instant,
        input: Self::Input,
        cx: &mut Context<'_, Self::Output>,
    );

    /// Performs a command of the engine session.
    fn command(&mut self, now: Instant, command: MediaCommand, cx: &mut Context<'_, Self::Output>);

    /// Fires the part's due timers.
    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_, Self::Output>);

    /// The part's next deadline.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Called at the end of every input or timeout, once the machine is quiet (to
    /// publish what changed once per batch).
    fn settled(&mut self, _now: Instant, _cx: &mut Context<'_, Self::Output>) {}
}

/// One channel: engine session, engine calls and a media part `P`. See the
/// [module docs](super) for the drive order and [`Input`]/[`Output`] for the
/// vocabulary.
#[derive(Debug)]
pub struct ComposedChannel<P: Media> {
    channel: Channel,
    calls: EngineCalls,
    stats: StatsWatch,
    /// The session is being replaced for no progress: the playback it closes did not
    /// stall.
    replacing: bool,
    media: P,
    outputs: VecDeque<Output<P::Output>>,
    ended: bool,
}

impl<P: Media> ComposedChannel<P> {
    /// A channel created at `now`, asking for a session at once.
    pub fn new(now: Instant, channel: ChannelConfig, calls: EngineCallConfig, media: P) -> Self {
        let mut machine = ComposedChannel {
            channel: Channel::new(now, channel),
            stats: StatsWatch::new(calls.stats),
            replacing: false,
            calls: EngineCalls::new(calls),
            media,
            outputs: VecDeque::new(),
            ended: false,
        };
        machine.settle(now);
        machine
    }

    /// Whether the channel is over for viewers (it emitted [`Output::Ended`]).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether the channel is over and its engine calls too: no request unanswered,
    /// no stop unconfirmed. Its driver may go once its outputs are drained.
    pub fn is_finished(&self) -> bool {
        self.ended && self.calls.is_idle()
    }

    /// Whether media has flowed at least once.
    pub fn has_started(&self) -> bool {
        self.channel.has_started()
    }

    /// The current engine session.
    pub fn session(&self) -> Option<&EngineSession> {
        self.channel.session()
    }

    /// The media part, to read.
    pub fn media(&self) -> &P {
        &self.media
    }

    /// Session requests not answered yet (the current one and those watched for a late
    /// answer).
    pub fn requests_in_flight(&self) -> usize {
        self.calls.requests_in_flight()
    }

    /// Stops not yet confirmed or given up.
    pub fn stops_in_flight(&self) -> usize {
        self.calls.stops_in_flight()
    }

    /// Feeds one report.
    pub fn handle_input(&mut self, now: Instant, input: Input<P::Input>) {
        match input {
            Input::EnginePicked(picked) => {
                if let Some(input) = self.calls.engine_picked(now, picked, &mut self.outputs) {
                    self.channel.handle_input(now, input);
                }
            }
            Input::SessionAnswer { request, result } => {
                let wanted = !self.channel.is_ended();
                if let Some(input) = self
                    .calls
                    .answer(request, result, wanted, &mut self.outputs)
                {
                    self.channel.handle_input(now, input);
                }
            }
            Input::StopAnswer { stop, result } => {
                self.calls.stop_answer(now, stop, result, &mut self.outputs);
            }
            Input::StatsAnswer { poll, result } => {
                for action in self.stats.answer(now, poll, result) {
                    self.stats_action(now, action);
                }
            }
            Input::Stop(reason) => self.channel.handle_input(now, SessionInput::Stop(reason)),
            Input::Shutdown => {
                self.calls.shut_down(&mut self.outputs);
                self.channel
                    .handle_input(now, SessionInput::Stop(EndReason::Shutdown));
            }
            Input::Media(input) => {
                let mut cx = Context {
                    channel: &mut self.channel,
                    outputs: &mut self.outputs,
                };
                self.media.handle_input(now, input, &mut cx);
            }
        }
        self.settle(now);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for input in self.calls.handle_timeout(now, &mut self.outputs) {
            self.channel.handle_input(now, input);
        }
        self.settle(now);
        self.channel.handle_timeout(now);
        self.settle(now);
        let mut cx = Context {
            channel: &mut self.channel,
            outputs: &mut self.outputs,
        };
        self.media.handle_timeout(now, &mut cx);
        self.settle(now);
        if let Some(action) = self.stats.handle_timeout(now) {
            self.stats_action(now, action);
            self.settle(now);
        }
    }

    /// Performs what the stats watch asked for or decided.
    fn stats_action(&mut self, now: Instant, action: StatsAction) {
        match action {
            StatsAction::Fetch { poll, engine, url } => {
                self.outputs
                    .push_back(Output::FetchStats { poll, engine, url });
            }
            StatsAction::Stats(stats) => self.outputs.push_back(Output::Stats(stats)),
            StatsAction::Failed {
                engine,
                error,
                consecutive,
            } => self.outputs.push_back(Output::Notice(Notice::StatsFailed {
                engine,
                error,
                consecutive,
            })),
            StatsAction::NoProgress {
                engine,
                for_at_least,
            } => {
                self.outputs.push_back(Output::Notice(Notice::NoPeers {
                    engine,
                    for_at_least,
                }));
                self.replacing = true;
                self.channel
                    .handle_input(now, SessionInput::Replace(EndReason::NoPeers));
            }
        }
    }

    /// The next output.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output<P::Output>> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.channel.poll_timeout(),
            self.calls.poll_timeout(),
            self.stats.poll_timeout(),
            self.media.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Routes the engine session's outputs until it is quiet, then lets the media part
    /// publish what changed.
    fn settle(&mut self, now: Instant) {
        loop {
            self.route(now);
            let mut cx = Context {
                channel: &mut self.channel,
                outputs: &mut self.outputs,
            };
            self.media.settled(now, &mut cx);
            if !self.route(now) {
                // A replacement that closed no playback leaves nothing to mark.
                self.replacing = false;
                return;
            }
        }
    }

    /// Routes the engine session's outputs; says whether there were any.
    fn route(&mut self, now: Instant) -> bool {
        let mut routed = false;
        while let Some(output) = self.channel.poll_output() {
            routed = true;
            let command = match output {
                ChannelOutput::RequestSession { exclude } => {
                    self.calls.request_session(exclude, &mut self.outputs);
                    continue;
                }
                ChannelOutput::StopSession {
                    engine,
                    command_url,
                } => {
                    self.outputs
                        .push_back(Output::Pool(PoolChange::Closed(engine.clone())));
                    self.calls.stop(engine, command_url, &mut self.outputs);
                    continue;
                }
                ChannelOutput::SessionStarted(session) => {
                    self.stats.watch(now, &session);
                    self.outputs.push_back(Output::Started(session));
                    // The first poll at once, so figures show as soon as media does.
                    if let Some(action) = self.stats.handle_timeout(now) {
                        self.stats_action(now, action);
                    }
                    continue;
                }
                ChannelOutput::SessionEnded { session, reason } => {
                    self.stats.unwatch();
                    self.outputs
                        .push_back(Output::SessionEnded { session, reason });
                    continue;
                }
                ChannelOutput::OpenPlayback { url } => MediaCommand::OpenPlayback { url },
                ChannelOutput::ClosePlayback => MediaCommand::ClosePlayback {
                    stalled: !std::mem::take(&mut self.replacing) && !self.channel.is_ended(),
                },
                ChannelOutput::StartFailed(failure) => {
                    self.outputs
                        .push_back(Output::Notice(Notice::StartFailed(failure.clone())));
                    MediaCommand::StartFailed(failure)
                }
                ChannelOutput::Ended { reason } => MediaCommand::Ended(reason),
            };
            let ended = match &command {
                MediaCommand::Ended(reason) => Some(reason.clone()),
                _ => None,
            };
            let mut cx = Context {
                channel: &mut self.channel,
                outputs: &mut self.outputs,
            };
            self.media.command(now, command, &mut cx);
            if let Some(reason) = ended {
                self.stats.unwatch();
                self.ended = true;
                self.outputs.push_back(Output::Ended { reason });
            }
        }
        routed
    }
}

impl<P: Media> Machine for ComposedChannel<P> {
    type Input = Input<P::Input>;
    type Output = Output<P::Output>;

    fn handle_input(&mut self, now: Instant, input: Self::Input) {
        ComposedChannel::handle_input(self, now, input);
    }

    fn handle_timeout(&mut self, now: Instant) {
        ComposedChannel::handle_timeout(self, now);
    }

    fn poll_output(&mut self) -> Option<Self::Output> {
        ComposedChannel::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        ComposedChannel::poll_timeout(self)
    }
}
