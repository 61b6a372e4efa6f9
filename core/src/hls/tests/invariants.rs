//! Random drives: a fake engine whose playlist grows, slides, jumps and restarts, a
//! driver that answers fetches late, out of order, twice or for old generations, and
//! random configurations down to zero. The session's promises are checked after every
//! step by the driver in [`crate::fuzzing`].

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::fuzzing::hls::{run, Change, Op};

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        2 => Just(Change::Same),
        6 => (1u64..4).prop_map(Change::Grow),
        4 => (1u64..4).prop_map(Change::Slide),
        1 => (1u64..30).prop_map(Change::Jump),
        1 => (0u64..5).prop_map(Change::Reset),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Open),
        1 => Just(Op::Close),
        8 => (change(), prop::bool::weighted(0.05), prop::bool::weighted(0.1),
              prop::bool::weighted(0.05), prop::bool::weighted(0.05))
            .prop_map(|(change, ended, discontinuity, invalid, stale)| Op::Playlist {
                change, ended, discontinuity, invalid, stale,
            }),
        1 => Just(Op::PlaylistError),
        12 => (0usize..4, prop::bool::weighted(0.85), 1usize..40)
            .prop_map(|(pick, ok, size)| Op::Segment { pick, ok, size }),
        1 => (0u64..40).prop_map(|upstream_seq| Op::Unasked { upstream_seq }),
        4 => (0u64..3_000).prop_map(|millis| Op::Advance { millis }),
        1 => (0u64..20_000).prop_map(|millis| Op::Late { millis }),
        1 => Just(Op::Wake),
    ]
}

pub(super) fn config() -> impl Strategy<Value = HlsConfig> {
    (
        (0u32..1500, 0u64..500, 0u64..2_000, 0u64..8_000, 0u64..1_000),
        (
            0usize..4,
            0u32..4,
            0usize..13,
            0usize..6,
            0usize..6,
            0usize..8,
        ),
        prop_oneof![3 => Just(usize::MAX), 1 => 0usize..200],
    )
        .prop_map(
            |(
                (factor, min_poll, initial, max, retry),
                (concurrent, attempts, segments, start, ready, window),
                max_bytes,
            )| HlsConfig {
                planted: crate::planted::Planted::NONE,
                first_seq: 0,
                poll_factor_permille: factor,
                min_poll_interval: ms(min_poll),
                max_poll_interval: ms(min_poll + 10_000),
                error_backoff_initial: ms(initial),
                error_backoff_max: ms(max),
                max_concurrent_fetches: concurrent,
                segment_attempts: attempts,
                segment_retry_delay: ms(retry),
                max_segments: segments,
                max_buffer_bytes: max_bytes,
                start_segments: start,
                ready_segments: ready,
                window_segments: window,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_drives_keep_every_promise(config in config(), ops in vec(op(), 1..200)) {
        run(config, ops);
    }
}
