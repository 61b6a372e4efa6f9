//! The TS drive: fake viewers and a fake playback body around a [`TsChannel`].

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::{
    decode_configs, decode_engine_op, drive, engine_step, EngineOp, Engines, MediaSide, World, T0,
};
use crate::channel::{
    ChannelConfig, CutHlsConfig, EngineCallConfig, PlaybackId, TsChannel, TsInput, TsMedia,
    TsOutput, WaiterId,
};
use crate::fanout::{FanoutConfig, ViewerId};
use crate::fuzzing::reader::ByteReader;
use crate::fuzzing::MAX_STEPS;
use crate::machine::Harness;
use crate::time::Duration;
use crate::ts::segmenter::SegmenterConfig;
use crate::ts::{self, PACKET_LEN};

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
    /// HLS players waiting for the first playlist, and those answered.
    waiting: BTreeSet<WaiterId>,
    next_waiter: u64,
    /// A ready playlist was published.
    ready: bool,
    /// The last published media and discontinuity sequences.
    sequences: (u64, u64),
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
            TsOutput::Discarded { .. } | TsOutput::HlsReady => {}
            TsOutput::SegmentCut { duration_us, .. } => assert!(duration_us >= 1),
            TsOutput::Publish(snapshot) => {
                let sequences = (snapshot.media_sequence, snapshot.discontinuity_sequence);
                assert!(sequences.0 >= self.sequences.0, "media sequence went back");
                assert!(
                    sequences.1 >= self.sequences.1,
                    "discontinuity sequence went back"
                );
                self.sequences = sequences;
                self.ready |= snapshot.ready;
                for segment in &snapshot.segments {
                    assert_eq!(segment.body.len() % PACKET_LEN, 0, "whole packets");
                    assert!(segment.duration_us >= 1);
                }
            }
            TsOutput::Answer { waiter, result } => {
                assert!(
                    self.waiting.remove(&waiter),
                    "{waiter:?} answered twice or unasked"
                );
                if result.is_ok() {
                    assert!(self.ready, "answered before a ready playlist was published");
                }
            }
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
pub(super) fn numbered_packets(first: u64, count: u64, clean: bool) -> Bytes {
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
    PlayerSeen(u8),
    WaitReady,
}

fn decode_ts_op(reader: &mut ByteReader<'_>) -> TsOp {
    match reader.below(43) {
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
        39 => TsOp::PlaybackEnded,
        40 | 41 => TsOp::PlayerSeen(reader.u8() % 4),
        _ => TsOp::WaitReady,
    }
}

/// Drives a [`TsChannel`] with a configuration and steps decoded from `data`; see the
/// module docs for what is checked.
pub fn ts_channel(data: &[u8]) {
    let mut reader = ByteReader::new(data);
    let (channel, calls) = decode_configs(&mut reader);
    let fanout = FanoutConfig {
        planted: crate::planted::Planted::NONE,
        ring_capacity_bytes: reader.range(1, 40) as usize * PACKET_LEN,
        viewer_stall_timeout: Duration::from_millis(reader.range(1, 15_000)),
        keepalive_interval: Duration::from_millis(reader.range(1, 3_000)),
        max_delivery_bytes: reader.range(1, 10) as usize * PACKET_LEN,
        max_viewers: reader.index(5),
        max_sync_wait_bytes: reader.index(20) * PACKET_LEN,
    };
    let first_media = Duration::from_millis(reader.range(1, 20_000));
    let shutdown = reader.bool();
    let cut = reader.bool().then(|| CutHlsConfig {
        segmenter: SegmenterConfig::with_target(Duration::from_millis(reader.range(100, 4_000))),
        max_segments: reader.index(8),
        ready_segments: reader.index(4),
        window_segments: reader.index(6),
        max_waiters: reader.index(4),
        idle_timeout: Duration::from_millis(reader.range(1, 30_000)),
        first_playlist_timeout: first_media,
        ..CutHlsConfig::default()
    });
    let ops = reader.steps(MAX_STEPS, decode_ts_op);
    run_ts(channel, calls, fanout, first_media, shutdown, cut, ops);
}

fn run_ts(
    channel: ChannelConfig,
    calls: EngineCallConfig,
    fanout: FanoutConfig,
    first_media: Duration,
    shutdown: bool,
    cut: Option<CutHlsConfig>,
    ops: Vec<TsOp>,
) {
    let mut media = TsMedia::new(fanout, first_media);
    if let Some(cut) = cut {
        media = media.with_hls(cut);
    }
    let machine = TsChannel::new(T0, channel, calls, media);
    let mut world = World {
        harness: Harness::new(machine, T0),
        engines: Engines::default(),
        side: TsSide {
            viewers: BTreeMap::new(),
            next_viewer: 1,
            playback: None,
            closed_playbacks: BTreeSet::new(),
            next_packet: 1,
            waiting: BTreeSet::new(),
            next_waiter: 1,
            ready: false,
            sequences: (0, 0),
        },
    };
    drive(&mut world, ops, shutdown, |world, op| match op {
        TsOp::Engine(op) => {
            engine_step(world, op);
            None
        }
        TsOp::Join => {
            let viewer = ViewerId(world.side.next_viewer);
            world.side.next_viewer += 1;
            world.side.viewers.insert(viewer, Viewer::default());
            Some(TsInput::Join(viewer))
        }
        TsOp::Ready(index) => {
            pick_viewer(&world.side.viewers, index, |seen| seen.in_flight).map(|viewer| {
                if let Some(seen) = world.side.viewers.get_mut(&viewer) {
                    seen.in_flight = false;
                }
                TsInput::Ready(viewer)
            })
        }
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
        TsOp::PlayerSeen(token) => Some(TsInput::PlayerSeen(format!("player-{token}"))),
        TsOp::WaitReady => {
            let waiter = WaiterId(world.side.next_waiter);
            world.side.next_waiter += 1;
            world.side.waiting.insert(waiter);
            Some(TsInput::WaitReady(waiter))
        }
    });
    for (viewer, seen) in &world.side.viewers {
        assert!(seen.closed, "viewer {viewer} was never answered");
    }
    assert!(
        world.side.waiting.is_empty(),
        "players never answered: {:?}",
        world.side.waiting
    );
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
