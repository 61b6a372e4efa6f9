//! Tests of the channel machine: a fake-clock harness here, one behaviour per test in
//! the topic modules, and a property test of the machine's invariants over random
//! drives in `invariants`.

mod composed;
mod idle;
mod invariants;
mod reconnect;
mod start;
mod stop;

use super::{
    Channel, ChannelConfig, EngineSession, SessionError, SessionInput as Input,
    SessionOutput as Output, StartFailure,
};
use crate::fuzzing::channel::{engine, session};
use crate::time::{Duration, Instant};

/// Where every harness clock starts: not zero, so that a deadline computed from the
/// wrong origin shows.
const T0: Instant = Instant::from_micros(1_000_000_000);

/// Most deadlines one `advance` may fire; more means the machine livelocks.
const MAX_STEPS_PER_ADVANCE: usize = 10_000;

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

/// One channel on a fake clock, in the manner of quinn's `Pair`: the test feeds
/// inputs at `now`, and `step` moves the clock to the machine's next deadline.
struct Harness {
    channel: Channel,
    config: ChannelConfig,
    now: Instant,
    /// Every output drained so far, in order, for "exactly once" checks over a run.
    log: Vec<Output>,
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
            channel: Channel::new(T0, config.clone()),
            config,
            now: T0,
            log: Vec::new(),
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
        let mut outputs = Vec::new();
        while let Some(output) = self.channel.poll_output() {
            outputs.push(output);
        }
        self.log.extend(outputs.iter().cloned());
        outputs
    }

    /// Feeds `input` at `now`; what it caused.
    fn input(&mut self, input: Input) -> Vec<Output> {
        self.channel.handle_input(self.now, input);
        let outputs = self.drain();
        self.assert_no_deadline_due();
        outputs
    }

    fn grant(&mut self, session: &EngineSession) -> Vec<Output> {
        self.input(Input::SessionReady(session.clone()))
    }

    /// Answers the pending session request with a fresh session of `engine:port`.
    #[track_caller]
    fn answer(&mut self, port: u16) -> (EngineSession, Vec<Output>) {
        assert!(
            matches!(self.log.last(), Some(Output::RequestSession { .. })),
            "no session request to answer: {:?}",
            self.log.last()
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
        self.channel.poll_timeout()
    }

    /// Moves the clock to the next deadline and fires it.
    #[track_caller]
    fn step(&mut self) -> Vec<Output> {
        let deadline = self.deadline().expect("a deadline to step to");
        assert!(
            deadline > self.now,
            "deadline {deadline} is not after now {}",
            self.now
        );
        self.now = deadline;
        self.channel.handle_timeout(self.now);
        let outputs = self.drain();
        self.assert_no_deadline_due();
        outputs
    }

    /// Lets `duration` pass, firing every deadline on its instant; everything that
    /// came out, in order.
    #[track_caller]
    fn advance(&mut self, duration: Duration) -> Vec<Output> {
        let until = self.now + duration;
        let mut outputs = Vec::new();
        for _ in 0..MAX_STEPS_PER_ADVANCE {
            match self.deadline() {
                Some(deadline) if deadline <= until => outputs.extend(self.step()),
                _ => {
                    self.now = until;
                    return outputs;
                }
            }
        }
        panic!("more than {MAX_STEPS_PER_ADVANCE} deadlines before {until}: livelock");
    }

    /// How often `output` was emitted over the whole run.
    fn count(&self, output: &Output) -> usize {
        self.log.iter().filter(|logged| *logged == output).count()
    }

    fn count_matching(&self, predicate: impl Fn(&Output) -> bool) -> usize {
        self.log.iter().filter(|logged| predicate(logged)).count()
    }

    /// Handling anything at `now` leaves no deadline at or before `now`.
    #[track_caller]
    fn assert_no_deadline_due(&self) {
        if let Some(deadline) = self.deadline() {
            assert!(
                deadline > self.now,
                "deadline {deadline} left due at {}",
                self.now
            );
        }
    }
}
