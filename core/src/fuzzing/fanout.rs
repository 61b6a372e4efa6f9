//! The TS fan-out under arbitrary upstream bytes, joins, readies, leaves and clock
//! moves, under any limits down to zero.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::reader::ByteReader;
use super::MAX_STEPS;
use crate::fanout::{Fanout, FanoutConfig, Input, Output, ViewerId};
use crate::time::{Duration, Instant};
use crate::ts::{self, PacketAligner, PACKET_LEN};

/// Most outputs drained after one step; more means the machine livelocks.
const MAX_OUTPUTS_PER_STEP: usize = 1_000;

/// One step of a drive: any bytes, any ids, any gaps in time.
#[derive(Clone, Debug)]
pub(crate) enum RawStep {
    Input(Input),
    Timeout { micros: u64 },
}

/// Drives a fan-out with a configuration and steps decoded from `data`; see [`run`]
/// for what is checked.
pub fn fanout(data: &[u8]) {
    let mut reader = ByteReader::new(data);
    let config = FanoutConfig {
        planted: crate::planted::Planted::NONE,
        ring_capacity_bytes: reader.index(2_000),
        viewer_stall_timeout: Duration::from_secs(reader.below(3)),
        keepalive_interval: Duration::from_secs(reader.below(3)),
        max_delivery_bytes: reader.index(600),
        max_viewers: reader.index(3),
        max_sync_wait_bytes: reader.index(3_000),
    };
    let steps = reader.steps(MAX_STEPS, decode_step);
    run(config, steps);
}

#[derive(Clone, Copy)]
enum StepKind {
    Bytes,
    Packets,
    Join,
    JoinAwaiting,
    Ready,
    Leave,
    NewStream,
    Timeout,
}

fn decode_step(reader: &mut ByteReader<'_>) -> RawStep {
    let viewer = |reader: &mut ByteReader<'_>| ViewerId(reader.below(4));
    let kind = reader.weighted(&[
        (3, StepKind::Bytes),
        (3, StepKind::Packets),
        (2, StepKind::Join),
        (1, StepKind::JoinAwaiting),
        (3, StepKind::Ready),
        (1, StepKind::Leave),
        (1, StepKind::NewStream),
        (2, StepKind::Timeout),
    ]);
    match kind {
        StepKind::Bytes => {
            let len = reader.index(600);
            RawStep::Input(Input::Data(Bytes::copy_from_slice(reader.bytes(len))))
        }
        // Packets with chosen headers (PIDs, flags, adaptation fields), each followed by
        // a little garbage, so that PATs and keyframes are common.
        StepKind::Packets => {
            let mut bytes = Vec::new();
            for _ in 0..1 + reader.index(5) {
                let mut packet = [0u8; PACKET_LEN];
                packet[0] = ts::SYNC_BYTE;
                let header = reader.bytes(5);
                packet[1..1 + header.len()].copy_from_slice(header);
                if reader.bool() {
                    // A video PES start, so that flagged packets are keyframes.
                    packet[6..10].copy_from_slice(&[0x00, 0x00, 0x01, 0xE0]);
                }
                bytes.extend_from_slice(&packet);
                bytes.extend(std::iter::repeat_n(0xAA, reader.index(3)));
            }
            RawStep::Input(Input::Data(bytes.into()))
        }
        StepKind::Join => RawStep::Input(Input::Join(viewer(reader))),
        StepKind::JoinAwaiting => RawStep::Input(Input::JoinAwaiting(viewer(reader))),
        StepKind::Ready => RawStep::Input(Input::Ready(viewer(reader))),
        StepKind::Leave => RawStep::Input(Input::Leave(viewer(reader))),
        StepKind::NewStream => RawStep::Input(Input::NewStream),
        StepKind::Timeout => RawStep::Timeout {
            micros: reader.below(3_000_000),
        },
    }
}

/// What the driver knows of one joined viewer.
struct Seen {
    /// Where its next delivery must start.
    next_offset: u64,
    /// Whether it may be handed something (it reported `Ready` since the last one).
    ready: bool,
    /// Whether it has been handed media yet.
    started: bool,
    /// Whether it joined awaiting its first media (no timer until then).
    awaiting: bool,
}

impl Seen {
    /// Whether the fan-out runs a timer for it.
    fn timed(&self) -> bool {
        self.started || !self.awaiting
    }
}

/// Drives the machine directly and checks what must hold for any configuration: no
/// panic, outputs drain, deliveries are non-empty, in order per viewer (the first one
/// at or after the join point) and exactly the aligned upstream bytes at their offset,
/// nothing goes to a viewer in flight, waiting or gone, and the stats agree.
pub(crate) fn run(config: FanoutConfig, steps: Vec<RawStep>) {
    let mut fanout = Fanout::new(config);
    let mut now = Instant::ZERO;
    // The aligned upstream, from an independent aligner fed the same bytes.
    let mut mirror = PacketAligner::new();
    let mut upstream: Vec<u8> = Vec::new();
    let mut viewers: BTreeMap<ViewerId, Seen> = BTreeMap::new();
    for step in steps {
        match step {
            RawStep::Input(input) => {
                match &input {
                    Input::Data(bytes) => upstream.extend_from_slice(&mirror.push(bytes.clone())),
                    Input::NewStream => mirror.new_stream(),
                    _ => {}
                }
                // An awaiting viewer may be handed media by its join itself: note where
                // it joins before that.
                let join_point = fanout.join_point();
                let ok = fanout.handle_input(now, input.clone()).is_ok();
                match input {
                    Input::Join(id) | Input::JoinAwaiting(id) if ok => {
                        assert!(fanout.has_viewer(id), "joined");
                        let next_offset = join_point;
                        let awaiting = matches!(input, Input::JoinAwaiting(_));
                        let seen = Seen {
                            next_offset,
                            ready: awaiting,
                            started: false,
                            awaiting,
                        };
                        assert!(viewers.insert(id, seen).is_none(), "joined twice");
                    }
                    Input::Ready(id) if ok => {
                        viewers.get_mut(&id).expect("known").ready = true;
                    }
                    Input::Leave(id) if ok => {
                        viewers.remove(&id);
                    }
                    Input::Data(_) => assert!(ok, "data is never refused"),
                    _ => {}
                }
            }
            RawStep::Timeout { micros } => {
                now = now + Duration::from_micros(micros);
                fanout.handle_timeout(now);
            }
        }
        for _ in 0..MAX_OUTPUTS_PER_STEP {
            let Some(output) = fanout.poll_output() else {
                break;
            };
            check_output(&fanout, &mut viewers, &upstream, output);
        }
        assert_eq!(fanout.poll_output(), None, "outputs drain");
        assert_eq!(fanout.viewer_count(), viewers.len());
        assert_eq!(
            fanout.poll_timeout().is_some(),
            viewers.values().any(Seen::timed),
            "a timer runs exactly when a viewer has one"
        );
        let stats = fanout.stats();
        assert_eq!(stats.live_offset, upstream.len() as u64);
        assert_eq!(stats.discarded_bytes, mirror.discarded_bytes());
        assert_eq!(stats.viewers, viewers.len());
        assert_eq!(
            stats.live_offset - stats.ring_start_offset,
            stats.ring_bytes as u64
        );
    }
}

fn check_output(
    fanout: &Fanout,
    viewers: &mut BTreeMap<ViewerId, Seen>,
    upstream: &[u8],
    output: Output,
) {
    match output {
        Output::Deliver {
            viewer,
            offset,
            chunks,
        } => {
            let seen = viewers
                .get_mut(&viewer)
                .expect("deliver to a joined viewer");
            assert!(seen.ready, "deliver in flight");
            assert!(!fanout.viewer_waiting(viewer), "deliver while waiting");
            if seen.started {
                assert_eq!(offset, seen.next_offset, "deliveries are contiguous");
            } else {
                assert!(offset >= seen.next_offset, "start before the join point");
            }
            let delivered: Vec<u8> = chunks.concat();
            assert!(!delivered.is_empty(), "empty delivery");
            let start = usize::try_from(offset).expect("offsets fit in memory");
            assert_eq!(
                upstream.get(start..start + delivered.len()),
                Some(&delivered[..]),
                "delivered bytes are the upstream's at their offset"
            );
            seen.next_offset = offset + delivered.len() as u64;
            seen.ready = false;
            seen.started = true;
        }
        Output::Keepalive { viewer, chunk } => {
            let seen = viewers
                .get_mut(&viewer)
                .expect("keepalive to a joined viewer");
            assert!(seen.ready, "keepalive in flight");
            assert!(
                seen.timed(),
                "keepalive before an awaiting viewer's first media"
            );
            assert!(
                ts::packets(&chunk).all(|packet| packet.pid() == ts::NULL_PID),
                "keepalives are null packets"
            );
            seen.ready = false;
        }
        Output::Drop { viewer, .. } => {
            assert!(viewers.remove(&viewer).is_some(), "drop of a joined viewer");
        }
    }
}
