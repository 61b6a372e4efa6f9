//! The cluster-wide reads: the other instances' channels in `GET /streams` and the
//! instances in `GET /cluster`, from the cluster's directory.

use acemux_core::cluster::directory::{DirectoryAnswer, InstanceRecord};
use acemux_core::lifecycle::StreamStatus;
use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::cluster::directory::freshness_name;

/// The header of `GET /streams` in cluster mode: how current the other instances'
/// rows are (`ok`, `stale`: Redis did not answer in time and the rows are from the last
/// read; `unavailable`: only this instance's rows), or `local` for `?scope=local`.
pub const CLUSTER_HEADER: &str = "x-acemux-cluster";

/// The `GET /streams` rows of the channels other instances own, as `answer` shows
/// them, filtered like this instance's rows (only started streams are published).
pub fn remote_streams(
    answer: &DirectoryAnswer,
    me: &str,
    status: Option<StreamStatus>,
    container_id: Option<&String>,
) -> Vec<Value> {
    if status == Some(StreamStatus::Ended) {
        return Vec::new();
    }
    answer
        .records
        .iter()
        .filter(|record| record.id != me)
        .flat_map(|record| {
            record
                .channels
                .iter()
                .filter(|channel| {
                    container_id.is_none_or(|id| channel.container_id.as_ref() == Some(id))
                })
                .map(move |channel| {
                    json!({
                        "id": channel.stream_id,
                        "status": "started",
                        "key_type": channel.key_type,
                        "key": channel.key,
                        "container_id": channel.container_id,
                        "started_at": channel.started_at,
                        "format": channel.format,
                        "viewers": channel.viewers,
                        "owner": record.id,
                        "owner_advertise": record.advertise,
                    })
                })
        })
        .collect()
}

/// `instances` of `GET /cluster`.
pub fn instances(answer: &DirectoryAnswer) -> Value {
    Value::Array(answer.records.iter().map(instance).collect())
}

fn instance(record: &InstanceRecord) -> Value {
    json!({
        "id": record.id,
        "advertise": record.advertise,
        "last_seen": record.published_at,
        "channels": record.channels,
    })
}

/// `directory` of `GET /cluster`: how current `instances` is.
pub fn directory_state(answer: &DirectoryAnswer) -> Value {
    json!({
        "state": freshness_name(answer.freshness),
        "read_at": answer.read_at.map(rfc3339),
    })
}
