//! Tests of the HLS session: a fake-clock harness here, one behaviour per test in the
//! topic modules (`fetch`: polling and fetching; `gaps`: discontinuities and
//! generations; `served`: the window, the caps and the playlist text), and a property
//! test of the session's promises over random drives in `invariants` (and over
//! arbitrary inputs in `raw`).

mod fetch;
mod gaps;
mod invariants;
mod raw;
mod served;

use bytes::Bytes;

use super::{
    Gap, HlsConfig, HlsSession, HlsSnapshot, Input, Output, UpstreamPlaylist, UpstreamSegment,
};
use crate::machine;
use crate::time::{Duration, Instant};

/// Where every harness clock starts: not zero, so that a deadline computed from the
/// wrong origin shows.
const T0: Instant = Instant::from_micros(1_000_000_000);

/// Most fetches one `answer_all` answers; more means the session never stops asking.
const MAX_FETCHES: usize = 10_000;

/// The engine's playlist URL in every test.
const URL: &str = "http://engine:6878/ace/m/abc/live.m3u8";

/// Duration of the fixture segments, matching the fixture target duration of 2 s.
const SEGMENT_US: u64 = 2_000_000;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Upstream segment `n`: 2 s, its URI naming it.
fn segment(n: u64) -> UpstreamSegment {
    UpstreamSegment {
        duration_us: SEGMENT_US,
        uri: format!("http://engine:6878/ace/c/abc/{n}.ts"),
        discontinuity: false,
    }
}

/// A live playlist (target 2 s) holding upstream segments `first..first + count`.
fn live(first: u64, count: u64) -> UpstreamPlaylist {
    UpstreamPlaylist {
        target_duration_s: 2,
        media_sequence: first,
        segments: (first..first + count).map(segment).collect(),
        ended: false,
    }
}

/// The body of upstream segment `n`; distinct per segment, so that order shows.
fn body(n: u64) -> Bytes {
    Bytes::from(format!("segment {n:04}"))
}

fn fetch_playlist(generation: u64) -> Output {
    Output::FetchPlaylist {
        generation,
        url: URL.into(),
    }
}

fn fetch_segment(generation: u64, n: u64) -> Output {
    Output::FetchSegment {
        generation,
        upstream_seq: n,
        url: segment(n).uri,
    }
}

fn segment_ready(seq: u64) -> Output {
    Output::SegmentReady {
        seq,
        bytes: body(0).len(),
    }
}

/// One session on the core's fake clock ([`machine::Harness`], strict: no handle call
/// may leave a deadline due), remembering the fetches it asked for.
struct Harness {
    inner: machine::Harness<HlsSession>,
    /// The generation of the latest fetch request drained: answers echo it.
    generation: u64,
    /// Segment fetches asked for and not answered yet: (generation, upstream number).
    asked: Vec<(u64, u64)>,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(|_| {})
    }

    fn with_config(edit: impl FnOnce(&mut HlsConfig)) -> Self {
        let mut config = HlsConfig::default();
        edit(&mut config);
        Harness {
            inner: machine::Harness::strict(HlsSession::new(config), T0),
            generation: 0,
            asked: Vec::new(),
        }
    }

    /// Opened and past its first playlist `live(first, count)`, whose fetches are
    /// answered in order, with the outputs drained.
    #[track_caller]
    fn playing(edit: impl FnOnce(&mut HlsConfig), first: u64, count: u64) -> Self {
        let mut h = Self::with_config(edit);
        assert_eq!(h.open(), vec![fetch_playlist(1)]);
        h.playlist(live(first, count));
        h.answer_all();
        h
    }

    /// Notes the fetches asked for in `outputs`, and hands them back.
    fn track(&mut self, outputs: Vec<Output>) -> Vec<Output> {
        for output in &outputs {
            if let Output::FetchPlaylist { generation, .. }
            | Output::FetchSegment { generation, .. } = output
            {
                self.generation = *generation;
            }
            if let Output::FetchSegment {
                generation,
                upstream_seq,
                ..
            } = output
            {
                self.asked.push((*generation, *upstream_seq));
            }
        }
        outputs
    }

    /// Feeds `input` at `now`; what it caused.
    #[track_caller]
    fn input(&mut self, input: Input) -> Vec<Output> {
        let outputs = self.inner.input(input);
        self.track(outputs)
    }

    /// The fake clock.
    fn now(&self) -> Instant {
        self.inner.now
    }

    /// The session under test.
    fn session(&self) -> &HlsSession {
        &self.inner.machine
    }

    fn open(&mut self) -> Vec<Output> {
        self.input(Input::Open {
            playlist_url: URL.into(),
        })
    }

    fn close(&mut self) -> Vec<Output> {
        self.input(Input::Close)
    }

    /// Answers the playlist request of the current generation.
    fn playlist(&mut self, playlist: UpstreamPlaylist) -> Vec<Output> {
        self.input(Input::PlaylistFetched {
            generation: self.generation,
            result: Ok(playlist),
        })
    }

    fn playlist_error(&mut self, error: &str) -> Vec<Output> {
        self.input(Input::PlaylistFetched {
            generation: self.generation,
            result: Err(error.into()),
        })
    }

    /// Answers the fetch of upstream segment `n` with its body.
    fn segment(&mut self, n: u64) -> Vec<Output> {
        self.answer(n, Ok(body(n)))
    }

    fn segment_error(&mut self, n: u64) -> Vec<Output> {
        self.answer(n, Err("connection reset".into()))
    }

    /// Answers the fetch of upstream segment `n` in the current generation.
    fn answer(&mut self, n: u64, result: Result<Bytes, String>) -> Vec<Output> {
        let generation = self.generation;
        self.asked.retain(|&asked| asked != (generation, n));
        self.input(Input::SegmentFetched {
            generation,
            upstream_seq: n,
            result,
        })
    }

    /// Segment fetches of the current generation asked for and not answered yet,
    /// oldest request first.
    fn outstanding(&self) -> Vec<u64> {
        self.asked
            .iter()
            .filter(|(generation, _)| *generation == self.generation)
            .map(|&(_, n)| n)
            .collect()
    }

    /// Answers every segment fetch, oldest first, until none is outstanding.
    #[track_caller]
    fn answer_all(&mut self) -> Vec<Output> {
        let mut outputs = Vec::new();
        for _ in 0..MAX_FETCHES {
            let Some(&n) = self.outstanding().first() else {
                return outputs;
            };
            outputs.extend(self.segment(n));
        }
        panic!("fetches never end");
    }

    /// The next poll: steps to it, checks that it asks for the playlist, and answers.
    #[track_caller]
    fn poll(&mut self, playlist: UpstreamPlaylist) -> Vec<Output> {
        let asked = self.step();
        assert_eq!(asked, vec![fetch_playlist(self.generation)]);
        self.playlist(playlist)
    }

    fn deadline(&self) -> Option<Instant> {
        self.inner.deadline()
    }

    /// Moves the clock to the next deadline and fires it.
    #[track_caller]
    fn step(&mut self) -> Vec<Output> {
        let outputs = self.inner.step().expect("a deadline to step to");
        self.track(outputs)
    }

    /// Lets `duration` pass, firing every deadline on its instant.
    #[track_caller]
    fn advance(&mut self, duration: Duration) -> Vec<Output> {
        let outputs = self.inner.advance(duration);
        self.track(outputs)
    }

    fn snapshot(&self) -> HlsSnapshot {
        self.session().snapshot()
    }

    /// How often outputs matching `predicate` were emitted over the whole run.
    fn count(&self, predicate: impl Fn(&Output) -> bool) -> usize {
        self.inner
            .log
            .iter()
            .filter(|output| predicate(output))
            .count()
    }

    /// Served seqs and discontinuity flags of the window.
    fn window(&self) -> Vec<(u64, bool)> {
        let snapshot = self.snapshot();
        snapshot
            .segments
            .iter()
            .map(|s| (s.seq, s.discontinuity))
            .collect()
    }

    /// The upstream numbers of the window's segments, read back from their bodies.
    fn window_upstream(&self) -> Vec<u64> {
        self.snapshot()
            .segments
            .iter()
            .map(|s| upstream_of(&s.body.to_bytes()))
            .collect()
    }
}

/// The upstream number written in a fixture body.
fn upstream_of(bytes: &Bytes) -> u64 {
    let text = std::str::from_utf8(bytes).expect("fixture bodies are text");
    text["segment ".len()..]
        .parse()
        .expect("fixture bodies end in a number")
}
