//! The channel machine under random reports and clock moves, with its promises checked
//! after every step.

use std::collections::{BTreeMap, BTreeSet};

use super::reader::ByteReader;
use super::MAX_STEPS;
use crate::channel::{
    Channel, ChannelConfig, EngineSession, SessionError, SessionInput as Input,
    SessionOutput as Output,
};
use crate::lifecycle::{EngineAddr, SessionInfo};
use crate::machine::Harness;
use crate::time::{Duration, Instant};

/// Where the clock starts: not zero, so that a deadline computed from the wrong origin
/// shows.
const T0: Instant = Instant::from_micros(1_000_000_000);

/// Engines the driver names; few, so that failures repeat engines.
pub(crate) const PORTS: std::ops::Range<u16> = 1..4;

/// One step of a drive.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// A session is granted (requested or not: late grants must be stopped too).
    Ready {
        port: u16,
    },
    Failed {
        port: u16,
        error: SessionError,
    },
    NoEngine,
    Opened,
    PlaybackFailed,
    PlaybackEnded,
    Data {
        bytes: usize,
    },
    Viewers(usize),
    Stop,
    /// Time passes and the driver fires every deadline on its instant.
    Advance {
        millis: u64,
    },
    /// Time passes and the driver wakes once, late (a busy runtime).
    Jump {
        millis: u64,
    },
    /// An early wake-up: `handle_timeout` with nothing due.
    Wake,
}

/// Drives a channel with a configuration and steps decoded from `data`, checking the
/// machine's promises after every step.
pub fn channel(data: &[u8]) {
    let mut reader = ByteReader::new(data);
    let config = decode_config(&mut reader);
    let ops = reader.steps(MAX_STEPS, decode_op);
    run(config, ops);
}

/// Any timing with non-zero durations (a zero stall timeout lets a reopen re-arm the
/// stall timer at `now`, so `handle_timeout` would leave a deadline due); counts
/// include zero.
fn decode_config(reader: &mut ByteReader<'_>) -> ChannelConfig {
    let mut millis = |high| Duration::from_millis(reader.range(1, high));
    ChannelConfig {
        start_timeout: millis(40_000),
        upstream_stall_timeout: millis(15_000),
        recovery_timeout: millis(70_000),
        idle_grace: millis(20_000),
        initial_backoff: millis(2_000),
        max_backoff: millis(8_000),
        reconnects_per_session: reader.below(5) as u32,
        session_attempts: reader.below(5) as u32,
    }
}

#[derive(Clone, Copy)]
enum OpKind {
    Ready,
    Failed,
    NoEngine,
    Opened,
    PlaybackFailed,
    PlaybackEnded,
    Data,
    Viewers,
    Stop,
    Advance,
    LongAdvance,
    Jump,
    Wake,
}

fn decode_op(reader: &mut ByteReader<'_>) -> Op {
    let port = |reader: &mut ByteReader<'_>| reader.range(PORTS.start.into(), PORTS.end.into());
    let kind = reader.weighted(&[
        (3, OpKind::Ready),
        (1, OpKind::Failed),
        (1, OpKind::NoEngine),
        (2, OpKind::Opened),
        (1, OpKind::PlaybackFailed),
        (1, OpKind::PlaybackEnded),
        (8, OpKind::Data),
        (4, OpKind::Viewers),
        (1, OpKind::Stop),
        (8, OpKind::Advance),
        (1, OpKind::LongAdvance),
        (1, OpKind::Jump),
        (1, OpKind::Wake),
    ]);
    match kind {
        OpKind::Ready => Op::Ready {
            port: port(reader) as u16,
        },
        OpKind::Failed => {
            let port = port(reader) as u16;
            let error = match reader.below(3) {
                0 => SessionError::Refused("refused".into()),
                1 => SessionError::Failed("failed".into()),
                _ => SessionError::Timeout,
            };
            Op::Failed { port, error }
        }
        OpKind::NoEngine => Op::NoEngine,
        OpKind::Opened => Op::Opened,
        OpKind::PlaybackFailed => Op::PlaybackFailed,
        OpKind::PlaybackEnded => Op::PlaybackEnded,
        OpKind::Data => Op::Data {
            bytes: reader.index(3),
        },
        OpKind::Viewers => Op::Viewers(reader.index(3)),
        OpKind::Stop => Op::Stop,
        OpKind::Advance => Op::Advance {
            millis: reader.below(5_000),
        },
        OpKind::LongAdvance => Op::Advance {
            millis: reader.below(60_000),
        },
        OpKind::Jump => Op::Jump {
            millis: reader.below(60_000),
        },
        OpKind::Wake => Op::Wake,
    }
}

pub(crate) fn engine(port: u16) -> EngineAddr {
    EngineAddr {
        host: "engine".into(),
        port,
    }
}

/// Session `id` granted by `engine:port`; the id makes every URL unique.
pub(crate) fn session(port: u16, id: &str) -> EngineSession {
    EngineSession {
        engine: engine(port),
        playback_url: format!("http://engine:{port}/content/{id}"),
        session: SessionInfo {
            playback_session_id: id.into(),
            stat_url: format!("http://engine:{port}/stat/{id}"),
            command_url: format!("http://engine:{port}/cmd/{id}"),
            is_live: true,
        },
    }
}

/// What the outputs so far promise about the ones to come.
#[derive(Default)]
struct Invariants {
    /// Command URL of every session granted before the end, by playback URL.
    granted: BTreeMap<String, String>,
    stopped: BTreeSet<String>,
    started: BTreeSet<String>,
    session_ended: BTreeSet<String>,
    start_failed: bool,
    ended: bool,
    /// Whether the driver holds a playback connection: from `OpenPlayback` to
    /// `ClosePlayback` or a reported end or failure of the connection.
    playback_open: bool,
}

impl Invariants {
    fn check(&mut self, output: &Output) {
        assert!(!self.ended, "{output:?} after Ended");
        match output {
            Output::RequestSession { .. } => {}
            Output::ClosePlayback => {
                assert!(self.playback_open, "closed a playback that is not open");
                self.playback_open = false;
            }
            Output::OpenPlayback { url } => {
                assert!(!self.playback_open, "opened a second playback");
                self.playback_open = true;
                let command_url = self.granted.get(url);
                assert!(command_url.is_some(), "opened unknown {url}");
                let stopped = command_url.is_some_and(|url| self.stopped.contains(url));
                assert!(!stopped, "opened the stopped session's {url}");
            }
            Output::StopSession { command_url, .. } => {
                let known = self.granted.values().any(|granted| granted == command_url);
                assert!(known, "stopped unknown {command_url}");
                assert!(
                    self.stopped.insert(command_url.clone()),
                    "{command_url} stopped twice"
                );
            }
            Output::SessionStarted(session) => {
                let command_url = &session.session.command_url;
                assert!(
                    !self.stopped.contains(command_url),
                    "started after its stop"
                );
                assert!(
                    self.started.insert(command_url.clone()),
                    "{command_url} started twice"
                );
            }
            Output::SessionEnded { session, .. } => {
                let command_url = &session.session.command_url;
                assert!(self.started.contains(command_url), "ended before its start");
                assert!(self.stopped.contains(command_url), "ended but not stopped");
                assert!(
                    self.session_ended.insert(command_url.clone()),
                    "{command_url} ended twice"
                );
            }
            Output::StartFailed(_) => {
                assert!(self.started.is_empty(), "start failed after a start");
                assert!(!self.start_failed, "start failed twice");
                self.start_failed = true;
            }
            Output::Ended { .. } => {
                assert!(!self.playback_open, "ended with the playback open");
                self.ended = true;
            }
        }
    }

    /// Checks what the channel put out, then the state it leaves.
    fn settled(&mut self, outputs: &[Output], channel: &Channel, now: Instant) {
        for output in outputs {
            self.check(output);
        }
        if self.start_failed {
            assert!(self.ended, "a start failure ends the channel at once");
        }
        assert_eq!(channel.is_ended(), self.ended);
        if self.ended {
            assert_eq!(channel.poll_timeout(), None);
        }
        if let Some(deadline) = channel.poll_timeout() {
            assert!(deadline > now, "deadline {deadline} due at {now}");
        }
    }
}

/// Runs `ops` against a channel built with `config`; panics when a promise breaks.
pub(crate) fn run(config: ChannelConfig, ops: Vec<Op>) {
    let mut harness = Harness::new(Channel::new(T0, config), T0);
    let mut invariants = Invariants::default();
    let outputs = harness.drain();
    invariants.settled(&outputs, &harness.machine, harness.now);
    for (index, op) in ops.into_iter().enumerate() {
        let input = match op {
            Op::Ready { port } => {
                let granted = session(port, &format!("s{index}"));
                if !harness.machine.is_ended() {
                    invariants.granted.insert(
                        granted.playback_url.clone(),
                        granted.session.command_url.clone(),
                    );
                }
                Some(Input::SessionReady(granted))
            }
            Op::Failed { port, error } => Some(Input::SessionFailed {
                engine: engine(port),
                error,
            }),
            Op::NoEngine => Some(Input::NoEngine),
            Op::Opened => Some(Input::PlaybackOpened),
            Op::PlaybackFailed => {
                invariants.playback_open = false;
                Some(Input::PlaybackFailed("502".into()))
            }
            Op::PlaybackEnded => {
                invariants.playback_open = false;
                Some(Input::PlaybackEnded)
            }
            Op::Data { bytes } => Some(Input::Data(bytes)),
            Op::Viewers(count) => Some(Input::Viewers(count)),
            Op::Stop => Some(Input::Stop("deleted".into())),
            Op::Advance { millis } => {
                harness.advance_each(Duration::from_millis(millis), |channel, now, fired| {
                    invariants.settled(fired, channel, now);
                });
                invariants.settled(&[], &harness.machine, harness.now);
                None
            }
            Op::Jump { millis } => {
                let outputs = harness.jump(Duration::from_millis(millis));
                invariants.settled(&outputs, &harness.machine, harness.now);
                None
            }
            Op::Wake => {
                let outputs = harness.wake();
                invariants.settled(&outputs, &harness.machine, harness.now);
                None
            }
        };
        if let Some(input) = input {
            let outputs = harness.input(input);
            invariants.settled(&outputs, &harness.machine, harness.now);
        }
    }
    // Liveness of the stop: however the run went, once the channel is over every
    // session it was granted has been stopped, each exactly once.
    let outputs = harness.input(Input::Stop("drive over".into()));
    invariants.settled(&outputs, &harness.machine, harness.now);
    assert!(invariants.ended, "a stop ends the channel");
    let granted: BTreeSet<String> = invariants.granted.values().cloned().collect();
    assert_eq!(
        invariants.stopped, granted,
        "every granted session is stopped"
    );
}
