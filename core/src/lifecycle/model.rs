//! The lifecycle vocabulary, with the acestream-orchestrator's JSON field names.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::{EndReason, LifecycleError};
use crate::time::Instant;

/// Longest accepted identifier (stream id, key, session id, container id), in bytes.
pub const MAX_ID_BYTES: usize = 512;
/// Longest accepted URL or free-text field (stat/command URL, host, reason), in bytes.
pub const MAX_TEXT_BYTES: usize = 2048;
/// Most labels a stream may carry.
pub const MAX_LABELS: usize = 64;

/// How a stream is addressed on the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    /// An AceStream content id (`id=`).
    ContentId,
    /// A torrent infohash (`infohash=`).
    Infohash,
    /// A torrent URL.
    Url,
    /// A magnet link.
    Magnet,
}

impl KeyType {
    /// The wire name, as in the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::ContentId => "content_id",
            KeyType::Infohash => "infohash",
            KeyType::Url => "url",
            KeyType::Magnet => "magnet",
        }
    }
}

/// An engine's HTTP address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EngineAddr {
    /// Host name or IP address.
    pub host: String,
    /// HTTP API port.
    pub port: u16,
}

impl fmt::Display for EngineAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What is being streamed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamKey {
    /// How `key` is to be read.
    pub key_type: KeyType,
    /// The content id, infohash, URL or magnet link.
    pub key: String,
}

/// The engine's playback session for a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The engine's id for this playback session.
    pub playback_session_id: String,
    /// Where the engine reports statistics for the session.
    pub stat_url: String,
    /// Where the session is commanded (`?method=stop`).
    pub command_url: String,
    /// Whether the content is live. Engines send `0`/`1`; `true`/`false` is accepted too.
    #[serde(deserialize_with = "bool_or_int")]
    pub is_live: bool,
}

/// `POST /events/stream_started`: a stream began playing on an engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStarted {
    /// The engine's container, when it runs in one.
    #[serde(default)]
    pub container_id: Option<String>,
    /// The engine serving the stream.
    pub engine: EngineAddr,
    /// What is streamed.
    pub stream: StreamKey,
    /// The engine's playback session.
    pub session: SessionInfo,
    /// Free-form labels; `stream_id` here overrides the derived stream id.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `POST /events/stream_ended`: a stream stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnded {
    /// The engine's container; alone, it names its one active stream.
    #[serde(default)]
    pub container_id: Option<String>,
    /// The stream that ended.
    #[serde(default)]
    pub stream_id: Option<String>,
    /// Why it ended.
    #[serde(default)]
    pub reason: Option<EndReason>,
}

/// Where a stream is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// Playing.
    Started,
    /// Over; it will not start again under the same id.
    Ended,
}

impl StreamStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Started => "started",
            StreamStatus::Ended => "ended",
        }
    }
}

/// Everything known about one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// The stream id: `labels["stream_id"]`, else `"{key}|{playback_session_id}"`.
    pub id: String,
    /// Current status.
    pub status: StreamStatus,
    /// The engine's container, when known.
    pub container_id: Option<String>,
    /// The engine serving it.
    pub engine: EngineAddr,
    /// What is streamed.
    pub stream: StreamKey,
    /// The engine's playback session.
    pub session: SessionInfo,
    /// Labels as given at start.
    pub labels: BTreeMap<String, String>,
    /// When the start was applied.
    pub started_at: Instant,
    /// When the end was applied.
    pub ended_at: Option<Instant>,
    /// Why it ended, as reported.
    pub end_reason: Option<EndReason>,
    /// Sequence number of the latest event about this stream.
    pub last_event_seq: u64,
}

impl StreamStarted {
    /// The id this start is registered under.
    pub fn stream_id(&self) -> String {
        match self.labels.get("stream_id") {
            Some(id) if !id.is_empty() => id.clone(),
            _ => format!("{}|{}", self.stream.key, self.session.playback_session_id),
        }
    }

    /// Checks every field against the documented limits.
    pub fn validate(&self) -> Result<(), LifecycleError> {
        if let Some(container_id) = &self.container_id {
            check_id("container_id", container_id)?;
        }
        check_text("engine.host", &self.engine.host)?;
        if self.engine.host.is_empty() {
            return Err(invalid("engine.host", "must not be empty"));
        }
        if self.engine.port == 0 {
            return Err(invalid("engine.port", "must be 1..=65535"));
        }
        check_id("stream.key", &self.stream.key)?;
        check_id(
            "session.playback_session_id",
            &self.session.playback_session_id,
        )?;
        check_text("session.stat_url", &self.session.stat_url)?;
        check_text("session.command_url", &self.session.command_url)?;
        if self.labels.len() > MAX_LABELS {
            return Err(invalid("labels", "too many labels"));
        }
        for (name, value) in &self.labels {
            check_id("labels key", name)?;
            check_text("labels value", value)?;
        }
        if let Some(id) = self.labels.get("stream_id") {
            check_id("labels.stream_id", id)?;
        }
        // The derived "{key}|{session}" id must fit where ends name stream ids.
        check_id("stream_id", &self.stream_id())?;
        Ok(())
    }
}

impl StreamEnded {
    /// Checks every field against the documented limits.
    pub fn validate(&self) -> Result<(), LifecycleError> {
        if let Some(container_id) = &self.container_id {
            check_id("container_id", container_id)?;
        }
        if let Some(stream_id) = &self.stream_id {
            check_id("stream_id", stream_id)?;
        }
        if let Some(reason) = &self.reason {
            check_text("reason", reason.as_str())?;
        }
        Ok(())
    }
}

fn invalid(field: &'static str, reason: &'static str) -> LifecycleError {
    LifecycleError::Invalid { field, reason }
}

fn check_id(field: &'static str, value: &str) -> Result<(), LifecycleError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_BYTES {
        return Err(invalid(field, "longer than 512 bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

fn check_text(field: &'static str, value: &str) -> Result<(), LifecycleError> {
    if value.len() > MAX_TEXT_BYTES {
        return Err(invalid(field, "longer than 2048 bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

fn bool_or_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    match Flag::deserialize(deserializer)? {
        Flag::Bool(flag) => Ok(flag),
        Flag::Int(0) => Ok(false),
        Flag::Int(1) => Ok(true),
        Flag::Int(_) => Err(serde::de::Error::custom(
            "is_live must be 0, 1, true or false",
        )),
    }
}
