//! Lifecycle registry: `stream_started` / `stream_ended`, applied exactly once.

mod answers;
mod durability;
mod model;
mod reason;
mod registry;

use thiserror::Error;

pub use answers::{IdempotencyCache, DEFAULT_IDEMPOTENCY_CAPACITY};
pub use durability::{store_retry_delay, STORE_RETRY_FIRST, STORE_RETRY_MAX};
pub use model::{
    EngineAddr, KeyType, SessionInfo, StreamEnded, StreamKey, StreamStarted, StreamState,
    StreamStatus, MAX_ID_BYTES, MAX_LABELS, MAX_TEXT_BYTES,
};
pub use reason::EndReason;
pub use registry::{
    EngineState, Event, EventKind, Input, Outcome, Output, Registry, RegistryConfig,
};

/// Why the registry refused an input. The registry is unchanged after any of these.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// A field is out of its documented bounds.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as named in the JSON API.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A start for a stream id that has already ended; ids are not reused.
    #[error("stream {id:?} has already ended; a new session needs a new id")]
    AlreadyEnded {
        /// The stream id.
        id: String,
    },
    /// An end for a stream id that was never started (or was forgotten).
    #[error("unknown stream {id:?}")]
    UnknownStream {
        /// The stream id.
        id: String,
    },
    /// An end naming a stream and a container the stream is not on.
    #[error("stream {id:?} is not on container {container_id:?}")]
    ContainerMismatch {
        /// The stream id.
        id: String,
        /// The container named in the end.
        container_id: String,
    },
    /// An end by container while that container has no active stream.
    #[error("container {container_id:?} has no active stream")]
    NoActiveStream {
        /// The container named in the end.
        container_id: String,
    },
    /// An end by container while that container has several active streams.
    #[error("container {container_id:?} has {active} active streams; name the stream_id")]
    AmbiguousEnd {
        /// The container named in the end.
        container_id: String,
        /// How many streams are active on it.
        active: usize,
    },
    /// An end with neither `stream_id` nor `container_id`.
    #[error("stream_ended needs a stream_id or a container_id")]
    MissingTarget,
    /// The active-stream limit is reached.
    #[error("too many active streams (limit {limit})")]
    Capacity {
        /// The configured limit.
        limit: usize,
    },
}

impl LifecycleError {
    /// A stable, machine-readable code for the JSON API.
    pub fn code(&self) -> &'static str {
        match self {
            LifecycleError::Invalid { .. } => "invalid_field",
            LifecycleError::AlreadyEnded { .. } => "stream_already_ended",
            LifecycleError::UnknownStream { .. } => "unknown_stream",
            LifecycleError::ContainerMismatch { .. } => "container_mismatch",
            LifecycleError::NoActiveStream { .. } => "unknown_stream",
            LifecycleError::AmbiguousEnd { .. } => "ambiguous_end",
            LifecycleError::MissingTarget => "missing_target",
            LifecycleError::Capacity { .. } => "capacity",
        }
    }
}

#[cfg(test)]
mod tests;
