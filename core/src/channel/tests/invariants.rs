//! Property test: random reports and clock moves, with the machine's promises
//! checked after every step by the driver in [`crate::fuzzing`].

use proptest::prelude::*;

use super::*;
use crate::fuzzing::channel::{run, Op, PORTS};

fn session_error() -> impl Strategy<Value = SessionError> {
    prop_oneof![
        Just(SessionError::Refused("refused".into())),
        Just(SessionError::Failed("failed".into())),
        Just(SessionError::Timeout),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => PORTS.prop_map(|port| Op::Ready { port }),
        1 => (PORTS, session_error()).prop_map(|(port, error)| Op::Failed { port, error }),
        1 => Just(Op::NoEngine),
        2 => Just(Op::Opened),
        1 => Just(Op::PlaybackFailed),
        1 => Just(Op::PlaybackEnded),
        8 => (0usize..3).prop_map(|bytes| Op::Data { bytes }),
        4 => (0usize..3).prop_map(Op::Viewers),
        1 => Just(Op::Stop),
        8 => (0u64..5_000).prop_map(|millis| Op::Advance { millis }),
        1 => (0u64..60_000).prop_map(|millis| Op::Advance { millis }),
        1 => (0u64..60_000).prop_map(|millis| Op::Jump { millis }),
        1 => Just(Op::Wake),
    ]
}

/// Any timing with non-zero durations (a zero stall timeout lets a reopen re-arm the
/// stall timer at `now`, so `handle_timeout` would leave a deadline due); counts
/// include zero.
fn config() -> impl Strategy<Value = ChannelConfig> {
    (
        (1u64..40_000, 1u64..15_000, 1u64..70_000, 1u64..20_000),
        (1u64..2_000, 1u64..8_000, 0u32..5, 0u32..5),
    )
        .prop_map(
            |((start, stall, recovery, idle), (initial, max, reconnects, attempts))| {
                ChannelConfig {
                    start_timeout: ms(start),
                    upstream_stall_timeout: ms(stall),
                    initial_backoff: ms(initial),
                    max_backoff: ms(max),
                    reconnects_per_session: reconnects,
                    session_attempts: attempts,
                    recovery_timeout: ms(recovery),
                    idle_grace: ms(idle),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_drives_keep_the_channel_invariants(
        config in config(),
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        run(config, ops);
    }
}
