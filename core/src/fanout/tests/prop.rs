//! Random input sequences: upstream data in random chunks (split mid-packet, with
//! garbage), joins, readies and leaves of a few viewers, and clock advances. The
//! harness checks every output and the machine's state after every step; see
//! [`Harness`] for the invariants.

use proptest::collection::vec;

use proptest::prelude::*;

use super::*;
use crate::fuzzing::fanout::{run as raw_run, RawStep};

/// Viewer ids in play; one more than `max_viewers`, so that joins get refused.
const VIEWERS: u64 = 3;

#[derive(Clone, Debug)]
enum Kind {
    Pat,
    Keyframe,
    Frame,
    Garbage(Vec<u8>),
}

#[derive(Clone, Debug)]
enum Step {
    /// Upstream bytes: `kinds` are appended to what is not sent yet, of which the first
    /// `take` bytes are sent (so packets split anywhere).
    Data {
        kinds: Vec<Kind>,
        take: usize,
    },
    Join(u64),
    Ready(u64),
    Leave(u64),
    /// The viewer answers every delivery with `Ready` at once (or stops doing so).
    Fast(u64, bool),
    /// The clock moves on; the driver wakes the machine, or not yet.
    Advance {
        millis: u64,
        wake: bool,
    },
}

#[derive(Clone, Debug)]
struct Case {
    ring_packets: usize,
    max_delivery_bytes: usize,
    max_sync_wait_bytes: usize,
    steps: Vec<Step>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        2 => Just(Kind::Pat),
        2 => Just(Kind::Keyframe),
        6 => Just(Kind::Frame),
        1 => vec(any::<u8>(), 1..40).prop_map(Kind::Garbage),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let viewer = 0..VIEWERS;
    prop_oneof![
        6 => (vec(kind(), 0..8), 0usize..1600)
            .prop_map(|(kinds, take)| Step::Data { kinds, take }),
        2 => viewer.clone().prop_map(Step::Join),
        4 => viewer.clone().prop_map(Step::Ready),
        1 => viewer.clone().prop_map(Step::Leave),
        1 => (viewer, any::<bool>()).prop_map(|(id, fast)| Step::Fast(id, fast)),
        2 => (0u64..3000, any::<bool>())
            .prop_map(|(millis, wake)| Step::Advance { millis, wake }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let max_delivery = prop_oneof![1 => 1usize..200, 3 => 188usize..3000];
    // No waiting, waits shorter or longer than the ring, and the default.
    let max_sync_wait = prop_oneof![
        1 => Just(0usize),
        4 => 1usize..6000,
        1 => Just(FanoutConfig::default().max_sync_wait_bytes),
    ];
    (2usize..30, max_delivery, max_sync_wait, vec(step(), 1..80)).prop_map(
        |(ring_packets, max_delivery_bytes, max_sync_wait_bytes, steps)| Case {
            ring_packets,
            max_delivery_bytes,
            max_sync_wait_bytes,
            steps,
        },
    )
}

fn run(case: Case) {
    let config = FanoutConfig {
        planted: crate::planted::Planted::NONE,
        ring_capacity_bytes: case.ring_packets * PACKET_LEN,
        viewer_stall_timeout: Duration::from_secs(4),
        keepalive_interval: Duration::from_secs(1),
        max_delivery_bytes: case.max_delivery_bytes,
        max_viewers: 2,
        max_sync_wait_bytes: case.max_sync_wait_bytes,
    };
    let mut h = Harness::new(config);
    let mut stream = Stream::default();
    let mut unsent = Vec::new();
    for step in case.steps {
        match step {
            Step::Data { kinds, take } => {
                for kind in kinds {
                    match kind {
                        Kind::Pat => unsent.extend(stream.pat()),
                        Kind::Keyframe => unsent.extend(stream.keyframe()),
                        Kind::Frame => unsent.extend(stream.frame()),
                        Kind::Garbage(bytes) => unsent.extend(bytes),
                    }
                }
                let sent: Vec<u8> = unsent.drain(..take.min(unsent.len())).collect();
                h.data(sent);
            }
            // Results are checked against the model inside the harness.
            Step::Join(id) => drop(h.join(ViewerId(id))),
            Step::Ready(id) => drop(h.ready(ViewerId(id))),
            Step::Leave(id) => drop(h.leave(ViewerId(id))),
            Step::Fast(id, fast) => h.set_fast(ViewerId(id), fast),
            Step::Advance { millis, wake: true } => h.advance(Duration::from_millis(millis)),
            Step::Advance {
                millis,
                wake: false,
            } => {
                h.set_now(h.now + Duration::from_millis(millis));
            }
        }
    }
    // Every viewer, present or gone, received exactly the upstream from its start on:
    // its join point, or where its wait for a clean start ended.
    let all = h
        .viewers
        .values()
        .chain(h.gone.iter().map(|(_, seen)| seen));
    for seen in all {
        assert!(seen.start_offset >= seen.join_offset);
        assert!(!seen.waiting || seen.received.is_empty());
        let range = seen.start_offset as usize..seen.next_offset as usize;
        assert_eq!(seen.received, h.aligned[range]);
    }
}

fn raw_step() -> impl Strategy<Value = RawStep> {
    let id = (0u64..4).prop_map(ViewerId);
    prop_oneof![
        3 => vec(any::<u8>(), 0..600).prop_map(|b| RawStep::Input(Input::Data(b.into()))),
        // Packets with random headers (PIDs, flags, adaptation fields) and garbage.
        3 => vec((any::<[u8; 5]>(), 0usize..3), 1..6).prop_map(|packets| {
            let mut bytes = Vec::new();
            for (header, garbage) in packets {
                let mut packet = [0u8; PACKET_LEN];
                packet[0] = ts::SYNC_BYTE;
                packet[1..6].copy_from_slice(&header);
                bytes.extend_from_slice(&packet);
                bytes.extend(std::iter::repeat_n(0xAA, garbage));
            }
            RawStep::Input(Input::Data(bytes.into()))
        }),
        2 => id.clone().prop_map(|id| RawStep::Input(Input::Join(id))),
        3 => id.clone().prop_map(|id| RawStep::Input(Input::Ready(id))),
        1 => id.prop_map(|id| RawStep::Input(Input::Leave(id))),
        1 => Just(RawStep::Input(Input::NewStream)),
        2 => (0u64..3_000_000).prop_map(|micros| RawStep::Timeout { micros }),
    ]
}

fn any_config() -> impl Strategy<Value = FanoutConfig> {
    (
        0usize..2000,
        0u64..3,
        0u64..3,
        0usize..600,
        0usize..3,
        0usize..3000,
    )
        .prop_map(
            |(ring, stall, keepalive, delivery, max_viewers, sync_wait)| FanoutConfig {
                planted: crate::planted::Planted::NONE,
                ring_capacity_bytes: ring,
                viewer_stall_timeout: Duration::from_secs(stall),
                keepalive_interval: Duration::from_secs(keepalive),
                max_delivery_bytes: delivery,
                max_viewers,
                max_sync_wait_bytes: sync_wait,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_inputs_under_any_limits_never_panic(
        config in any_config(),
        steps in vec(raw_step(), 1..60),
    ) {
        raw_run(config, steps);
    }

    #[test]
    fn random_inputs_give_every_viewer_the_exact_stream_from_its_start(case in case()) {
        run(case);
    }
}
