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
//! - once stopped and with every call answered, the machine is finished.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::reader::ByteReader;
use super::MAX_STEPS;
use crate::channel::{
    ChannelConfig, ComposedChannel, EngineCallConfig, EngineSession, FetchError, HlsChannel,
    HlsInput, HlsMedia, HlsMediaConfig, HlsOutput, Input, Media, Output, PlaybackId, PoolChange,
    RequestId, SessionError, StopId, TsChannel, TsInput, TsMedia, TsOutput, WaiterId,
};
use crate::fanout::{FanoutConfig, ViewerId};
use crate::hls::{HlsConfig, UpstreamPlaylist, UpstreamSegment};
use crate::lifecycle::{EndReason, EngineAddr, SessionInfo};
use crate::machine::Harness;
use crate::time::{Duration, Instant};
use crate::ts::{self, PACKET_LEN};

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
        request_timeout: millis(1, 8_000),
        late_answer_factor: 2,
        late_answer_min: millis(1, 20_000),
        max_late_requests: 0,
        stop_attempts: 0,
        stop_retry_initial: millis(1, 3_000),
    };
    let channel = ChannelConfig {
        reconnects_per_session: reader.below(4) as u32,
        session_attempts: reader.below(4) as u32,
        ..channel
    };
    let calls = EngineCallConfig {
        max_late_requests: reader.index(4),
        stop_attempts: reader.below(5) as u32,
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
            Output::Pool(PoolChange::Failed(_)) => {}
            Output::Started(session) => {
                let url = session.session.command_url;
                assert!(!self.stopped.contains(&url), "started after its stop");
                assert!(self.started.insert(url.clone()), "{url} started twice");
            }
            Output::SessionEnded { session, .. } => {
                let url = session.session.command_url;
                assert!(self.started.contains(&url), "{url} ended before it started");
                assert!(self.ended.insert(url.clone()), "{url} ended twice");
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
    Advance(u64),
    Stop,
}

#[derive(Clone, Copy)]
enum EngineOpKind {
    Grant,
    Refuse,
    ConfirmStop,
    FailStop,
    Exhaust,
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

// ---------------------------------------------------------------------------------
// TS

/// What a fake TS viewer has seen.
#[derive(Default)]
struct Viewer {
    /// A delivery or keepalive is being written.
    in_flight: bool,
    started: bool,
    closed: bool,
    last_packet: Option<u64>,
}

/// The TS side: viewers and the playback connection.
struct TsSide {
    viewers: BTreeMap<ViewerId, Viewer>,
    next_viewer: u64,
    playback: Option<PlaybackId>,
    closed_playbacks: BTreeSet<PlaybackId>,
    next_packet: u64,
}

impl MediaSide<TsOutput> for TsSide {
    fn check(&mut self, output: TsOutput) {
        match output {
            TsOutput::OpenPlayback { playback, .. } => {
                assert!(self.playback.is_none(), "two playbacks open");
                self.playback = Some(playback);
            }
            TsOutput::ClosePlayback(playback) => {
                assert_eq!(self.playback, Some(playback), "closed a playback not open");
                self.playback = None;
                self.closed_playbacks.insert(playback);
            }
            TsOutput::Deliver {
                viewer,
                chunks,
                first,
            } => {
                let seen = self
                    .viewers
                    .get_mut(&viewer)
                    .expect("deliver to a joined viewer");
                assert!(!seen.closed, "deliver after close");
                assert!(!seen.in_flight, "deliver while in flight");
                assert_eq!(first, !seen.started, "first media flagged as such");
                seen.started = true;
                seen.in_flight = true;
                let bytes: Vec<u8> = chunks.concat();
                assert!(!bytes.is_empty(), "empty delivery");
                for packet in ts::packets(&bytes) {
                    if packet.pid() == ts::NULL_PID {
                        continue;
                    }
                    let number = packet_number(packet.bytes());
                    if let Some(last) = seen.last_packet {
                        assert!(
                            number > last,
                            "packet {number} after {last}: twice or out of order"
                        );
                    }
                    seen.last_packet = Some(number);
                }
            }
            TsOutput::Keepalive { viewer, .. } => {
                let seen = self
                    .viewers
                    .get_mut(&viewer)
                    .expect("keepalive to a joined viewer");
                assert!(!seen.closed, "keepalive after close");
                assert!(!seen.in_flight, "keepalive while in flight");
                assert!(seen.started, "keepalive before the first media");
                seen.in_flight = true;
            }
            TsOutput::Close { viewer, .. } => {
                let seen = self
                    .viewers
                    .get_mut(&viewer)
                    .expect("close of a joined viewer");
                assert!(!seen.closed, "closed twice");
                seen.closed = true;
            }
            TsOutput::Discarded { .. } => {}
        }
    }
}

/// The number a generated packet carries in its last 8 bytes.
fn packet_number(packet: &[u8; PACKET_LEN]) -> u64 {
    let mut number = [0u8; 8];
    number.copy_from_slice(&packet[PACKET_LEN - 8..]);
    u64::from_be_bytes(number)
}

/// `count` numbered packets from `first`; `clean` starts with a PAT and a keyframe.
fn numbered_packets(first: u64, count: u64, clean: bool) -> Bytes {
    let mut bytes = Vec::new();
    for (index, number) in (first..first + count).enumerate() {
        let mut packet = [0u8; PACKET_LEN];
        let header: &[u8] = match (clean, index) {
            (true, 0) => &[0x47, 0x40, 0x00, 0x10],
            // A video PES start flagged as a random access point.
            (true, 1) => &[0x47, 0x41, 0x00, 0x30, 0x01, 0x40, 0x00, 0x00, 0x01, 0xE0],
            _ => &[0x47, 0x01, 0x00, 0x10],
        };
        packet[..header.len()].copy_from_slice(header);
        packet[PACKET_LEN - 8..].copy_from_slice(&number.to_be_bytes());
        bytes.extend_from_slice(&packet);
    }
    bytes.into()
}

#[derive(Clone, Debug)]
enum TsOp {
    Engine(EngineOp),
    Join,
    Ready(usize),
    Leave(usize),
    Opened {
        stale: bool,
    },
    Data {
        packets: u64,
        clean: bool,
        junk: usize,
    },
    PlaybackFailed,
    PlaybackEnded,
}

fn decode_ts_op(reader: &mut ByteReader<'_>) -> TsOp {
    match reader.below(40) {
        0..=9 => TsOp::Engine(decode_engine_op(reader)),
        10..=13 => TsOp::Join,
        14..=21 => TsOp::Ready(reader.index(8)),
        22 | 23 => TsOp::Leave(reader.index(8)),
        24..=26 => TsOp::Opened {
            stale: reader.below(4) == 0,
        },
        27..=37 => TsOp::Data {
            packets: reader.range(1, 20),
            clean: reader.bool(),
            junk: reader.index(3) * 50,
        },
        38 => TsOp::PlaybackFailed,
        _ => TsOp::PlaybackEnded,
    }
}

/// Drives a [`TsChannel`] with a configuration and steps decoded from `data`; see the
/// module docs for what is checked.
pub fn ts_channel(data: &[u8]) {
    let mut reader = ByteReader::new(data);
    let (channel, calls) = decode_configs(&mut reader);
    let fanout = FanoutConfig {
        ring_capacity_bytes: reader.range(1, 40) as usize * PACKET_LEN,
        viewer_stall_timeout: Duration::from_millis(reader.range(1, 15_000)),
        keepalive_interval: Duration::from_millis(reader.range(1, 3_000)),
        max_delivery_bytes: reader.range(1, 10) as usize * PACKET_LEN,
        max_viewers: reader.index(5),
        max_sync_wait_bytes: reader.index(20) * PACKET_LEN,
    };
    let first_media = Duration::from_millis(reader.range(1, 20_000));
    let shutdown = reader.bool();
    let ops = reader.steps(MAX_STEPS, decode_ts_op);
    run_ts(channel, calls, fanout, first_media, shutdown, ops);
}

fn run_ts(
    channel: ChannelConfig,
    calls: EngineCallConfig,
    fanout: FanoutConfig,
    first_media: Duration,
    shutdown: bool,
    ops: Vec<TsOp>,
) {
    let machine = TsChannel::new(T0, channel, calls, TsMedia::new(fanout, first_media));
    let mut world = World {
        harness: Harness::new(machine, T0),
        engines: Engines::default(),
        side: TsSide {
            viewers: BTreeMap::new(),
            next_viewer: 1,
            playback: None,
            closed_playbacks: BTreeSet::new(),
            next_packet: 1,
        },
    };
    let outputs = world.harness.drain();
    settle(&mut world, outputs);
    for op in ops {
        if world.harness.machine.is_ended() {
            // Nothing reaches an ended channel but its engine calls' answers.
            break;
        }
        let media = match op {
            TsOp::Engine(op) => {
                engine_step(&mut world, op);
                None
            }
            TsOp::Join => {
                let viewer = ViewerId(world.side.next_viewer);
                world.side.next_viewer += 1;
                world.side.viewers.insert(viewer, Viewer::default());
                Some(TsInput::Join(viewer))
            }
            TsOp::Ready(index) => pick_viewer(&world.side.viewers, index, |seen| seen.in_flight)
                .map(|viewer| {
                    if let Some(seen) = world.side.viewers.get_mut(&viewer) {
                        seen.in_flight = false;
                    }
                    TsInput::Ready(viewer)
                }),
            TsOp::Leave(index) => {
                pick_viewer(&world.side.viewers, index, |seen| !seen.closed).map(|viewer| {
                    if let Some(seen) = world.side.viewers.get_mut(&viewer) {
                        seen.closed = true;
                    }
                    TsInput::Leave(viewer)
                })
            }
            TsOp::Opened { stale } => {
                let playback = if stale {
                    world.side.closed_playbacks.last().copied()
                } else {
                    world.side.playback
                };
                playback.map(TsInput::PlaybackOpened)
            }
            TsOp::Data {
                packets,
                clean,
                junk,
            } => world.side.playback.map(|playback| {
                let mut bytes = numbered_packets(world.side.next_packet, packets, clean).to_vec();
                world.side.next_packet += packets;
                bytes.extend(std::iter::repeat_n(0xAA, junk));
                TsInput::PlaybackData(playback, bytes.into())
            }),
            TsOp::PlaybackFailed => world.side.playback.take().map(|playback| {
                world.side.closed_playbacks.insert(playback);
                TsInput::PlaybackFailed(playback, "reset".into())
            }),
            TsOp::PlaybackEnded => world.side.playback.take().map(|playback| {
                world.side.closed_playbacks.insert(playback);
                TsInput::PlaybackEnded(playback)
            }),
        };
        if let Some(media) = media {
            feed(&mut world, Input::Media(media));
        }
    }
    finish(&mut world, shutdown);
    for (viewer, seen) in &world.side.viewers {
        assert!(seen.closed, "viewer {viewer} was never answered");
    }
}

/// Viewer number `index` among those for which `filter` holds.
fn pick_viewer(
    viewers: &BTreeMap<ViewerId, Viewer>,
    index: usize,
    filter: impl Fn(&Viewer) -> bool,
) -> Option<ViewerId> {
    let candidates: Vec<ViewerId> = viewers
        .iter()
        .filter(|(_, seen)| filter(seen))
        .map(|(id, _)| *id)
        .collect();
    candidates.get(index % candidates.len().max(1)).copied()
}

// ---------------------------------------------------------------------------------
// HLS

/// The HLS side: waiting players and the fetches asked for.
struct HlsSide {
    /// Waiters asked, and whether they were answered.
    waiters: BTreeMap<WaiterId, bool>,
    next_waiter: u64,
    playlist_fetches: Vec<(u64, String)>,
    segment_fetches: Vec<(u64, u64)>,
    last_published: (u64, u64),
    /// Upstream: the next segment number the fake engine adds.
    upstream_next: u64,
}

impl MediaSide<HlsOutput> for HlsSide {
    fn check(&mut self, output: HlsOutput) {
        match output {
            HlsOutput::FetchPlaylist { generation, url } => {
                self.playlist_fetches.push((generation, url));
            }
            HlsOutput::FetchSegment {
                generation,
                upstream_seq,
                ..
            } => self.segment_fetches.push((generation, upstream_seq)),
            HlsOutput::Publish(snapshot) => {
                let now = (snapshot.media_sequence, snapshot.discontinuity_sequence);
                assert!(
                    now.0 >= self.last_published.0 && now.1 >= self.last_published.1,
                    "published sequences went back: {now:?} after {:?}",
                    self.last_published
                );
                self.last_published = now;
            }
            HlsOutput::Answer { waiter, .. } => {
                let answered = self
                    .waiters
                    .get_mut(&waiter)
                    .expect("answer to a known waiter");
                assert!(!*answered, "waiter {waiter} answered twice");
                *answered = true;
            }
            HlsOutput::Ready
            | HlsOutput::Gap(_)
            | HlsOutput::PlaylistBackoff { .. }
            | HlsOutput::UpstreamEnded => {}
        }
    }
}

#[derive(Clone, Debug)]
enum HlsOp {
    Engine(EngineOp),
    Seen(u8),
    Wait,
    Playlist {
        index: usize,
        new_segments: u64,
        fail: bool,
    },
    Segment {
        index: usize,
        fail: bool,
    },
}

fn decode_hls_op(reader: &mut ByteReader<'_>) -> HlsOp {
    match reader.below(20) {
        0..=5 => HlsOp::Engine(decode_engine_op(reader)),
        6 | 7 => HlsOp::Seen(reader.u8() % 4),
        8 => HlsOp::Wait,
        9..=13 => HlsOp::Playlist {
            index: reader.index(3),
            new_segments: reader.below(4),
            fail: reader.below(6) == 0,
        },
        _ => HlsOp::Segment {
            index: reader.index(3),
            fail: reader.below(6) == 0,
        },
    }
}

/// Drives an [`HlsChannel`] with a configuration and steps decoded from `data`; see
/// the module docs for what is checked.
pub fn hls_channel(data: &[u8]) {
    let mut reader = ByteReader::new(data);
    let (channel, calls) = decode_configs(&mut reader);
    let media = HlsMediaConfig {
        hls: HlsConfig {
            ready_segments: reader.range(1, 4) as usize,
            ..HlsConfig::default()
        },
        idle_timeout: Duration::from_millis(reader.range(1, 20_000)),
        first_playlist_timeout: Duration::from_millis(reader.range(1, 20_000)),
        max_waiters: reader.index(6),
        max_players: reader.index(6),
    };
    let shutdown = reader.bool();
    let ops = reader.steps(MAX_STEPS, decode_hls_op);
    let machine = HlsChannel::new(T0, channel, calls, HlsMedia::new(media));
    let mut world = World {
        harness: Harness::new(machine, T0),
        engines: Engines::default(),
        side: HlsSide {
            waiters: BTreeMap::new(),
            next_waiter: 1,
            playlist_fetches: Vec::new(),
            segment_fetches: Vec::new(),
            last_published: (0, 0),
            upstream_next: 0,
        },
    };
    let outputs = world.harness.drain();
    settle(&mut world, outputs);
    for op in ops {
        if world.harness.machine.is_ended() {
            break;
        }
        let media = match op {
            HlsOp::Engine(op) => {
                engine_step(&mut world, op);
                None
            }
            HlsOp::Seen(player) => Some(HlsInput::PlayerSeen(format!("player{player}"))),
            HlsOp::Wait => {
                let waiter = WaiterId(world.side.next_waiter);
                world.side.next_waiter += 1;
                world.side.waiters.insert(waiter, false);
                Some(HlsInput::WaitReady(waiter))
            }
            HlsOp::Playlist {
                index,
                new_segments,
                fail,
            } => take(&mut world.side.playlist_fetches, index).map(|(generation, url)| {
                let result = if fail {
                    Err(FetchError::Status { url, status: 502 })
                } else {
                    world.side.upstream_next += new_segments;
                    Ok(upstream_playlist(world.side.upstream_next))
                };
                HlsInput::PlaylistFetched { generation, result }
            }),
            HlsOp::Segment { index, fail } => {
                take(&mut world.side.segment_fetches, index).map(|(generation, upstream_seq)| {
                    let result = if fail {
                        Err(FetchError::Timeout {
                            url: "segment".into(),
                        })
                    } else {
                        Ok(numbered_packets(upstream_seq, 2, true))
                    };
                    HlsInput::SegmentFetched {
                        generation,
                        upstream_seq,
                        result,
                    }
                })
            }
        };
        if let Some(media) = media {
            feed(&mut world, Input::Media(media));
        }
    }
    finish(&mut world, shutdown);
    for (waiter, answered) in &world.side.waiters {
        assert!(answered, "waiter {waiter} was never answered");
    }
}

/// A live playlist of the newest (up to) five segments before `next`.
fn upstream_playlist(next: u64) -> UpstreamPlaylist {
    let first = next.saturating_sub(5);
    UpstreamPlaylist {
        target_duration_s: 2,
        media_sequence: first,
        segments: (first..next)
            .map(|n| UpstreamSegment {
                duration_us: 2_000_000,
                uri: format!("http://engine:1/seg/{n}.ts"),
                discontinuity: false,
            })
            .collect(),
        ended: false,
    }
}

fn take<T>(items: &mut Vec<T>, index: usize) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    let index = index % items.len();
    Some(items.remove(index))
}
