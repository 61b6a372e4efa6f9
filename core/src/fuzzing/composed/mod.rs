//! The composed channel machines ([`TsChannel`], [`HlsChannel`]) against a fake engine
//! side and fake viewers, under any interleaving of completions, arrivals and time,
//! with their promises checked after every step:
//!
//! - at most one engine session of a channel is open at a time;
//! - every session an engine grants (late ones too) is stopped, its first attempt
//!   exactly once; a retry only follows a failed attempt;
//! - one `stream_started` and at most one `stream_ended` per session, in that order;
//! - a TS viewer never receives a packet twice or out of order, gets nothing while a
//!   delivery is in flight, no keepalive before its first media, and exactly one close;
//! - every HLS player waiting for the first playlist is answered exactly once;
//! - stats are polled only for the session playing now, one poll at a time, and a
//!   session replaced for no progress ends with that reason;
//! - once stopped and with every call answered, the machine is finished.

use std::collections::{BTreeMap, BTreeSet};

use super::reader::ByteReader;
use crate::channel::{
    ChannelConfig, ComposedChannel, EngineCallConfig, EngineSession, EngineStats, Input, Media,
    Notice, Output, PoolChange, RequestId, SessionError, StatPollId, StatsConfig, StopId,
};
use crate::lifecycle::{EndReason, EngineAddr, SessionInfo};
use crate::machine::Harness;
use crate::time::{Duration, Instant};

/// Where the clock starts: not zero, so that a deadline computed from the wrong origin
/// shows.
const T0: Instant = Instant::from_micros(1_000_000_000);

/// An engine address of the fake pool.
pub(crate) fn engine(port: u16) -> EngineAddr {
    EngineAddr {
        host: "engine".into(),
        port,
    }
}

/// Session number `n` granted by `engine:port`.
pub(crate) fn session(port: u16, n: u64) -> EngineSession {
    EngineSession {
        engine: engine(port),
        playback_url: format!("http://engine:{port}/content/{n}"),
        session: SessionInfo {
            playback_session_id: format!("s{n}"),
            stat_url: format!("http://engine:{port}/stat/{n}"),
            command_url: format!("http://engine:{port}/cmd/{n}"),
            is_live: true,
        },
    }
}

/// Timing with small, non-zero durations, so that drives reach every timer.
fn decode_configs(reader: &mut ByteReader<'_>) -> (ChannelConfig, EngineCallConfig) {
    let mut millis = |low, high| Duration::from_millis(reader.range(low, high));
    let channel = ChannelConfig {
        start_timeout: millis(1_000, 20_000),
        upstream_stall_timeout: millis(500, 10_000),
        recovery_timeout: millis(1_000, 40_000),
        idle_grace: millis(500, 15_000),
        initial_backoff: millis(1, 2_000),
        max_backoff: millis(1, 6_000),
        reconnects_per_session: 0,
        session_attempts: 0,
    };
    let calls = EngineCallConfig {
        planted: crate::planted::Planted::NONE,
        request_timeout: millis(1, 8_000),
        late_answer_factor: 2,
        late_answer_min: millis(1, 20_000),
        max_late_requests: 0,
        stop_attempts: 0,
        stop_retry_initial: millis(1, 3_000),
        stop_retry_max: millis(1, 6_000),
        stats: StatsConfig {
            interval: Some(millis(1, 5_000)),
            no_peers_timeout: Some(millis(0, 20_000)),
        },
    };
    let channel = ChannelConfig {
        reconnects_per_session: reader.below(4) as u32,
        session_attempts: reader.below(4) as u32,
        ..channel
    };
    let calls = EngineCallConfig {
        planted: crate::planted::Planted::NONE,
        max_late_requests: reader.index(4),
        stop_attempts: reader.below(5) as u32,
        stats: StatsConfig {
            interval: calls.stats.interval.filter(|_| reader.below(4) != 0),
            no_peers_timeout: calls
                .stats
                .no_peers_timeout
                .filter(|_| reader.below(4) != 0),
        },
        ..calls
    };
    (channel, calls)
}

/// The engine side: requests, sessions and stops, and the promises about them.
#[derive(Default)]
struct Engines {
    /// The pool has no engine to give.
    exhausted: bool,
    next_port: u16,
    next_session: u64,
    /// Requests sent and neither answered nor abandoned, with their engine's port.
    requests: BTreeMap<RequestId, u16>,
    /// Command URLs of every session granted.
    granted: BTreeSet<String>,
    /// Stops in flight: attempt, command URL.
    stops: BTreeMap<StopId, (u32, String)>,
    /// Stops whose attempt failed, with the attempt, waiting for a retry.
    failed_stops: BTreeMap<StopId, u32>,
    /// Command URLs whose first stop attempt was sent.
    stopped: BTreeSet<String>,
    /// Sessions open in the pool's count (opened, not closed).
    open: i64,
    started: BTreeSet<String>,
    ended: BTreeSet<String>,
    channel_ended: bool,
    /// Stat polls not answered yet, with the command URL of their session.
    polls: BTreeMap<StatPollId, String>,
    /// The session playing now (started, not ended), by command URL.
    playing: Option<String>,
    /// Bytes the fake engine reports downloaded.
    downloaded: u64,
    /// A no-progress replacement was announced; its session's end must follow.
    no_peers: Option<String>,
}

impl Engines {
    /// Checks a shared output; answers a pick at once. Media outputs are handed back.
    fn check<M>(&mut self, output: Output<M>, picks: &mut Vec<Option<EngineAddr>>) -> Option<M> {
        match output {
            Output::PickEngine { .. } => {
                let picked = (!self.exhausted).then(|| {
                    self.next_port = self.next_port % 3 + 1;
                    engine(self.next_port)
                });
                picks.push(picked);
            }
            Output::RequestSession { request, engine } => {
                assert!(
                    self.requests.insert(request, engine.port).is_none(),
                    "request {request} sent twice"
                );
            }
            Output::AbandonRequest { request } => {
                assert!(
                    self.requests.remove(&request).is_some(),
                    "abandoned {request}, which is not in flight"
                );
            }
            Output::StopSession {
                stop,
                attempt,
                command_url,
                ..
            } => {
                assert!(
                    self.granted.contains(&command_url),
                    "stopped unknown {command_url}"
                );
                if attempt == 1 {
                    assert!(
                        self.stopped.insert(command_url.clone()),
                        "{command_url} stopped twice"
                    );
                } else {
                    assert_eq!(
                        self.failed_stops.remove(&stop),
                        Some(attempt - 1),
                        "attempt {attempt} of stop {stop} without a failed attempt before"
                    );
                }
                assert!(
                    self.stops.insert(stop, (attempt, command_url)).is_none(),
                    "stop {stop} sent while in flight"
                );
            }
            Output::Pool(PoolChange::Opened(_)) => {
                self.open += 1;
                assert!(self.open <= 1, "two engine sessions open at once");
            }
            Output::Pool(PoolChange::Closed(_)) => {
                self.open -= 1;
                assert!(self.open >= 0, "closed more sessions than opened");
            }
            Output::Pool(PoolChange::Failed { .. }) => {}
            Output::Started(session) => {
                let url = session.session.command_url;
                assert!(!self.stopped.contains(&url), "started after its stop");
                assert!(self.started.insert(url.clone()), "{url} started twice");
                self.playing = Some(url);
            }
            Output::SessionEnded { session, reason } => {
                let url = session.session.command_url;
                assert!(self.started.contains(&url), "{url} ended before it started");
                assert!(self.ended.insert(url.clone()), "{url} ended twice");
                if self.no_peers.as_ref() == Some(&url) {
                    assert_eq!(reason, EndReason::NoPeers, "{url} replaced for no progress");
                    self.no_peers = None;
                }
                if self.playing.as_ref() == Some(&url) {
                    self.playing = None;
                }
            }
            Output::FetchStats { poll, url, .. } => {
                let playing = self
                    .playing
                    .as_ref()
                    .expect("stats polled without a session");
                let stat_url = playing.replace("/cmd/", "/stat/");
                assert_eq!(url, stat_url, "stats of the session playing now");
                assert!(
                    self.polls.values().all(|session| session != playing),
                    "two stat polls of one session in flight"
                );
                self.polls.insert(poll, playing.clone());
            }
            Output::Stats(_) => {
                assert!(self.playing.is_some(), "figures without a session playing");
            }
            Output::Notice(Notice::NoPeers { .. }) => {
                let playing = self.playing.clone().expect("no progress of no session");
                self.no_peers = Some(playing);
            }
            Output::Ended { .. } => {
                assert!(!self.channel_ended, "ended twice");
                self.channel_ended = true;
            }
            Output::Notice(_) => {}
            Output::Media(media) => return Some(media),
        }
        None
    }

    /// Answers request number `index` (in id order) of those in flight.
    fn answer_request<M>(&mut self, index: usize, grant: bool) -> Option<Input<M>> {
        let request = *self
            .requests
            .keys()
            .nth(index % self.requests.len().max(1))?;
        let port = self.requests.remove(&request)?;
        let result = if grant {
            self.next_session += 1;
            let granted = session(port, self.next_session);
            self.granted.insert(granted.session.command_url.clone());
            Ok(granted)
        } else {
            Err(SessionError::Refused("refused".into()))
        };
        Some(Input::SessionAnswer { request, result })
    }

    /// Answers stat poll number `index` (in id order) of those in flight: figures with
    /// or without peers and progress, or a failure.
    fn answer_stats<M>(&mut self, index: usize, answer: StatsOp) -> Option<Input<M>> {
        let poll = *self.polls.keys().nth(index % self.polls.len().max(1))?;
        self.polls.remove(&poll);
        let result = match answer {
            StatsOp::Fail => Err("502".into()),
            StatsOp::Stuck => Ok(EngineStats {
                downloaded: self.downloaded,
                ..EngineStats::default()
            }),
            StatsOp::Healthy => {
                self.downloaded += 1_000;
                Ok(EngineStats {
                    peers: 3,
                    downloaded: self.downloaded,
                    ..EngineStats::default()
                })
            }
        };
        Some(Input::StatsAnswer { poll, result })
    }

    /// Answers stop number `index` (in id order) of those in flight.
    fn answer_stop<M>(&mut self, index: usize, confirm: bool) -> Option<Input<M>> {
        let stop = *self.stops.keys().nth(index % self.stops.len().max(1))?;
        let (attempt, _) = self.stops.remove(&stop)?;
        if !confirm {
            self.failed_stops.insert(stop, attempt);
        }
        let result = if confirm { Ok(()) } else { Err("502".into()) };
        Some(Input::StopAnswer { stop, result })
    }

    /// At the end: every granted session was stopped, every start has at most one end.
    fn check_final(&self) {
        assert_eq!(
            self.stopped, self.granted,
            "every granted session is stopped"
        );
        assert!(
            self.requests.is_empty(),
            "every request answered or abandoned"
        );
        assert!(self.channel_ended, "the channel ended");
        assert!(self.ended.is_subset(&self.started));
        assert_eq!(
            self.no_peers, None,
            "a no-progress replacement ended its session"
        );
    }
}

/// A composed channel with its fake world: the engine side, shared, and `S`, the side
/// of the format's viewers and fetches.
struct World<P: Media, S> {
    harness: Harness<ComposedChannel<P>>,
    engines: Engines,
    side: S,
}

/// The format's side of a fake world: checks the media outputs.
trait MediaSide<O> {
    fn check(&mut self, output: O);
}

/// Feeds `input` (if any) or moves time, then drains and checks every output,
/// answering engine picks at once.
fn settle<P, S>(world: &mut World<P, S>, outputs: Vec<Output<P::Output>>)
where
    P: Media<Output: Clone>,
    S: MediaSide<P::Output>,
{
    let mut outputs = outputs;
    loop {
        let mut picks = Vec::new();
        for output in outputs {
            if let Some(media) = world.engines.check(output, &mut picks) {
                world.side.check(media);
            }
        }
        if picks.is_empty() {
            return;
        }
        outputs = Vec::new();
        for picked in picks {
            outputs.extend(world.harness.input(Input::EnginePicked(picked)));
        }
    }
}

fn feed<P, S>(world: &mut World<P, S>, input: Input<P::Input>)
where
    P: Media<Output: Clone>,
    S: MediaSide<P::Output>,
{
    let outputs = world.harness.input(input);
    settle(world, outputs);
}

fn advance<P, S>(world: &mut World<P, S>, millis: u64)
where
    P: Media<Output: Clone>,
    S: MediaSide<P::Output>,
{
    let outputs = world.harness.advance(Duration::from_millis(millis));
    settle(world, outputs);
}

/// Runs `ops` through `step` (which turns one into the machine's input, if any) until
/// they run out or the channel ends (nothing but engine answers reaches it then), then
/// finishes the channel.
fn drive<P, S, Op>(
    world: &mut World<P, S>,
    ops: Vec<Op>,
    shutdown: bool,
    mut step: impl FnMut(&mut World<P, S>, Op) -> Option<P::Input>,
) where
    P: Media<Output: Clone>,
    S: MediaSide<P::Output>,
{
    let outputs = world.harness.drain();
    settle(world, outputs);
    for op in ops {
        if world.harness.machine.is_ended() {
            break;
        }
        if let Some(media) = step(world, op) {
            feed(world, Input::Media(media));
        }
    }
    finish(world, shutdown);
}

/// Stops the channel and answers every call until it is finished, then checks the
/// final promises.
fn finish<P, S>(world: &mut World<P, S>, shutdown: bool)
where
    P: Media<Output: Clone>,
    S: MediaSide<P::Output>,
{
    let stop = if shutdown {
        Input::Shutdown
    } else {
        Input::Stop(EndReason::Deleted)
    };
    feed(world, stop);
    for _ in 0..1_000 {
        if world.harness.machine.is_finished() {
            break;
        }
        if let Some(input) = world.engines.answer_request(0, true) {
            feed(world, input);
        } else if let Some(input) = world.engines.answer_stop(0, true) {
            feed(world, input);
        } else {
            advance(world, 1_000);
        }
    }
    assert!(
        world.harness.machine.is_finished(),
        "the channel finishes once its calls are answered"
    );
    assert_eq!(
        world.harness.machine.poll_timeout(),
        None,
        "no timer after the finish"
    );
    world.engines.check_final();
}

/// One step of the engine side, shared by both drives.
#[derive(Clone, Debug)]
enum EngineOp {
    Grant(usize),
    Refuse(usize),
    ConfirmStop(usize),
    FailStop(usize),
    Exhaust(bool),
    Stats(usize, StatsOp),
    Advance(u64),
    Stop,
}

/// How the fake engine answers a stat poll.
#[derive(Clone, Copy, Debug)]
enum StatsOp {
    Healthy,
    Stuck,
    Fail,
}

#[derive(Clone, Copy)]
enum EngineOpKind {
    Grant,
    Refuse,
    ConfirmStop,
    FailStop,
    Exhaust,
    Stats,
    Stop,
    Advance,
    LongAdvance,
}

fn decode_engine_op(reader: &mut ByteReader<'_>) -> EngineOp {
    let kind = reader.weighted(&[
        (8, EngineOpKind::Grant),
        (2, EngineOpKind::Refuse),
        (4, EngineOpKind::ConfirmStop),
        (2, EngineOpKind::FailStop),
        (1, EngineOpKind::Exhaust),
        (4, EngineOpKind::Stats),
        (1, EngineOpKind::Stop),
        (20, EngineOpKind::Advance),
        (2, EngineOpKind::LongAdvance),
    ]);
    match kind {
        EngineOpKind::Grant => EngineOp::Grant(reader.index(4)),
        EngineOpKind::Refuse => EngineOp::Refuse(reader.index(4)),
        EngineOpKind::ConfirmStop => EngineOp::ConfirmStop(reader.index(4)),
        EngineOpKind::FailStop => EngineOp::FailStop(reader.index(4)),
        // Mostly available: an exhausted pool only fails requests.
        EngineOpKind::Exhaust => EngineOp::Exhaust(reader.below(4) == 0),
        EngineOpKind::Stats => EngineOp::Stats(
            reader.index(2),
            match reader.below(4) {
                0 => StatsOp::Fail,
                1 | 2 => StatsOp::Stuck,
                _ => StatsOp::Healthy,
            },
        ),
        EngineOpKind::Stop => EngineOp::Stop,
        EngineOpKind::Advance => EngineOp::Advance(reader.below(800)),
        EngineOpKind::LongAdvance => EngineOp::Advance(reader.below(30_000)),
    }
}

fn engine_step<P, S>(world: &mut World<P, S>, op: EngineOp)
where
    P: Media<Output: Clone>,
    S: MediaSide<P::Output>,
{
    let input = match op {
        EngineOp::Grant(index) => world.engines.answer_request(index, true),
        EngineOp::Refuse(index) => world.engines.answer_request(index, false),
        EngineOp::ConfirmStop(index) => world.engines.answer_stop(index, true),
        EngineOp::FailStop(index) => world.engines.answer_stop(index, false),
        EngineOp::Exhaust(exhausted) => {
            world.engines.exhausted = exhausted;
            None
        }
        EngineOp::Stats(index, answer) => world.engines.answer_stats(index, answer),
        EngineOp::Advance(millis) => {
            advance(world, millis);
            None
        }
        EngineOp::Stop => Some(Input::Stop(EndReason::Deleted)),
    };
    if let Some(input) = input {
        feed(world, input);
    }
}

mod hls;
mod ts;

pub use hls::hls_channel;
#[cfg(test)]
pub(crate) use hls::upstream_playlist;
pub use ts::ts_channel;
