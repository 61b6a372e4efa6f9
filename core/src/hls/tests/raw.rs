//! Anything at all, including inputs no driver sends (any generation, any number, any
//! playlist, any body, any gap in time) under any configuration: nothing panics,
//! outputs drain, deadlines lie ahead and the served numbering holds together.

use proptest::collection::vec;
use proptest::prelude::*;

use super::invariants::config;
use super::*;

/// One raw step.
#[derive(Clone, Debug)]
enum RawStep {
    Input(Input),
    Timeout { micros: u64 },
}

fn raw_playlist() -> impl Strategy<Value = UpstreamPlaylist> {
    let segment = (0u64..5_000_000, "[a-z]{0,2}", any::<bool>()).prop_map(
        |(duration_us, uri, discontinuity)| UpstreamSegment {
            duration_us,
            uri,
            discontinuity,
        },
    );
    let media_sequence = prop_oneof![0u64..30, Just(u64::MAX - 2), any::<u64>()];
    (
        0u64..5_000,
        media_sequence,
        vec(segment, 0..8),
        any::<bool>(),
    )
        .prop_map(
            |(target_duration_s, media_sequence, segments, ended)| UpstreamPlaylist {
                target_duration_s,
                media_sequence,
                segments,
                ended,
            },
        )
}

fn raw_step() -> impl Strategy<Value = RawStep> {
    let result = prop_oneof![
        3 => vec(any::<u8>(), 0..20).prop_map(|b| Ok(Bytes::from(b))),
        1 => Just(Err("x".to_string())),
    ];
    let upstream_seq = prop_oneof![0u64..30, any::<u64>()];
    prop_oneof![
        1 => Just(RawStep::Input(Input::Open { playlist_url: URL.into() })),
        1 => Just(RawStep::Input(Input::Close)),
        3 => (0u64..6, prop_oneof![3 => raw_playlist().prop_map(Ok), 1 => Just(Err("e".into()))])
            .prop_map(|(generation, result)| RawStep::Input(Input::PlaylistFetched {
                generation, result,
            })),
        5 => (0u64..6, upstream_seq, result).prop_map(|(generation, upstream_seq, result)| {
            RawStep::Input(Input::SegmentFetched { generation, upstream_seq, result })
        }),
        2 => (0u64..10_000_000).prop_map(|micros| RawStep::Timeout { micros }),
    ]
}

fn raw_run(config: HlsConfig, steps: Vec<RawStep>) {
    let mut session = HlsSession::new(config.clone());
    let mut now = Instant::ZERO;
    let mut next_seq = 0;
    for step in steps {
        match step {
            RawStep::Input(input) => session.handle_input(now, input),
            RawStep::Timeout { micros } => {
                now = now + Duration::from_micros(micros);
                session.handle_timeout(now);
            }
        }
        for _ in 0..10_000 {
            match session.poll_output() {
                Some(Output::SegmentReady { seq, .. }) => {
                    assert_eq!(seq, next_seq);
                    next_seq += 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        assert_eq!(session.poll_output(), None, "outputs drain");
        if let Some(deadline) = session.poll_timeout() {
            assert!(deadline > now);
        }
        let snapshot = session.snapshot();
        let held = snapshot.behind.len() + snapshot.segments.len();
        assert!(snapshot.segments.len() <= config.window_segments.max(1));
        assert!(held <= config.max_segments.max(1));
        let _ = snapshot.render(|seq| seq.to_string());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_inputs_never_panic(config in config(), steps in vec(raw_step(), 1..80)) {
        raw_run(config, steps);
    }
}
