//! Cluster mode: an instance's HLS for a channel another instance owns.
//!
//! An [`HlsRelay`] serves the owner's playlist and segments unchanged (the owner's
//! media sequence, discontinuity sequence and segment numbers), so a player whose
//! requests land on different instances reads one playlist and one set of segments.
//! It decides:
//!
//! - **Playlist freshness.** A fetched playlist answers players for
//!   [`RelayConfig::playlist_max_age`]; after that the next request fetches it again,
//!   and every request arriving meanwhile waits for that one fetch.
//! - **Segments.** A segment is fetched from the owner when a player asks for it and it
//!   is not held; players asking for a segment being fetched wait for that fetch (one
//!   upstream fetch however many players ask). At most
//!   [`RelayConfig::max_fetches`] segment fetches run at once; a request beyond
//!   that is refused ([`RelayFailure::Full`]).
//! - **What is held.** Fetched segments are held for
//!   [`RelayConfig::segment_max_age`], at most [`RelayConfig::max_segments`] of them
//!   and [`RelayConfig::max_bytes`] in all (the oldest numbers go first; the newest is
//!   always kept).
//! - **Waiting is bounded.** At most [`RelayConfig::max_waiters`] requests wait at
//!   once; more are refused. Every fetch is answered by the driver (bounded by its
//!   request timeout), so no request waits longer than one fetch.
//! - **The end.** The relay ends ([`RelayOutput::Ended`]) when no player asked
//!   anything for [`RelayConfig::idle_timeout`] (and nothing is in flight), or when a
//!   playlist fetch fails: the owner is gone, or no longer owns the channel. Requests
//!   waiting then, and any arriving later, are answered [`RelayFailure::Ended`]; the
//!   driver asks the cluster again where the channel is (a new owner, or this
//!   instance). Answers of fetches arriving after the end are ignored.
//!
//! The owner's playlist is held as text; [`for_player`] puts a local player's token
//! on its segment URIs.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::{FetchError, WaiterId};
use crate::machine::Machine;
use crate::time::{Duration, Instant};

/// Timing and bounds of an [`HlsRelay`].
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// How long a fetched playlist answers players before it is fetched again.
    pub playlist_max_age: Duration,
    /// How long a fetched segment is held.
    pub segment_max_age: Duration,
    /// Most segments held (0 is taken as 1).
    pub max_segments: usize,
    /// Most bytes of segments held; the newest segment is always held.
    pub max_bytes: usize,
    /// Most segment fetches in flight at once (0 is taken as 1).
    pub max_fetches: usize,
    /// Most requests waiting for fetches at once.
    pub max_waiters: usize,
    /// No request for this long (and nothing in flight) ends the relay.
    pub idle_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            playlist_max_age: Duration::from_millis(500),
            segment_max_age: Duration::from_secs(60),
            max_segments: 30,
            max_bytes: 64 * 1024 * 1024,
            max_fetches: 4,
            max_waiters: 4096,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What the driver reports to an [`HlsRelay`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayInput {
    /// A player asks for the playlist.
    Playlist {
        /// Names the answer.
        waiter: WaiterId,
    },
    /// A player asks for segment `seq` (the owner's number).
    Segment {
        /// Names the answer.
        waiter: WaiterId,
        /// The segment.
        seq: u64,
    },
    /// The answer to [`RelayOutput::FetchPlaylist`]: the owner's playlist text.
    PlaylistFetched {
        /// The body, or why not.
        result: Result<Bytes, FetchError>,
    },
    /// The answer to [`RelayOutput::FetchSegment`].
    SegmentFetched {
        /// The segment.
        seq: u64,
        /// The body, or why not.
        result: Result<Bytes, FetchError>,
    },
}

/// Why a request is answered without what it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayFailure {
    /// The fetch from the owner failed (for a segment: the owner does not hold it, or
    /// could not be reached).
    Fetch(FetchError),
    /// Too many requests wait, or too many segment fetches run.
    Full {
        /// The bound.
        limit: usize,
    },
    /// The relay ended: ask the cluster again where the channel is.
    Ended,
}

/// Why a relay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayEnd {
    /// No player asked for `idle_timeout`.
    Idle,
    /// A playlist fetch from the owner failed.
    OwnerLost,
}

impl RelayEnd {
    /// A stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayEnd::Idle => "idle",
            RelayEnd::OwnerLost => "owner_lost",
        }
    }
}

/// What an [`HlsRelay`] asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayOutput {
    /// GET the owner's playlist; answer with [`RelayInput::PlaylistFetched`].
    FetchPlaylist,
    /// GET the owner's segment `seq`; answer with [`RelayInput::SegmentFetched`].
    FetchSegment {
        /// The segment.
        seq: u64,
    },
    /// Answer a playlist request.
    Playlist {
        /// The request.
        waiter: WaiterId,
        /// The owner's playlist text, or why not.
        result: Result<Bytes, RelayFailure>,
    },
    /// Answer a segment request.
    Segment {
        /// The request.
        waiter: WaiterId,
        /// The segment's body, or why not.
        result: Result<Bytes, RelayFailure>,
    },
    /// The relay is over; the driver takes it out of its directory.
    Ended {
        /// Why.
        reason: RelayEnd,
    },
}

#[derive(Debug)]
struct Held {
    bytes: Bytes,
    fetched_at: Instant,
}

/// One channel relayed from its owner: see the [module documentation](self).
#[derive(Debug)]
pub struct HlsRelay {
    config: RelayConfig,
    playlist: Option<(Bytes, Instant)>,
    playlist_waiters: Vec<WaiterId>,
    playlist_in_flight: bool,
    segments: BTreeMap<u64, Held>,
    held_bytes: usize,
    /// Segment fetches in flight, with the requests waiting for each.
    fetching: BTreeMap<u64, Vec<WaiterId>>,
    last_request: Instant,
    ended: bool,
    outputs: VecDeque<RelayOutput>,
}

impl HlsRelay {
    /// A relay created at `now` (for the request that created it).
    pub fn new(now: Instant, config: RelayConfig) -> Self {
        HlsRelay {
            config,
            playlist: None,
            playlist_waiters: Vec::new(),
            playlist_in_flight: false,
            segments: BTreeMap::new(),
            held_bytes: 0,
            fetching: BTreeMap::new(),
            last_request: now,
            ended: false,
            outputs: VecDeque::new(),
        }
    }

    /// Whether the relay is over.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Segments held now.
    pub fn held_segments(&self) -> usize {
        self.segments.len()
    }

    fn waiting(&self) -> usize {
        self.playlist_waiters.len() + self.fetching.values().map(Vec::len).sum::<usize>()
    }

    /// Feeds one request or fetch answer at `now`.
    pub fn handle_input(&mut self, now: Instant, input: RelayInput) {
        self.expire(now);
        match input {
            RelayInput::Playlist { waiter } => {
                self.last_request = now;
                self.playlist_request(now, waiter);
            }
            RelayInput::Segment { waiter, seq } => {
                self.last_request = now;
                self.segment_request(seq, waiter);
            }
            RelayInput::PlaylistFetched { result } => {
                if self.ended || !self.playlist_in_flight {
                    return;
                }
                self.playlist_in_flight = false;
                match result {
                    Ok(text) => {
                        self.playlist = Some((text.clone(), now));
                        for waiter in std::mem::take(&mut self.playlist_waiters) {
                            self.outputs.push_back(RelayOutput::Playlist {
                                waiter,
                                result: Ok(text.clone()),
                            });
                        }
                    }
                    Err(_) => self.end(RelayEnd::OwnerLost),
                }
            }
            RelayInput::SegmentFetched { seq, result } => {
                if self.ended {
                    return;
                }
                let Some(waiters) = self.fetching.remove(&seq) else {
                    return;
                };
                let answer = match result {
                    Ok(bytes) => {
                        self.hold(now, seq, bytes.clone());
                        Ok(bytes)
                    }
                    Err(error) => Err(RelayFailure::Fetch(error)),
                };
                for waiter in waiters {
                    self.outputs.push_back(RelayOutput::Segment {
                        waiter,
                        result: answer.clone(),
                    });
                }
            }
        }
    }

    /// Fires what is due at `now`: held segments past their age go, and a relay idle
    /// for `idle_timeout` ends.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        if !self.ended && self.is_quiet() && now >= self.last_request + self.config.idle_timeout {
            self.end(RelayEnd::Idle);
        }
    }

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<RelayOutput> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let expiry = self
            .segments
            .values()
            .map(|held| held.fetched_at + self.config.segment_max_age)
            .min();
        let idle = self
            .is_quiet()
            .then(|| self.last_request + self.config.idle_timeout);
        expiry.into_iter().chain(idle).min()
    }

    /// Nothing in flight and nobody waiting.
    fn is_quiet(&self) -> bool {
        !self.playlist_in_flight && self.fetching.is_empty()
    }

    fn playlist_request(&mut self, now: Instant, waiter: WaiterId) {
        if self.ended {
            return self.answer_playlist(waiter, Err(RelayFailure::Ended));
        }
        if let Some((text, at)) = &self.playlist {
            if now < *at + self.config.playlist_max_age {
                let text = text.clone();
                return self.answer_playlist(waiter, Ok(text));
            }
        }
        if self.waiting() >= self.config.max_waiters {
            let limit = self.config.max_waiters;
            return self.answer_playlist(waiter, Err(RelayFailure::Full { limit }));
        }
        self.playlist_waiters.push(waiter);
        if !self.playlist_in_flight {
            self.playlist_in_flight = true;
            self.outputs.push_back(RelayOutput::FetchPlaylist);
        }
    }

    fn segment_request(&mut self, seq: u64, waiter: WaiterId) {
        if self.ended {
            return self.answer_segment(waiter, Err(RelayFailure::Ended));
        }
        if let Some(held) = self.segments.get(&seq) {
            let bytes = held.bytes.clone();
            return self.answer_segment(waiter, Ok(bytes));
        }
        if self.waiting() >= self.config.max_waiters {
            let limit = self.config.max_waiters;
            return self.answer_segment(waiter, Err(RelayFailure::Full { limit }));
        }
        if let Some(waiters) = self.fetching.get_mut(&seq) {
            waiters.push(waiter);
            return;
        }
        let limit = self.config.max_fetches.max(1);
        if self.fetching.len() >= limit {
            return self.answer_segment(waiter, Err(RelayFailure::Full { limit }));
        }
        self.fetching.insert(seq, vec![waiter]);
        self.outputs.push_back(RelayOutput::FetchSegment { seq });
    }

    fn answer_playlist(&mut self, waiter: WaiterId, result: Result<Bytes, RelayFailure>) {
        self.outputs
            .push_back(RelayOutput::Playlist { waiter, result });
    }

    fn answer_segment(&mut self, waiter: WaiterId, result: Result<Bytes, RelayFailure>) {
        self.outputs
            .push_back(RelayOutput::Segment { waiter, result });
    }

    fn hold(&mut self, now: Instant, seq: u64, bytes: Bytes) {
        self.held_bytes += bytes.len();
        if let Some(old) = self.segments.insert(
            seq,
            Held {
                bytes,
                fetched_at: now,
            },
        ) {
            self.held_bytes -= old.bytes.len();
        }
        while self.segments.len() > 1
            && (self.segments.len() > self.config.max_segments.max(1)
                || self.held_bytes > self.config.max_bytes)
        {
            // The oldest number goes first; the newest always stays.
            if let Some((_, gone)) = self.segments.pop_first() {
                self.held_bytes -= gone.bytes.len();
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let max_age = self.config.segment_max_age;
        let held_bytes = &mut self.held_bytes;
        self.segments.retain(|_, held| {
            let keep = now < held.fetched_at + max_age;
            if !keep {
                *held_bytes -= held.bytes.len();
            }
            keep
        });
    }

    fn end(&mut self, reason: RelayEnd) {
        self.ended = true;
        self.playlist = None;
        self.playlist_in_flight = false;
        self.segments.clear();
        self.held_bytes = 0;
        for waiter in std::mem::take(&mut self.playlist_waiters) {
            self.answer_playlist(waiter, Err(RelayFailure::Ended));
        }
        for (_, waiters) in std::mem::take(&mut self.fetching) {
            for waiter in waiters {
                self.answer_segment(waiter, Err(RelayFailure::Ended));
            }
        }
        self.outputs.push_back(RelayOutput::Ended { reason });
    }
}

impl Machine for HlsRelay {
    type Input = RelayInput;
    type Output = RelayOutput;

    fn handle_input(&mut self, now: Instant, input: RelayInput) {
        HlsRelay::handle_input(self, now, input);
    }

    fn handle_timeout(&mut self, now: Instant) {
        HlsRelay::handle_timeout(self, now);
    }

    fn poll_output(&mut self) -> Option<RelayOutput> {
        HlsRelay::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        HlsRelay::poll_timeout(self)
    }
}

/// The owner's playlist `text` as served to a local player: `query` (such as
/// `t=<token>`, already encoded) added to every segment URI; everything else kept as
/// it is.
pub fn for_player(text: &str, query: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        out.push_str(line);
        let uri = line.trim();
        if !query.is_empty() && !uri.is_empty() && !uri.starts_with('#') {
            out.push(if uri.contains('?') { '&' } else { '?' });
            out.push_str(query);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
