//! Tests of the channel machine: a fake-clock harness here, one behaviour per test in
//! the topic modules, and a property test of the machine's invariants over random
//! drives in `invariants`.

mod composed;
mod cut;
mod idle;
mod invariants;
mod reconnect;
mod start;
mod stats;
mod stop;

use super::{
    Channel, ChannelConfig, EngineSession, SessionError, SessionInput as Input,
    SessionOutput as Output, StartFailure,
};
use crate::fuzzing::channel::{engine, session};
use crate::machine;
use crate::time::{Duration, Instant};

/// Where every harness clock starts: not zero, so that a deadline computed from the
/// wrong origin shows.
const T0: Instant = Instant::from_micros(1_000_000_000);

/// Bytes of one media read; any non-zero count is media.
const CHUNK_BYTES: usize = 1316;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn request(exclude: &[u16]) -> Output {
    Output::RequestSession {
        exclude: exclude.iter().copied().map(engine).collect(),
    }
}

fn open(session: &EngineSession) -> Output {
    Output::OpenPlayback {
        url: session.playback_url.clone(),
    }
}

fn stop(session: &EngineSession) -> Output {
    Output::StopSession {
        engine: session.engine.clone(),
        command_url: session.session.command_url.clone(),
    }
}

fn started(session: &EngineSession) -> Output {
    Output::SessionStarted(session.clone())
}

fn session_ended(session: &EngineSession, reason: &str) -> Output {
    Output::SessionEnded {
        session: session.clone(),
        reason: reason.into(),
    }
}

fn ended(reason: &str) -> Output {
    Output::Ended {
        reason: reason.into(),
    }
}

fn start_failed(failure: StartFailure) -> Output {
    Output::StartFailed(failure)
}

fn failed(port: u16, error: SessionError) -> Input {
    Input::SessionFailed {
        engine: engine(port),
        error,
    }
}

fn refused(message: &str) -> SessionError {
    SessionError::Refused(message.into())
}

/// One channel on the core's fake clock ([`machine::Harness`], strict: no handle call
/// may leave a deadline due), with the channel's own shortcuts.
struct Harness {
    inner: machine::Harness<Channel>,
    config: ChannelConfig,
    /// Sessions handed out by `answer`, for fresh ids.
    answered: usize,
}

impl Harness {
    /// A channel with the default configuration, created at `T0`. Its first outputs
    /// are left for the test to drain.
    fn new() -> Self {
        Self::with_config(|_| {})
    }

    fn with_config(edit: impl FnOnce(&mut ChannelConfig)) -> Self {
        let mut config = ChannelConfig::default();
        edit(&mut config);
        Harness {
            inner: machine::Harness::strict(Channel::new(T0, config.clone()), T0),
            config,
            answered: 0,
        }
    }

    /// A channel with one viewer (so the idle grace does not run), its first
    /// session request drained.
    fn watched() -> Self {
        Self::watched_with(|_| {})
    }

    #[track_caller]
    fn watched_with(edit: impl FnOnce(&mut ChannelConfig)) -> Self {
        let mut harness = Self::with_config(edit);
        assert_eq!(harness.drain(), vec![request(&[])]);
        assert_eq!(harness.input(Input::Viewers(1)), vec![]);
        harness
    }

    /// A watched channel playing `session(1, "a")` since `T0`: granted, opened,
    /// first byte in.
    fn playing() -> (Self, EngineSession) {
        Self::playing_with(|_| {})
    }

    #[track_caller]
    fn playing_with(edit: impl FnOnce(&mut ChannelConfig)) -> (Self, EngineSession) {
        let mut harness = Self::watched_with(edit);
        let a = session(1, "a");
        assert_eq!(harness.grant(&a), vec![open(&a)]);
        assert_eq!(harness.input(Input::PlaybackOpened), vec![]);
        assert_eq!(harness.data(), vec![started(&a)]);
        (harness, a)
    }

    /// Everything the machine queued since the last drain.
    fn drain(&mut self) -> Vec<Output> {
        self.inner.drain()
    }

    /// Feeds `input` at `now`; what it caused.
    #[track_caller]
    fn input(&mut self, input: Input) -> Vec<Output> {
        self.inner.input(input)
    }

    fn grant(&mut self, session: &EngineSession) -> Vec<Output> {
        self.input(Input::SessionReady(session.clone()))
    }

    /// Answers the pending session request with a fresh session of `engine:port`.
    #[track_caller]
    fn answer(&mut self, port: u16) -> (EngineSession, Vec<Output>) {
        assert!(
            matches!(self.log().last(), Some(Output::RequestSession { .. })),
            "no session request to answer: {:?}",
            self.log().last()
        );
        self.answered += 1;
        let granted = session(port, &format!("answer{}", self.answered));
        let outputs = self.grant(&granted);
        (granted, outputs)
    }

    fn data(&mut self) -> Vec<Output> {
        self.input(Input::Data(CHUNK_BYTES))
    }

    fn deadline(&self) -> Option<Instant> {
        self.inner.deadline()
    }

    /// Moves the clock to the next deadline and fires it.
    #[track_caller]
    fn step(&mut self) -> Vec<Output> {
        self.inner.step().expect("a deadline to step to")
    }

    /// Lets `duration` pass, firing every deadline on its instant; everything that
    /// came out, in order.
    #[track_caller]
    fn advance(&mut self, duration: Duration) -> Vec<Output> {
        self.inner.advance(duration)
    }

    /// The fake clock.
    fn now(&self) -> Instant {
        self.inner.now
    }

    /// Everything drained over the whole run.
    fn log(&self) -> &[Output] {
        &self.inner.log
    }

    /// The channel under test.
    fn channel(&self) -> &Channel {
        &self.inner.machine
    }

    /// How often `output` was emitted over the whole run.
    fn count(&self, output: &Output) -> usize {
        self.log().iter().filter(|logged| *logged == output).count()
    }

    fn count_matching(&self, predicate: impl Fn(&Output) -> bool) -> usize {
        self.log().iter().filter(|logged| predicate(logged)).count()
    }
}
