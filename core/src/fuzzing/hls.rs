//! The HLS session against a fake engine whose playlist grows, slides, jumps and
//! restarts, and a driver that answers fetches late, out of order, twice or for old
//! generations, under configurations down to zero. The session's promises are checked
//! after every step; see [`Checker`].

use std::collections::BTreeMap;

use bytes::Bytes;

use super::reader::ByteReader;
use super::MAX_STEPS;
use crate::hls::{
    HlsConfig, HlsSession, HlsSnapshot, Input, Output, ServedSegment, UpstreamPlaylist,
    UpstreamSegment,
};
use crate::machine::Harness;
use crate::time::{Duration, Instant};

/// Where the clock starts: not zero, so that a deadline computed from the wrong origin
/// shows.
const T0: Instant = Instant::from_micros(1_000_000_000);

/// The engine's playlist URL.
const URL: &str = "http://engine:6878/ace/m/abc/live.m3u8";

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Drives an HLS session with a configuration and steps decoded from `data`, checking
/// the session's promises after every step.
pub fn hls(data: &[u8]) {
    let mut reader = ByteReader::new(data);
    let config = decode_config(&mut reader);
    let ops = reader.steps(MAX_STEPS, decode_op);
    run(config, ops);
}

/// The same ranges as the property test's configurations: limits down to zero.
fn decode_config(reader: &mut ByteReader<'_>) -> HlsConfig {
    let poll_factor_permille = reader.below(1500) as u32;
    let min_poll_millis = reader.below(500);
    HlsConfig {
        planted: crate::planted::Planted::NONE,
        // The model numbers served segments from 0.
        first_seq: 0,
        poll_factor_permille,
        min_poll_interval: ms(min_poll_millis),
        // Derived rather than read, so committed inputs keep decoding the same way.
        max_poll_interval: ms(min_poll_millis + 10_000),
        error_backoff_initial: ms(reader.below(2_000)),
        error_backoff_max: ms(reader.below(8_000)),
        segment_retry_delay: ms(reader.below(1_000)),
        max_concurrent_fetches: reader.index(4),
        segment_attempts: reader.below(4) as u32,
        max_segments: reader.index(13),
        start_segments: reader.index(6),
        ready_segments: reader.index(6),
        window_segments: reader.index(8),
        max_buffer_bytes: match reader.below(4) {
            0 => reader.index(200),
            _ => usize::MAX,
        },
    }
}

#[derive(Clone, Copy)]
enum OpKind {
    Open,
    Close,
    Playlist,
    PlaylistError,
    Segment,
    Unasked,
    Advance,
    Late,
    Wake,
}

/// True with probability `percent` / 100 (as far as one byte tells).
fn chance(reader: &mut ByteReader<'_>, percent: u64) -> bool {
    reader.below(100) < percent
}

fn decode_op(reader: &mut ByteReader<'_>) -> Op {
    let kind = reader.weighted(&[
        (1, OpKind::Open),
        (1, OpKind::Close),
        (8, OpKind::Playlist),
        (1, OpKind::PlaylistError),
        (12, OpKind::Segment),
        (1, OpKind::Unasked),
        (4, OpKind::Advance),
        (1, OpKind::Late),
        (1, OpKind::Wake),
    ]);
    match kind {
        OpKind::Open => Op::Open,
        OpKind::Close => Op::Close,
        OpKind::Playlist => {
            let change = match reader.below(14) {
                0..=1 => Change::Same,
                2..=7 => Change::Grow(reader.range(1, 4)),
                8..=11 => Change::Slide(reader.range(1, 4)),
                12 => Change::Jump(reader.range(1, 30)),
                _ => Change::Reset(reader.below(5)),
            };
            Op::Playlist {
                change,
                ended: chance(reader, 5),
                discontinuity: chance(reader, 10),
                invalid: chance(reader, 5),
                stale: chance(reader, 5),
            }
        }
        OpKind::PlaylistError => Op::PlaylistError,
        OpKind::Segment => Op::Segment {
            pick: reader.index(4),
            ok: chance(reader, 85),
            size: 1 + reader.index(39),
        },
        OpKind::Unasked => Op::Unasked {
            upstream_seq: reader.below(40),
        },
        OpKind::Advance => Op::Advance {
            millis: reader.below(3_000),
        },
        OpKind::Late => Op::Late {
            millis: reader.below(20_000),
        },
        OpKind::Wake => Op::Wake,
    }
}

/// Most segments the fake engine lists at once.
const MAX_LISTED: u64 = 12;

/// Duration of upstream segment `n`: varied, from 1 s to just under 4 s.
fn duration_us(n: u64) -> u64 {
    1_000_000 + n.wrapping_mul(7_919) % 3_000_000
}

#[derive(Clone, Debug)]
pub(crate) enum Change {
    Same,
    /// `k` new segments.
    Grow(u64),
    /// The oldest `k` leave and `k` new ones arrive.
    Slide(u64),
    /// Upstream moves `k` segments past its newest (a stall, or polls too late).
    Jump(u64),
    /// Upstream restarts its numbering at `s`.
    Reset(u64),
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Open,
    Close,
    Playlist {
        change: Change,
        ended: bool,
        /// The newest segment starts with `#EXT-X-DISCONTINUITY`.
        discontinuity: bool,
        invalid: bool,
        /// Answered with an older generation than asked.
        stale: bool,
    },
    PlaylistError,
    /// Answers the `pick`-th outstanding segment fetch (of any generation).
    Segment {
        pick: usize,
        ok: bool,
        size: usize,
    },
    /// An answer nobody asked for.
    Unasked {
        upstream_seq: u64,
    },
    /// Time passes and the driver fires every deadline on its instant.
    Advance {
        millis: u64,
    },
    /// Time passes and the driver wakes once, late (a busy runtime).
    Late {
        millis: u64,
    },
    /// An early wake-up.
    Wake,
}

/// A served segment as the checker saw it in a snapshot.
#[derive(Clone, Copy, Debug)]
struct Seen {
    generation: u64,
    upstream_seq: u64,
    discontinuity: bool,
}

/// Decodes a body written by [`Drive::answer_segment`]: `generation:upstream_seq:xxx`.
fn decode(bytes: &Bytes) -> (u64, u64) {
    let text = std::str::from_utf8(bytes).expect("bodies are text");
    let mut fields = text.split(':');
    let mut number = || -> u64 {
        let field = fields.next().expect("three fields");
        field.parse().expect("a number")
    };
    (number(), number())
}

/// What the outputs and snapshots so far promise about what comes next.
struct Checker {
    config: HlsConfig,
    /// The seq the next `SegmentReady` must carry.
    next_seq: u64,
    seen: BTreeMap<u64, Seen>,
    last_sequences: (u64, u64),
    ready: usize,
    ended_since_open: usize,
}

impl Checker {
    fn new(config: HlsConfig) -> Self {
        Checker {
            config,
            next_seq: 0,
            seen: BTreeMap::new(),
            last_sequences: (0, 0),
            ready: 0,
            ended_since_open: 0,
        }
    }

    fn output(&mut self, session: &HlsSession, output: &Output) {
        match output {
            Output::FetchPlaylist { .. } | Output::FetchSegment { .. } => {
                assert!(session.is_open(), "{output:?} while closed");
            }
            Output::SegmentReady { seq, bytes } => {
                assert_eq!(*seq, self.next_seq, "served seqs are consecutive");
                assert!(*bytes > 0);
                self.next_seq += 1;
            }
            Output::Ready => {
                self.ready += 1;
                assert_eq!(self.ready, 1, "Ready once");
            }
            Output::Ended => {
                self.ended_since_open += 1;
                assert_eq!(self.ended_since_open, 1, "Ended once per open");
            }
            Output::Backoff { retry_in, .. } => {
                assert!(*retry_in > Duration::ZERO);
                assert!(*retry_in <= self.config.error_backoff_max.max(Duration::from_micros(1)));
            }
            Output::Gap(_) => {}
        }
    }

    /// Everything that must hold of the session at any time.
    fn state(&mut self, session: &HlsSession, now: Instant) {
        if let Some(deadline) = session.poll_timeout() {
            assert!(deadline > now, "deadline {deadline} left due at {now}");
        }
        let stats = session.stats();
        assert!(stats.fetches_in_flight <= self.config.max_concurrent_fetches.max(1));
        assert!(stats.pending_segments <= self.config.max_segments.max(1));
        assert_eq!(stats.segments_served, self.next_seq);

        let snapshot = session.snapshot();
        let held: Vec<&ServedSegment> = snapshot.behind.iter().chain(&snapshot.segments).collect();
        assert!(snapshot.segments.len() <= self.config.window_segments.max(1));
        assert!(held.len() <= self.config.max_segments.max(1));
        let held_bytes: usize = held.iter().map(|s| s.body.len()).sum();
        assert!(held_bytes <= self.config.max_buffer_bytes || held.len() == 1);
        assert_eq!(
            (stats.held_segments, stats.held_bytes),
            (held.len(), held_bytes)
        );
        if !snapshot.behind.is_empty() {
            assert_eq!(snapshot.segments.len(), self.config.window_segments.max(1));
        }
        for pair in held.windows(2) {
            assert_eq!(pair[1].seq, pair[0].seq + 1, "held seqs are consecutive");
        }
        match held.last() {
            Some(newest) => assert_eq!(newest.seq + 1, self.next_seq, "the newest is held"),
            None => assert_eq!(self.next_seq, 0),
        }
        let media_sequence = snapshot.segments.first().map_or(self.next_seq, |s| s.seq);
        assert_eq!(snapshot.media_sequence, media_sequence);
        let sequences = (snapshot.media_sequence, snapshot.discontinuity_sequence);
        assert!(
            sequences.0 >= self.last_sequences.0,
            "media sequence went back"
        );
        assert!(
            sequences.1 >= self.last_sequences.1,
            "discontinuity sequence went back"
        );
        self.last_sequences = sequences;
        let longest = snapshot
            .segments
            .iter()
            .map(|s| s.duration_us.div_ceil(1_000_000));
        assert_eq!(
            snapshot.target_duration_s,
            longest.max().unwrap_or(1).max(1)
        );

        for segment in &held {
            assert_eq!(snapshot.segment(segment.seq), Some(*segment));
            let (generation, upstream_seq) = decode(&segment.body.to_bytes());
            assert_eq!(segment.duration_us, duration_us(upstream_seq));
            self.seen.entry(segment.seq).or_insert(Seen {
                generation,
                upstream_seq,
                discontinuity: segment.discontinuity,
            });
        }
        assert_eq!(snapshot.segment(self.next_seq), None);
        self.check_seen(&snapshot);

        let text = snapshot.render(|seq| format!("{seq}.ts"));
        assert_eq!(text.matches("#EXTINF:").count(), snapshot.segments.len());
        assert_eq!(text.ends_with("#EXT-X-ENDLIST\n"), snapshot.ended);
    }

    /// Order and gaps among the served segments seen so far (segments served and
    /// evicted within one step are never seen; pairs across them are skipped).
    fn check_seen(&self, snapshot: &HlsSnapshot) {
        if let Some(first) = self.seen.get(&0) {
            assert!(
                !first.discontinuity,
                "the first segment is not a discontinuity"
            );
        }
        let mut previous: Option<(u64, Seen)> = None;
        for (&seq, &seen) in &self.seen {
            if let Some((_, before)) = previous.filter(|(s, _)| s + 1 == seq) {
                if seen.generation == before.generation {
                    assert!(seen.upstream_seq > before.upstream_seq, "upstream order");
                }
                let continues = seen.generation == before.generation
                    && seen.upstream_seq == before.upstream_seq + 1;
                assert!(
                    continues || seen.discontinuity,
                    "silent gap before seq {seq}"
                );
            }
            previous = Some((seq, seen));
        }
        let slid_out = self.seen.range(..snapshot.media_sequence);
        if slid_out.clone().count() as u64 == snapshot.media_sequence {
            let discontinuities = slid_out.filter(|(_, s)| s.discontinuity).count() as u64;
            assert_eq!(snapshot.discontinuity_sequence, discontinuities);
        }
    }
}

/// The fake engine and driver around one session.
struct Drive {
    harness: Harness<HlsSession>,
    owed: Owed,
    /// The engine's playlist: its first number and how many it lists.
    first: u64,
    listed: u64,
    /// Upstream numbers marked `#EXT-X-DISCONTINUITY`.
    discontinuities: Vec<u64>,
}

/// What the driver has seen of the session: the checker and the fetches owed.
struct Owed {
    checker: Checker,
    asked_playlists: Vec<u64>,
    asked_segments: Vec<(u64, u64)>,
}

impl Owed {
    /// Checks what one handle call put out, then the state it left.
    fn settle(&mut self, session: &HlsSession, now: Instant, outputs: &[Output]) {
        for output in outputs.iter().cloned() {
            self.checker.output(session, &output);
            match output {
                Output::FetchPlaylist { generation, url } => {
                    assert_eq!(url, URL);
                    self.asked_playlists.push(generation);
                }
                Output::FetchSegment {
                    generation,
                    upstream_seq,
                    url,
                } => {
                    assert_eq!(url, format!("u{upstream_seq}"));
                    self.asked_segments.push((generation, upstream_seq));
                }
                _ => {}
            }
        }
        self.checker.state(session, now);
        let generation = session.stats().generation;
        let current = |g: &u64| *g == generation;
        let playlists = self.asked_playlists.iter().filter(|g| current(g)).count();
        let segments = self
            .asked_segments
            .iter()
            .filter(|(g, _)| current(g))
            .count();
        assert!(playlists <= 1, "one playlist fetch at a time");
        assert_eq!(segments, session.stats().fetches_in_flight);
        if session.is_open() && playlists == 0 && segments == 0 {
            assert!(
                session.poll_timeout().is_some() || session.snapshot().ended,
                "an open session waits for something"
            );
        }
    }
}

impl Drive {
    fn input(&mut self, input: Input) {
        let outputs = self.harness.input(input);
        self.settle(&outputs);
    }

    fn settle(&mut self, outputs: &[Output]) {
        self.owed
            .settle(&self.harness.machine, self.harness.now, outputs);
    }

    fn playlist(&mut self, discontinuity: bool) -> UpstreamPlaylist {
        if discontinuity && self.listed > 0 {
            self.discontinuities.push(self.first + self.listed - 1);
        }
        let segments = (self.first..self.first + self.listed)
            .map(|n| UpstreamSegment {
                duration_us: duration_us(n),
                uri: format!("u{n}"),
                discontinuity: self.discontinuities.contains(&n),
            })
            .collect();
        UpstreamPlaylist {
            target_duration_s: 4,
            media_sequence: self.first,
            segments,
            ended: false,
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Same => {}
            Change::Grow(k) => self.listed += k,
            Change::Slide(k) => {
                self.first += k.min(self.listed);
                self.listed = self.listed.saturating_sub(k) + k;
            }
            Change::Jump(k) => {
                self.first += self.listed + k;
                self.listed = 3;
            }
            Change::Reset(start) => {
                self.first = start;
                self.listed = 2;
                self.discontinuities.clear();
            }
        }
        if self.listed > MAX_LISTED {
            self.first += self.listed - MAX_LISTED;
            self.listed = MAX_LISTED;
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Open => {
                self.owed.checker.ended_since_open = 0;
                self.input(Input::Open {
                    playlist_url: URL.into(),
                });
            }
            Op::Close => self.input(Input::Close),
            Op::Playlist {
                change,
                ended,
                discontinuity,
                invalid,
                stale,
            } => {
                self.apply(change);
                let mut playlist = self.playlist(discontinuity);
                playlist.ended = ended;
                if invalid {
                    playlist.target_duration_s = 0;
                }
                // A stale answer leaves the request outstanding: the driver still owes it.
                let generation = match self.owed.asked_playlists.last().copied() {
                    Some(g) if stale => g.saturating_sub(1),
                    Some(g) => {
                        self.owed.asked_playlists.pop();
                        g
                    }
                    None => self.harness.machine.stats().generation,
                };
                self.input(Input::PlaylistFetched {
                    generation,
                    result: Ok(playlist),
                });
            }
            Op::PlaylistError => {
                if let Some(generation) = self.owed.asked_playlists.pop() {
                    self.input(Input::PlaylistFetched {
                        generation,
                        result: Err("timed out".into()),
                    });
                }
            }
            Op::Segment { pick, ok, size } => {
                let asked = &mut self.owed.asked_segments;
                if asked.is_empty() {
                    return;
                }
                let (generation, upstream_seq) = asked.remove(pick % asked.len());
                let result = if ok {
                    let mut text = format!("{generation}:{upstream_seq}:");
                    text.extend(std::iter::repeat_n('x', size));
                    Ok(Bytes::from(text))
                } else {
                    Err("reset".into())
                };
                self.input(Input::SegmentFetched {
                    generation,
                    upstream_seq,
                    result,
                });
            }
            Op::Unasked { upstream_seq } => {
                let generation = self.harness.machine.stats().generation;
                if !self
                    .owed
                    .asked_segments
                    .contains(&(generation, upstream_seq))
                {
                    let body = Bytes::from(format!("{generation}:{upstream_seq}:"));
                    self.input(Input::SegmentFetched {
                        generation,
                        upstream_seq,
                        result: Ok(body),
                    });
                }
            }
            Op::Advance { millis } => {
                let owed = &mut self.owed;
                self.harness
                    .advance_each(ms(millis), |session, now, fired| {
                        owed.settle(session, now, fired)
                    });
            }
            Op::Late { millis } => {
                let outputs = self.harness.jump(ms(millis));
                self.settle(&outputs);
            }
            Op::Wake => {
                let outputs = self.harness.wake();
                self.settle(&outputs);
            }
        }
    }
}

/// Runs `ops` against a session built with `config`; panics when a promise breaks.
pub(crate) fn run(config: HlsConfig, ops: Vec<Op>) {
    let mut drive = Drive {
        harness: Harness::new(HlsSession::new(config.clone()), T0),
        owed: Owed {
            checker: Checker::new(config),
            asked_playlists: Vec::new(),
            asked_segments: Vec::new(),
        },
        first: 0,
        listed: 3,
        discontinuities: Vec::new(),
    };
    drive.step(Op::Open);
    for op in ops {
        drive.step(op);
    }
}
