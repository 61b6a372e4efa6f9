//! Why a stream ended: a closed vocabulary for the reasons acemux itself gives, plus
//! whatever text an orchestrator sends through `POST /events/stream_ended`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a stream (or a channel) ended. On the wire (event bodies, logs, metric labels)
/// it is the string of [`as_str`](Self::as_str); a known string reads back as its
/// variant, any other as [`EndReason::Other`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// The last viewer left and the idle grace passed.
    Idle,
    /// An operator stopped it (`DELETE /streams/{id}`).
    Deleted,
    /// No media arrived within the start timeout.
    StartTimeout,
    /// Every session request failed.
    StartFailed,
    /// The session stopped sending and reconnects did not help: it is replaced.
    UpstreamStalled,
    /// Recovery did not bring media back within its bound.
    UpstreamLost,
    /// The engine reported no peers and no download progress for the no-peers bound:
    /// the session is replaced.
    NoPeers,
    /// The process is shutting down.
    Shutdown,
    /// acemux stopped without ending it (killed, power lost) and found it still started
    /// when it started again: no channel plays it any more.
    Restarted,
    /// Nothing can reach the channel any more.
    Unreachable,
    /// Cluster mode: the instance that owned the channel stopped answering; the
    /// instance that took the channel over stopped its session.
    OwnerLost,
    /// A reason given by someone else, as written.
    Other(String),
}

impl EndReason {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            EndReason::Idle => "idle",
            EndReason::Deleted => "deleted",
            EndReason::StartTimeout => "start_timeout",
            EndReason::StartFailed => "start_failed",
            EndReason::UpstreamStalled => "upstream_stalled",
            EndReason::UpstreamLost => "upstream_lost",
            EndReason::NoPeers => "no_peers",
            EndReason::Shutdown => "shutdown",
            EndReason::Restarted => "restarted",
            EndReason::Unreachable => "unreachable",
            EndReason::OwnerLost => "owner_lost",
            EndReason::Other(text) => text,
        }
    }

    /// The reason a wire string names: a known one as its variant, anything else as
    /// [`EndReason::Other`].
    pub fn from_text(text: &str) -> EndReason {
        match text {
            "idle" => EndReason::Idle,
            "deleted" => EndReason::Deleted,
            "start_timeout" => EndReason::StartTimeout,
            "start_failed" => EndReason::StartFailed,
            "upstream_stalled" => EndReason::UpstreamStalled,
            "upstream_lost" => EndReason::UpstreamLost,
            "no_peers" => EndReason::NoPeers,
            "shutdown" => EndReason::Shutdown,
            "restarted" => EndReason::Restarted,
            "unreachable" => EndReason::Unreachable,
            "owner_lost" => EndReason::OwnerLost,
            other => EndReason::Other(other.to_owned()),
        }
    }
}

impl From<&str> for EndReason {
    fn from(text: &str) -> Self {
        EndReason::from_text(text)
    }
}

impl From<String> for EndReason {
    fn from(text: String) -> Self {
        match EndReason::from_text(&text) {
            EndReason::Other(_) => EndReason::Other(text),
            known => known,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EndReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EndReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(EndReason::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_reason_reads_back_as_itself() {
        for reason in [
            EndReason::Idle,
            EndReason::Deleted,
            EndReason::StartTimeout,
            EndReason::StartFailed,
            EndReason::UpstreamStalled,
            EndReason::UpstreamLost,
            EndReason::NoPeers,
            EndReason::Shutdown,
            EndReason::Restarted,
            EndReason::Unreachable,
            EndReason::OwnerLost,
        ] {
            assert_eq!(EndReason::from_text(reason.as_str()), reason);
        }
        assert_eq!(
            EndReason::from("engine crashed"),
            EndReason::Other("engine crashed".into())
        );
    }

    #[test]
    fn the_wire_form_is_the_plain_string() {
        let json = serde_json::to_string(&EndReason::UpstreamLost).expect("serializes");
        assert_eq!(json, r#""upstream_lost""#);
        let other: EndReason = serde_json::from_str(r#""operator said so""#).expect("reads");
        assert_eq!(other, EndReason::Other("operator said so".into()));
    }
}
