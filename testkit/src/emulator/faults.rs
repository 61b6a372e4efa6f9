//! Fault knobs, per content id: set from `--fault` flags or `PUT /control/faults/<id>`.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Content id whose faults apply to every content id without faults of its own.
pub const ANY_CONTENT: &str = "*";
/// Longest accepted duration knob: sleeps stay bounded.
const MAX_FAULT_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Bounds of the bitrate override: pacing arithmetic and buffers stay sane.
const BITRATE_BPS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=1_000_000_000;
/// Longest refusal message.
const MAX_REFUSE_BYTES: usize = 1024;
/// Largest HLS sequence jump: segment numbers stay far from overflow.
const MAX_SEQUENCE_JUMP: u64 = 1_000_000;

/// How the emulated engine misbehaves for one content id. The default is a healthy
/// engine. In JSON, durations are humantime text (`"1500ms"`, `"2s"`) or integer
/// milliseconds; absent fields keep their defaults.
///
/// `bitrate_bps`, `stall_*`, `cut_after_bytes` and `close_abruptly_after_bytes` shape
/// MPEG-TS playback bodies; the `playlist_*`, `segment_*` and `sequence_*` knobs shape
/// HLS (times counted from the session's start, see `super::hls`); `start_delay`,
/// `refuse` and `no_data` apply to both; `zero_peers` and `stats_fail` shape the
/// session's `stat_url`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay before `getstream` answers.
    #[serde(with = "humantime_opt")]
    pub start_delay: Option<Duration>,
    /// Pacing rate instead of the media's own bitrate.
    pub bitrate_bps: Option<u64>,
    /// When, after a playback connection starts, it stops sending (`stall_for` long).
    #[serde(with = "humantime_opt")]
    pub stall_after: Option<Duration>,
    /// How long a stall lasts; a stall happens only when this is set. Sending then
    /// resumes where it stopped, paced, without catching up.
    #[serde(with = "humantime_opt")]
    pub stall_for: Option<Duration>,
    /// End each playback body cleanly after this many bytes.
    pub cut_after_bytes: Option<u64>,
    /// Drop each playback connection after this many bytes, without ending the body.
    pub close_abruptly_after_bytes: Option<u64>,
    /// Refuse `getstream` with this error text.
    pub refuse: Option<String>,
    /// Answer playback with 200 and headers, then never send a byte; HLS playlists
    /// are answered with no segments, forever.
    pub no_data: bool,
    /// Delay before each HLS playlist answer.
    #[serde(with = "humantime_opt")]
    pub playlist_delay: Option<Duration>,
    /// Every Nth HLS segment number (N−1, 2N−1, …) answers 404 although listed.
    pub segment_404_every: Option<u64>,
    /// Delay before each HLS segment answer (an engine that downloads slowly).
    #[serde(with = "humantime_opt")]
    pub segment_delay: Option<Duration>,
    /// When the HLS sequence jump happens (default: at once); see `sequence_jump_by`.
    #[serde(with = "humantime_opt")]
    pub sequence_jump_after: Option<Duration>,
    /// The HLS live edge leaps this many segments ahead at `sequence_jump_after`:
    /// the media sequence advances by this much at once, and segments in between
    /// are never listed when it exceeds the window. A jump happens only when set.
    pub sequence_jump_by: Option<u64>,
    /// After this, HLS numbering (and the media) restart at segment 0, as after an
    /// engine restart.
    #[serde(with = "humantime_opt")]
    pub sequence_reset_after: Option<Duration>,
    /// After this, the HLS playlist stops advancing (its segments are still served).
    #[serde(with = "humantime_opt")]
    pub playlist_stall_after: Option<Duration>,
    /// The session's `stat_url` reports zero peers, zero speeds and a download total
    /// that no longer grows (a swarm gone quiet), whatever the playback does.
    pub zero_peers: bool,
    /// The session's `stat_url` answers 500 with an error envelope.
    pub stats_fail: bool,
}

/// A fault setting that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FaultError {
    /// `--fault` text not shaped `<content_id>:<knob>=<value>`.
    #[error("expected <content_id>:<knob>=<value>, got {0:?}")]
    Shape(String),
    /// No such knob.
    #[error("unknown fault knob {0:?} (knobs: start_delay, bitrate_bps, stall_after, stall_for, cut_after_bytes, close_abruptly_after_bytes, refuse, no_data, playlist_delay, segment_delay, segment_404_every, sequence_jump_after, sequence_jump_by, sequence_reset_after, playlist_stall_after, zero_peers, stats_fail)")]
    UnknownKnob(String),
    /// The fault table holds as many content ids as it may.
    #[error("the fault table is full ({0} content ids); delete some first")]
    TableFull(usize),
    /// The value does not parse or is out of bounds.
    #[error("invalid value for {knob}: {reason}")]
    Value {
        /// The knob.
        knob: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Faults {
    /// Checks every knob against its bounds.
    pub fn validate(&self) -> Result<(), FaultError> {
        let durations = [
            ("start_delay", self.start_delay),
            ("stall_after", self.stall_after),
            ("stall_for", self.stall_for),
            ("playlist_delay", self.playlist_delay),
            ("segment_delay", self.segment_delay),
            ("sequence_jump_after", self.sequence_jump_after),
            ("sequence_reset_after", self.sequence_reset_after),
            ("playlist_stall_after", self.playlist_stall_after),
        ];
        for (knob, value) in durations {
            if value.is_some_and(|value| value > MAX_FAULT_DURATION) {
                return Err(FaultError::Value {
                    knob,
                    reason: "longer than 24h".to_owned(),
                });
            }
        }
        if let Some(bitrate) = self.bitrate_bps {
            if !BITRATE_BPS_RANGE.contains(&bitrate) {
                return Err(FaultError::Value {
                    knob: "bitrate_bps",
                    reason: format!("{bitrate} is outside {BITRATE_BPS_RANGE:?}"),
                });
            }
        }
        if self.segment_404_every == Some(0) {
            return Err(FaultError::Value {
                knob: "segment_404_every",
                reason: "must be at least 1".to_owned(),
            });
        }
        if let Some(jump) = self.sequence_jump_by {
            if !(1..=MAX_SEQUENCE_JUMP).contains(&jump) {
                return Err(FaultError::Value {
                    knob: "sequence_jump_by",
                    reason: format!("{jump} is outside 1..={MAX_SEQUENCE_JUMP}"),
                });
            }
        }
        if self
            .refuse
            .as_ref()
            .is_some_and(|text| text.len() > MAX_REFUSE_BYTES)
        {
            return Err(FaultError::Value {
                knob: "refuse",
                reason: format!("longer than {MAX_REFUSE_BYTES} bytes"),
            });
        }
        Ok(())
    }

    /// Sets `knob` from its text form, as given to `--fault`.
    pub fn set(&mut self, knob: &str, value: &str) -> Result<(), FaultError> {
        match knob {
            "start_delay" => self.start_delay = Some(duration("start_delay", value)?),
            "bitrate_bps" => self.bitrate_bps = Some(integer("bitrate_bps", value)?),
            "stall_after" => self.stall_after = Some(duration("stall_after", value)?),
            "stall_for" => self.stall_for = Some(duration("stall_for", value)?),
            "cut_after_bytes" => self.cut_after_bytes = Some(integer("cut_after_bytes", value)?),
            "close_abruptly_after_bytes" => {
                self.close_abruptly_after_bytes =
                    Some(integer("close_abruptly_after_bytes", value)?);
            }
            "refuse" => self.refuse = Some(value.to_owned()),
            "playlist_delay" => self.playlist_delay = Some(duration("playlist_delay", value)?),
            "segment_delay" => self.segment_delay = Some(duration("segment_delay", value)?),
            "segment_404_every" => {
                self.segment_404_every = Some(integer("segment_404_every", value)?);
            }
            "sequence_jump_after" => {
                self.sequence_jump_after = Some(duration("sequence_jump_after", value)?);
            }
            "sequence_jump_by" => self.sequence_jump_by = Some(integer("sequence_jump_by", value)?),
            "sequence_reset_after" => {
                self.sequence_reset_after = Some(duration("sequence_reset_after", value)?);
            }
            "playlist_stall_after" => {
                self.playlist_stall_after = Some(duration("playlist_stall_after", value)?);
            }
            "no_data" => self.no_data = flag("no_data", value)?,
            "zero_peers" => self.zero_peers = flag("zero_peers", value)?,
            "stats_fail" => self.stats_fail = flag("stats_fail", value)?,
            other => return Err(FaultError::UnknownKnob(other.to_owned())),
        }
        self.validate()
    }
}

fn duration(knob: &'static str, value: &str) -> Result<Duration, FaultError> {
    humantime::parse_duration(value).map_err(|error| FaultError::Value {
        knob,
        reason: format!("{error} (examples: 500ms, 10s)"),
    })
}

/// A switch: `true`, `1` or nothing (the knob alone) sets it; `false` or `0` clears it.
fn flag(knob: &'static str, value: &str) -> Result<bool, FaultError> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(FaultError::Value {
            knob,
            reason: format!("{other:?} is not true or false"),
        }),
    }
}

fn integer(knob: &'static str, value: &str) -> Result<u64, FaultError> {
    value.parse().map_err(|error| FaultError::Value {
        knob,
        reason: format!("{value:?}: {error}"),
    })
}

/// One `--fault <content_id>:<knob>=<value>` flag (`<content_id>:no_data` alone sets
/// that switch, as for `zero_peers` and `stats_fail`; content id `*` applies to content ids without faults of their own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultFlag {
    /// The content id (or `*`).
    pub content_id: String,
    /// The knob name.
    pub knob: String,
    /// Its value, as text.
    pub value: String,
}

impl FromStr for FaultFlag {
    type Err = FaultError;

    fn from_str(text: &str) -> Result<Self, FaultError> {
        let shape = || FaultError::Shape(text.to_owned());
        let (content_id, setting) = text.split_once(':').ok_or_else(shape)?;
        let (knob, value) = setting.split_once('=').unwrap_or((setting, ""));
        if content_id.is_empty() || knob.is_empty() {
            return Err(shape());
        }
        let flag = FaultFlag {
            content_id: content_id.to_owned(),
            knob: knob.to_owned(),
            value: value.to_owned(),
        };
        // Checked here so that a bad flag fails at parse time with clap's message.
        Faults::default().set(&flag.knob, &flag.value)?;
        Ok(flag)
    }
}

/// The faults that `flags` describe, merged per content id in order.
pub fn faults_from_flags(flags: &[FaultFlag]) -> Result<BTreeMap<String, Faults>, FaultError> {
    let mut faults: BTreeMap<String, Faults> = BTreeMap::new();
    for flag in flags {
        faults
            .entry(flag.content_id.clone())
            .or_default()
            .set(&flag.knob, &flag.value)?;
    }
    Ok(faults)
}

/// Serde for `Option<Duration>`: humantime text out; text or milliseconds in.
mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Text(String),
        Millis(u64),
    }

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value
            .map(|duration| humantime::format_duration(duration).to_string())
            .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<Wire>::deserialize(deserializer)? {
            None => Ok(None),
            Some(Wire::Millis(millis)) => Ok(Some(Duration::from_millis(millis))),
            Some(Wire::Text(text)) => humantime::parse_duration(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_merge_per_content_id() {
        let flags: Vec<FaultFlag> = [
            "abc:start_delay=1500ms",
            "abc:bitrate_bps=2000000",
            "abc:no_data",
            "def:refuse=no such channel: gone=yes",
            "*:stall_after=2s",
            "*:stall_for=500ms",
        ]
        .iter()
        .map(|text| text.parse().expect("valid flag"))
        .collect();
        let faults = faults_from_flags(&flags).expect("valid flags");
        assert_eq!(faults["abc"].start_delay, Some(Duration::from_millis(1500)));
        assert_eq!(faults["abc"].bitrate_bps, Some(2_000_000));
        assert!(faults["abc"].no_data);
        assert_eq!(
            faults["def"].refuse.as_deref(),
            Some("no such channel: gone=yes")
        );
        assert_eq!(
            faults[ANY_CONTENT].stall_for,
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        assert!(matches!(
            "abc".parse::<FaultFlag>(),
            Err(FaultError::Shape(_))
        ));
        assert!(matches!(
            ":start_delay=1s".parse::<FaultFlag>(),
            Err(FaultError::Shape(_))
        ));
        assert!(matches!(
            "abc:latency=1s".parse::<FaultFlag>(),
            Err(FaultError::UnknownKnob(_))
        ));
        assert!(matches!(
            "abc:start_delay=soon".parse::<FaultFlag>(),
            Err(FaultError::Value {
                knob: "start_delay",
                ..
            })
        ));
        assert!(matches!(
            "abc:bitrate_bps=0".parse::<FaultFlag>(),
            Err(FaultError::Value {
                knob: "bitrate_bps",
                ..
            })
        ));
        assert!(matches!(
            "abc:no_data=maybe".parse::<FaultFlag>(),
            Err(FaultError::Value {
                knob: "no_data",
                ..
            })
        ));
    }

    #[test]
    fn json_accepts_text_or_millis_and_round_trips() {
        let faults: Faults = serde_json::from_str(
            r#"{"start_delay": "2s", "stall_after": 1500, "cut_after_bytes": 1000}"#,
        )
        .expect("valid JSON");
        assert_eq!(faults.start_delay, Some(Duration::from_secs(2)));
        assert_eq!(faults.stall_after, Some(Duration::from_millis(1500)));
        assert_eq!(faults.cut_after_bytes, Some(1000));
        assert!(!faults.no_data);
        let text = serde_json::to_string(&faults).expect("serialisable");
        assert!(text.contains(r#""stall_after":"1s 500ms""#), "{text}");
        let back: Faults = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back, faults);
        assert!(serde_json::from_str::<Faults>(r#"{"latency": "1s"}"#).is_err());
    }

    #[test]
    fn hls_knobs_parse_and_are_validated() {
        let flags: Vec<FaultFlag> = [
            "abc:playlist_delay=1500ms",
            "abc:segment_404_every=3",
            "abc:sequence_jump_after=10s",
            "abc:sequence_jump_by=20",
            "abc:sequence_reset_after=1m",
            "abc:playlist_stall_after=30s",
        ]
        .iter()
        .map(|text| text.parse().expect("valid flag"))
        .collect();
        let faults = &faults_from_flags(&flags).expect("valid flags")["abc"];
        assert_eq!(faults.playlist_delay, Some(Duration::from_millis(1500)));
        assert_eq!(faults.segment_404_every, Some(3));
        assert_eq!(faults.sequence_jump_after, Some(Duration::from_secs(10)));
        assert_eq!(faults.sequence_jump_by, Some(20));
        assert_eq!(faults.sequence_reset_after, Some(Duration::from_secs(60)));
        assert_eq!(faults.playlist_stall_after, Some(Duration::from_secs(30)));
        let text = serde_json::to_string(faults).expect("serialisable");
        assert_eq!(
            &serde_json::from_str::<Faults>(&text).expect("JSON"),
            faults
        );
        for (flag, knob) in [
            ("abc:segment_404_every=0", "segment_404_every"),
            ("abc:sequence_jump_by=0", "sequence_jump_by"),
            ("abc:sequence_jump_by=1000001", "sequence_jump_by"),
            ("abc:playlist_delay=25h", "playlist_delay"),
            ("abc:playlist_stall_after=soon", "playlist_stall_after"),
        ] {
            assert!(
                matches!(flag.parse::<FaultFlag>(), Err(FaultError::Value { knob: k, .. }) if k == knob),
                "{flag}"
            );
        }
        let json: Faults =
            serde_json::from_str(r#"{"playlist_delay": 250, "segment_404_every": 0}"#)
                .expect("parses; validated separately");
        assert!(json.validate().is_err());
    }
}
