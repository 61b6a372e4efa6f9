//! The HLS drive: fake players, waiters and fetches around an [`HlsChannel`].

use std::collections::BTreeMap;

use super::ts::numbered_packets;
use super::{
    decode_configs, decode_engine_op, drive, engine_step, EngineOp, Engines, MediaSide, World, T0,
};
use crate::channel::{
    FetchError, HlsChannel, HlsInput, HlsMedia, HlsMediaConfig, HlsOutput, WaiterId,
};
use crate::fuzzing::reader::ByteReader;
use crate::fuzzing::MAX_STEPS;
use crate::hls::{HlsConfig, UpstreamPlaylist, UpstreamSegment};
use crate::machine::Harness;
use crate::time::Duration;
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
    drive(&mut world, ops, shutdown, |world, op| match op {
        HlsOp::Engine(op) => {
            engine_step(world, op);
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
    });
    for (waiter, answered) in &world.side.waiters {
        assert!(answered, "waiter {waiter} was never answered");
    }
}

/// A live playlist of the newest (up to) five segments before `next`.
pub(crate) fn upstream_playlist(next: u64) -> UpstreamPlaylist {
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
