//! Fault rules: which connections a rule selects and what it does to them, parsed
//! from `--fault` text (`[selector:]knob[=value][,knob[=value]]…`) and from the
//! control API, and merged into one [`ConnectionFaults`] per accepted connection.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use acemux_core::rng::mix;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest accepted duration knob: sleeps stay bounded.
const MAX_FAULT_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Bounds of a throttle, in bytes per second: pacing arithmetic stays sane.
const THROTTLE_BPS_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000_000_000;
/// Longest accepted rule text.
const MAX_RULE_BYTES: usize = 512;
/// Rules in one plan at most.
pub const MAX_RULES: usize = 64;

/// Which accepted connections a rule applies to. Connections are numbered from 1 in
/// accept order.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Selector {
    /// Every connection.
    All,
    /// Only connection number N.
    Nth(u64),
    /// Connections K, 2K, 3K, ….
    Every(u64),
    /// Each connection with this probability, drawn from the relay's seed, the
    /// connection number and the rule's position (the same seed selects the same
    /// connections).
    Probability(f64),
}

impl Selector {
    fn selects(&self, seed: u64, connection: u64, rule_index: usize) -> bool {
        match *self {
            Selector::All => true,
            Selector::Nth(n) => connection == n,
            Selector::Every(k) => connection % k == 0,
            Selector::Probability(p) => {
                let draw = mix(seed ^ mix(connection) ^ mix(rule_index as u64 ^ 0x005E_1EC7)) >> 11;
                // 53 random bits as a fraction in [0, 1).
                (draw as f64) / ((1u64 << 53) as f64) < p
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All => write!(f, "all"),
            Selector::Nth(n) => write!(f, "conn={n}"),
            Selector::Every(k) => write!(f, "every={k}"),
            Selector::Probability(p) => write!(f, "p={p}"),
        }
    }
}

/// The directions a rule's knobs act on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Directions {
    /// Client → upstream (requests).
    Up,
    /// Upstream → client (answers, media).
    Down,
    /// Both.
    #[default]
    Both,
}

/// When a stall begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StallStart {
    /// After this many bytes went through the direction.
    AfterBytes(u64),
    /// This long after the connection was accepted.
    After(#[serde(with = "humantime_text")] Duration),
}

/// One stall: forwarding stops for `duration`, then resumes where it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Stall {
    /// When it begins.
    pub start: StallStart,
    /// How long nothing is forwarded.
    #[serde(with = "humantime_text")]
    pub duration: Duration,
}

/// What happens to one direction of one connection. The default forwards untouched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DirectionFaults {
    /// Each chunk is forwarded this long after it was read, in order.
    #[serde(with = "humantime_opt")]
    pub latency: Option<Duration>,
    /// Forwarding rate cap, bytes per second.
    pub throttle_bps: Option<u64>,
    /// One stall.
    pub stall: Option<Stall>,
    /// After this many bytes the connection is closed cleanly (FIN both ways).
    pub cut_after_bytes: Option<u64>,
    /// After this many bytes the connection is reset (RST where the network allows).
    pub rst_after_bytes: Option<u64>,
}

impl DirectionFaults {
    /// Whether anything is changed.
    pub fn is_clean(&self) -> bool {
        *self == DirectionFaults::default()
    }
}

/// What happens to one accepted connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionFaults {
    /// Closed at once, upstream never dialled.
    pub refuse: bool,
    /// Client → upstream.
    pub up: DirectionFaults,
    /// Upstream → client.
    pub down: DirectionFaults,
}

/// One rule: a selector and the knobs it sets. Its text form round-trips through
/// [`FromStr`] and [`fmt::Display`].
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// Which connections.
    pub selector: Selector,
    /// Which directions the knobs act on.
    pub directions: Directions,
    /// Close every selected connection at once.
    pub refuse: bool,
    /// The knobs, applied to each selected direction.
    pub faults: DirectionFaults,
    text: String,
}

/// A rule that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RuleError {
    /// Empty, too long, or not shaped `[selector:]knob[=value],…`.
    #[error("expected [selector:]knob[=value][,knob[=value]…], got {0:?}")]
    Shape(String),
    /// No such selector.
    #[error("unknown selector {0:?} (selectors: all, conn=N, every=K, p=0..1)")]
    UnknownSelector(String),
    /// No such knob.
    #[error("unknown knob {0:?} (knobs: dir, latency, throttle, stall_after_bytes, stall_after, stall_for, cut_after_bytes, rst_after_bytes, refuse)")]
    UnknownKnob(String),
    /// The value does not parse or is out of bounds.
    #[error("invalid value for {knob}: {reason}")]
    Value {
        /// The knob or selector.
        knob: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Knobs that cannot go together, or one missing its partner.
    #[error("{0}")]
    Combination(&'static str),
    /// More rules than a plan holds.
    #[error("at most {MAX_RULES} rules")]
    TooMany,
}

impl FromStr for FaultRule {
    type Err = RuleError;

    fn from_str(text: &str) -> Result<Self, RuleError> {
        let text = text.trim();
        let shape = || RuleError::Shape(text.to_owned());
        if text.is_empty() || text.len() > MAX_RULE_BYTES {
            return Err(shape());
        }
        let (selector, knobs) = match text.split_once(':') {
            Some((selector, knobs)) => (parse_selector(selector.trim())?, knobs),
            None => (Selector::All, text),
        };
        let mut rule = FaultRule {
            selector,
            directions: Directions::Both,
            refuse: false,
            faults: DirectionFaults::default(),
            text: String::new(),
        };
        let mut stall_after_bytes = None;
        let mut stall_after = None;
        let mut stall_for = None;
        for setting in knobs.split(',') {
            let (knob, value) = setting.split_once('=').unwrap_or((setting, ""));
            let (knob, value) = (knob.trim(), value.trim());
            if knob.is_empty() {
                return Err(shape());
            }
            match knob {
                "dir" => {
                    rule.directions = match value {
                        "up" => Directions::Up,
                        "down" => Directions::Down,
                        "both" => Directions::Both,
                        other => {
                            return Err(RuleError::Value {
                                knob: "dir",
                                reason: format!("{other:?} is not up, down or both"),
                            })
                        }
                    }
                }
                "latency" => rule.faults.latency = Some(duration("latency", value)?),
                "throttle" => rule.faults.throttle_bps = Some(rate(value)?),
                "stall_after_bytes" => {
                    stall_after_bytes = Some(integer("stall_after_bytes", value)?);
                }
                "stall_after" => stall_after = Some(duration("stall_after", value)?),
                "stall_for" => stall_for = Some(duration("stall_for", value)?),
                "cut_after_bytes" => {
                    rule.faults.cut_after_bytes = Some(integer("cut_after_bytes", value)?);
                }
                "rst_after_bytes" => {
                    rule.faults.rst_after_bytes = Some(integer("rst_after_bytes", value)?);
                }
                "refuse" => {
                    if !value.is_empty() && value != "true" {
                        return Err(RuleError::Value {
                            knob: "refuse",
                            reason: format!("{value:?}: takes no value"),
                        });
                    }
                    rule.refuse = true;
                }
                other => return Err(RuleError::UnknownKnob(other.to_owned())),
            }
        }
        let start = match (stall_after_bytes, stall_after) {
            (Some(_), Some(_)) => {
                return Err(RuleError::Combination(
                    "stall_after_bytes and stall_after cannot go together",
                ))
            }
            (Some(bytes), None) => Some(StallStart::AfterBytes(bytes)),
            (None, Some(after)) => Some(StallStart::After(after)),
            (None, None) => None,
        };
        rule.faults.stall = match (start, stall_for) {
            (Some(start), Some(duration)) => Some(Stall { start, duration }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(RuleError::Combination(
                    "a stall needs stall_for (how long it lasts)",
                ))
            }
            (None, Some(_)) => {
                return Err(RuleError::Combination(
                    "stall_for needs stall_after_bytes or stall_after (when it begins)",
                ))
            }
        };
        if rule.refuse && !rule.faults.is_clean() {
            return Err(RuleError::Combination(
                "refuse closes the connection at once: no other knob applies",
            ));
        }
        if rule.faults.cut_after_bytes.is_some() && rule.faults.rst_after_bytes.is_some() {
            return Err(RuleError::Combination(
                "cut_after_bytes and rst_after_bytes cannot go together",
            ));
        }
        if !rule.refuse && rule.faults.is_clean() {
            return Err(RuleError::Combination("the rule sets no fault"));
        }
        rule.text = text.to_owned();
        Ok(rule)
    }
}

impl fmt::Display for FaultRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_selector(text: &str) -> Result<Selector, RuleError> {
    let (name, value) = text.split_once('=').unwrap_or((text, ""));
    match (name.trim(), value.trim()) {
        ("all", "") => Ok(Selector::All),
        ("conn", value) => match integer("conn", value)? {
            0 => Err(RuleError::Value {
                knob: "conn",
                reason: "connections are numbered from 1".to_owned(),
            }),
            n => Ok(Selector::Nth(n)),
        },
        ("every", value) => match integer("every", value)? {
            0 => Err(RuleError::Value {
                knob: "every",
                reason: "must be at least 1".to_owned(),
            }),
            k => Ok(Selector::Every(k)),
        },
        ("p", value) => match value.parse::<f64>() {
            Ok(p) if (0.0..=1.0).contains(&p) => Ok(Selector::Probability(p)),
            _ => Err(RuleError::Value {
                knob: "p",
                reason: format!("{value:?} is not a probability in 0..1"),
            }),
        },
        _ => Err(RuleError::UnknownSelector(text.to_owned())),
    }
}

fn duration(knob: &'static str, value: &str) -> Result<Duration, RuleError> {
    let parsed = humantime::parse_duration(value).map_err(|error| RuleError::Value {
        knob,
        reason: format!("{value:?}: {error} (examples: 200ms, 5s)"),
    })?;
    if parsed > MAX_FAULT_DURATION {
        return Err(RuleError::Value {
            knob,
            reason: "longer than 24h".to_owned(),
        });
    }
    Ok(parsed)
}

fn integer(knob: &'static str, value: &str) -> Result<u64, RuleError> {
    value.parse().map_err(|error| RuleError::Value {
        knob,
        reason: format!("{value:?}: {error}"),
    })
}

/// `64KB/s`, `1MiB/s`, `500B/s`, `8000` (bytes per second; the `/s` is optional).
fn rate(value: &str) -> Result<u64, RuleError> {
    let invalid = |reason: String| RuleError::Value {
        knob: "throttle",
        reason,
    };
    let amount = value.strip_suffix("/s").unwrap_or(value).trim();
    let split = amount
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(amount.len());
    let (digits, unit) = amount.split_at(split);
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" => 1_024,
        "MB" => 1_000_000,
        "MiB" => 1_048_576,
        "GB" => 1_000_000_000,
        other => {
            return Err(invalid(format!(
                "unknown unit {other:?} (B, KB, KiB, MB, MiB, GB; e.g. 64KB/s)"
            )))
        }
    };
    let bps = digits
        .parse::<u64>()
        .ok()
        .and_then(|count| count.checked_mul(multiplier))
        .ok_or_else(|| invalid(format!("{value:?} is not a rate like 64KB/s")))?;
    if !THROTTLE_BPS_RANGE.contains(&bps) {
        return Err(invalid(format!(
            "{bps} B/s is outside {THROTTLE_BPS_RANGE:?}"
        )));
    }
    Ok(bps)
}

/// An ordered list of rules; later rules override the knobs of earlier ones for the
/// connections both select.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// A plan of `rules` (at most [`MAX_RULES`]).
    pub fn new(rules: Vec<FaultRule>) -> Result<Self, RuleError> {
        if rules.len() > MAX_RULES {
            return Err(RuleError::TooMany);
        }
        Ok(FaultPlan { rules })
    }

    /// Parses each text as a rule.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Self, RuleError> {
        let rules = texts
            .iter()
            .map(|text| text.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()?;
        FaultPlan::new(rules)
    }

    /// A plan that refuses every connection (a partition).
    pub fn refuse_all() -> Self {
        FaultPlan {
            rules: vec!["all:refuse".parse().expect("a valid constant rule")],
        }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    /// The rules' text forms.
    pub fn texts(&self) -> Vec<String> {
        self.rules.iter().map(ToString::to_string).collect()
    }

    /// The faults of connection number `connection` (from 1) under `seed`.
    pub fn faults_for(&self, seed: u64, connection: u64) -> ConnectionFaults {
        let mut faults = ConnectionFaults::default();
        for (index, rule) in self.rules.iter().enumerate() {
            if !rule.selector.selects(seed, connection, index) {
                continue;
            }
            faults.refuse |= rule.refuse;
            if matches!(rule.directions, Directions::Up | Directions::Both) {
                merge(&mut faults.up, &rule.faults);
            }
            if matches!(rule.directions, Directions::Down | Directions::Both) {
                merge(&mut faults.down, &rule.faults);
            }
        }
        faults
    }
}

fn merge(into: &mut DirectionFaults, from: &DirectionFaults) {
    into.latency = from.latency.or(into.latency);
    into.throttle_bps = from.throttle_bps.or(into.throttle_bps);
    into.stall = from.stall.or(into.stall);
    if from.cut_after_bytes.is_some() || from.rst_after_bytes.is_some() {
        into.cut_after_bytes = from.cut_after_bytes;
        into.rst_after_bytes = from.rst_after_bytes;
    }
}

/// Serde for durations as humantime text.
mod humantime_text {
    use std::time::Duration;

    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }
}

/// Serde for optional durations as humantime text.
mod humantime_opt {
    use std::time::Duration;

    use serde::{Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value
            .map(|duration| humantime::format_duration(duration).to_string())
            .serialize(serializer)
    }
}

/// The control API's body for replacing the rules.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesUpdate {
    /// The new rules, as text.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Whether connections already open are cut (FIN) as well.
    #[serde(default)]
    pub cut_existing: bool,
}
