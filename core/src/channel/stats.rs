//! An engine session's statistics: its `stat_url` polled at an interval while the
//! session plays, the latest figures published, and the no-progress rule (zero peers
//! and no download progress for a bound: the session is replaced).

use crate::lifecycle::EngineAddr;
use crate::time::{Duration, Instant};

use super::EngineSession;

/// What an engine reports about one session (`stat_url`), with the orchestrator's
/// field names. Speeds are in kilobytes per second and totals in bytes, as engines
/// report them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// The engine's state of the session (`dl`, `prebuf`, …), when it says.
    pub status: Option<String>,
    /// Peers connected.
    pub peers: u64,
    /// Download speed, KB/s.
    pub speed_down: u64,
    /// Upload speed, KB/s.
    pub speed_up: u64,
    /// Bytes downloaded by the session.
    pub downloaded: u64,
    /// Bytes uploaded by the session.
    pub uploaded: u64,
    /// The live position, for live streams whose engine reports it.
    pub livepos: Option<LivePos>,
}

/// An engine's live position of a session (timestamps in seconds, as reported).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LivePos {
    /// The current playback position.
    pub pos: Option<i64>,
    /// The first timestamp the engine holds.
    pub first_ts: Option<i64>,
    /// The last timestamp the engine holds (the live edge).
    pub last_ts: Option<i64>,
    /// Pieces buffered ahead of the position.
    pub buffer_pieces: Option<i64>,
}

impl EngineStats {
    /// Decodes an engine's stat answer, the envelope `{"response": {…}, "error": …}`
    /// of `stat_url`. A non-empty `error`, a missing `response` or a body that is not
    /// the envelope is an error saying which; a figure missing or not a number counts
    /// as 0 (engines leave them out while a session starts), a negative or fractional
    /// one is rounded into range.
    pub fn decode(body: &[u8]) -> Result<EngineStats, String> {
        let envelope: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| format!("the stat answer is not JSON: {error}"))?;
        match envelope.get("error") {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(error)) if error.is_empty() => {}
            Some(error) => return Err(format!("the engine reports an error: {error}")),
        }
        let Some(response) = envelope.get("response").filter(|r| r.is_object()) else {
            return Err("the stat answer has no response".into());
        };
        let count = |name: &str| response.get(name).map_or(0, unsigned);
        let livepos = response
            .get("livepos")
            .filter(|livepos| livepos.is_object())
            .map(|livepos| {
                let field = |name: &str| livepos.get(name).and_then(signed);
                LivePos {
                    pos: field("pos"),
                    first_ts: field("first_ts"),
                    last_ts: field("last_ts"),
                    buffer_pieces: field("buffer_pieces"),
                }
            });
        Ok(EngineStats {
            status: response
                .get("status")
                .and_then(serde_json::Value::as_str)
                .map(|status| status.chars().take(32).collect()),
            peers: count("peers"),
            speed_down: count("speed_down"),
            speed_up: count("speed_up"),
            downloaded: count("downloaded"),
            uploaded: count("uploaded"),
            livepos,
        })
    }
}

/// A JSON number (or a numeric string, as some engines write timestamps) as a
/// non-negative integer; anything else is 0.
fn unsigned(value: &serde_json::Value) -> u64 {
    signed(value).map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

/// A JSON number or numeric string as an integer, rounded and clamped.
fn signed(value: &serde_json::Value) -> Option<i64> {
    let number = match value {
        serde_json::Value::Number(n) => n.as_i64().map(|n| n as f64).or_else(|| n.as_f64()),
        serde_json::Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    }?;
    if !number.is_finite() {
        return None;
    }
    // `as` saturates at the bounds.
    Some(number.round() as i64)
}

/// One stat poll; its answer names it, and answers of older polls are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatPollId(pub u64);

impl std::fmt::Display for StatPollId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// When stats are polled and what counts as no progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsConfig {
    /// Time between polls of a playing session; `None`: stats are not polled.
    pub interval: Option<Duration>,
    /// A session reporting zero peers and no download progress this long is
    /// replaced; `None`: never (only the stall rules apply).
    pub no_peers_timeout: Option<Duration>,
}

/// What the watch asks for or decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatsAction {
    /// Fetch `url` (the session's stat URL, already pointed at its engine).
    Fetch {
        /// Echo it in the answer.
        poll: StatPollId,
        /// The session's engine.
        engine: EngineAddr,
        /// The stat URL.
        url: String,
    },
    /// New figures for the session.
    Stats(EngineStats),
    /// A poll failed (for logs; the figures shown stay the last good ones).
    Failed {
        /// The engine.
        engine: EngineAddr,
        /// Why.
        error: String,
        /// Polls failed in a row, this one included (1: the first since a good one).
        consecutive: u32,
    },
    /// The session made no progress for the bound: replace it.
    NoProgress {
        /// The engine.
        engine: EngineAddr,
        /// How long it reported zero peers without downloading.
        for_at_least: Duration,
    },
}

#[derive(Debug)]
struct Watched {
    engine: EngineAddr,
    url: String,
    next_poll: Instant,
    in_flight: Option<StatPollId>,
    /// `downloaded` of the last good answer.
    downloaded: Option<u64>,
    /// Since when every answer reported zero peers and no download progress.
    stuck_since: Option<Instant>,
    /// Polls failed in a row.
    failures: u32,
}

/// Polls one channel's current session. At most one poll is in flight; a poll whose
/// answer is late delays the next one (the driver bounds each poll).
#[derive(Debug)]
pub struct StatsWatch {
    config: StatsConfig,
    watched: Option<Watched>,
    next_id: u64,
}

impl StatsWatch {
    /// A watch that polls nothing yet.
    pub fn new(config: StatsConfig) -> Self {
        StatsWatch {
            config,
            watched: None,
            next_id: 0,
        }
    }

    /// `session` started playing at `now`: poll it from now on (the first poll at once).
    pub fn watch(&mut self, now: Instant, session: &EngineSession) {
        if self.config.interval.is_none() || session.session.stat_url.is_empty() {
            self.watched = None;
            return;
        }
        self.watched = Some(Watched {
            engine: session.engine.clone(),
            url: session.session.stat_url.clone(),
            next_poll: now,
            in_flight: None,
            downloaded: None,
            stuck_since: None,
            failures: 0,
        });
    }

    /// The session is over: poll nothing, ignore answers still coming.
    pub fn unwatch(&mut self) {
        self.watched = None;
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.watched
            .as_ref()
            .filter(|watched| watched.in_flight.is_none())
            .map(|watched| watched.next_poll)
    }

    /// Starts the poll that is due at `now`, if any.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<StatsAction> {
        let interval = self.config.interval?;
        let watched = self.watched.as_mut()?;
        if watched.in_flight.is_some() || now < watched.next_poll {
            return None;
        }
        self.next_id += 1;
        let poll = StatPollId(self.next_id);
        watched.in_flight = Some(poll);
        watched.next_poll = now + interval;
        Some(StatsAction::Fetch {
            poll,
            engine: watched.engine.clone(),
            url: watched.url.clone(),
        })
    }

    /// The answer to a poll, at `now`: the figures (or the failure), then the
    /// replacement decision when the no-progress bound is reached.
    pub fn answer(
        &mut self,
        now: Instant,
        poll: StatPollId,
        result: Result<EngineStats, String>,
    ) -> Vec<StatsAction> {
        let Some(watched) = self.watched.as_mut() else {
            return Vec::new();
        };
        if watched.in_flight != Some(poll) {
            return Vec::new();
        }
        watched.in_flight = None;
        let stats = match result {
            Ok(stats) => stats,
            Err(error) => {
                // Unknown is not "no progress": a failing stat API leaves the decision
                // to the stall rules.
                watched.failures = watched.failures.saturating_add(1);
                return vec![StatsAction::Failed {
                    engine: watched.engine.clone(),
                    error,
                    consecutive: watched.failures,
                }];
            }
        };
        watched.failures = 0;
        let progressed = watched
            .downloaded
            .is_some_and(|before| stats.downloaded > before);
        watched.downloaded = Some(stats.downloaded);
        if stats.peers > 0 || progressed {
            watched.stuck_since = None;
        } else if watched.stuck_since.is_none() {
            watched.stuck_since = Some(now);
        }
        let mut actions = vec![StatsAction::Stats(stats)];
        if let (Some(bound), Some(since)) = (self.config.no_peers_timeout, watched.stuck_since) {
            let stuck = now.saturating_duration_since(since);
            if stuck >= bound {
                actions.push(StatsAction::NoProgress {
                    engine: watched.engine.clone(),
                    for_at_least: stuck,
                });
                self.watched = None;
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_stat_answer_is_read_with_the_orchestrators_names() {
        let body = br#"{"response": {"status": "dl", "peers": 12, "speed_down": 512, "speed_up": 64.6,
            "downloaded": 104857600, "uploaded": 2097152, "total_progress": 0,
            "livepos": {"pos": "1700000100", "first_ts": 1700000000, "last_ts": 1700000110, "buffer_pieces": 15, "is_live": 1}},
            "error": null}"#;
        assert_eq!(
            EngineStats::decode(body),
            Ok(EngineStats {
                status: Some("dl".into()),
                peers: 12,
                speed_down: 512,
                speed_up: 65,
                downloaded: 104_857_600,
                uploaded: 2_097_152,
                livepos: Some(LivePos {
                    pos: Some(1_700_000_100),
                    first_ts: Some(1_700_000_000),
                    last_ts: Some(1_700_000_110),
                    buffer_pieces: Some(15),
                }),
            })
        );
    }

    #[test]
    fn missing_or_odd_figures_count_as_zero_and_errors_say_which() {
        let starting =
            br#"{"response": {"status": "prebuf", "peers": -1, "speed_down": "x"}, "error": ""}"#;
        assert_eq!(
            EngineStats::decode(starting),
            Ok(EngineStats {
                status: Some("prebuf".into()),
                ..EngineStats::default()
            })
        );
        let refused =
            EngineStats::decode(br#"{"response": null, "error": "unknown playback session id"}"#);
        assert_eq!(
            refused,
            Err("the engine reports an error: \"unknown playback session id\"".into())
        );
        assert!(
            EngineStats::decode(br#"{"error": null}"#).is_err_and(|e| e.contains("no response"))
        );
        assert!(EngineStats::decode(b"<html>").is_err_and(|e| e.contains("not JSON")));
        let huge = br#"{"response": {"downloaded": 1e300, "uploaded": 18446744073709551615}}"#;
        let stats = EngineStats::decode(huge).expect("figures");
        assert_eq!(stats.downloaded, i64::MAX as u64);
        assert_eq!(stats.uploaded, i64::MAX as u64);
    }
}
