//! What the proxy shows of itself: its channels (state, engine, bytes and rates,
//! viewers) and each channel's viewers, for the status page and the viewer routes.

use std::sync::Arc;

use acemux_core::lifecycle::EngineAddr;
use acemux_core::Instant;

use super::viewers::{ChannelStatus, ViewerKind, ViewerRecord};
use super::{ChannelKey, Proxy};
use crate::net::Net;

/// One channel as the status page shows it.
#[derive(Clone, Debug)]
pub struct ChannelSummary {
    /// What identifies it.
    pub key: ChannelKey,
    /// Its process-wide number (HLS segment URIs name it).
    pub id: u64,
    /// The stream id of its current session, once it has started.
    pub stream_id: Option<String>,
    /// `starting`, `playing` or `recovering`.
    pub phase: &'static str,
    /// The engine of its current session.
    pub engine: Option<EngineAddr>,
    /// When it was created.
    pub created_at: Instant,
    /// The last thing that went wrong, and when.
    pub last_error: Option<(String, Instant)>,
    /// Media bytes from the engine, and their rate now (bytes per second).
    pub bytes_in: (u64, u64),
    /// Media bytes to viewers, and their rate now.
    pub bytes_out: (u64, u64),
    /// Its viewers and players now.
    pub viewers: Vec<ViewerSummary>,
}

/// One viewer or HLS player as the viewer routes show it.
#[derive(Clone, Debug)]
pub struct ViewerSummary {
    /// Unique in the process.
    pub id: u64,
    /// `ts` or `hls`.
    pub kind: &'static str,
    /// The HLS player's token.
    pub token: Option<String>,
    /// Its address.
    pub ip: Option<std::net::IpAddr>,
    /// Its user agent.
    pub user_agent: Option<String>,
    /// When it connected (TS) or first asked (HLS).
    pub connected_at: Instant,
    /// When it last received or asked for something.
    pub last_active: Instant,
    /// Bytes sent to it.
    pub bytes_sent: u64,
    /// Bytes per second sent to it now.
    pub rate: u64,
}

impl ViewerSummary {
    fn of(record: &ViewerRecord, now: Instant) -> Self {
        let (kind, token) = match &record.kind {
            ViewerKind::Ts => ("ts", None),
            ViewerKind::Hls { token } => ("hls", Some(token.clone())),
        };
        ViewerSummary {
            id: record.id,
            kind,
            token,
            ip: record.client.ip,
            user_agent: record.client.user_agent.clone(),
            connected_at: record.connected_at,
            last_active: record.last_active(),
            bytes_sent: record.sent.total(),
            rate: record.sent.rate(now),
        }
    }
}

impl<N: Net> Proxy<N> {
    /// Every channel now, by key.
    pub fn channel_summaries(&self) -> Vec<ChannelSummary> {
        let now = self.0.lifecycle.clock().now();
        let channels: Vec<(ChannelKey, u64, Option<String>, Arc<ChannelStatus>)> = self
            .channels()
            .iter()
            .map(|(key, handle)| {
                (
                    key.clone(),
                    handle.id,
                    handle.stream_id.borrow().clone(),
                    handle.status.clone(),
                )
            })
            .collect();
        channels
            .into_iter()
            .map(|(key, id, stream_id, status)| {
                let state = status.state();
                ChannelSummary {
                    key,
                    id,
                    stream_id,
                    phase: state.phase,
                    engine: state.engine,
                    created_at: status.created_at,
                    last_error: state.last_error.zip(state.last_error_at),
                    bytes_in: (status.bytes_in.total(), status.bytes_in.rate(now)),
                    bytes_out: {
                        let (ts_total, ts_rate) = status.ts_bytes_out(now);
                        (
                            status.bytes_out.total() + ts_total,
                            status.bytes_out.rate(now) + ts_rate,
                        )
                    },
                    viewers: self.viewer_summaries(&status, now),
                }
            })
            .collect()
    }

    fn viewer_summaries(&self, status: &ChannelStatus, now: Instant) -> Vec<ViewerSummary> {
        status
            .viewer_list(now, self.0.config.hls_idle_timeout)
            .iter()
            .map(|record| ViewerSummary::of(record, now))
            .collect()
    }

    /// The viewers of the channel whose current session is `stream_id`; `None` when no
    /// channel plays it.
    pub fn viewers_of_stream(&self, stream_id: &str) -> Option<Vec<ViewerSummary>> {
        let status = self
            .channels()
            .values()
            .find(|handle| handle.stream_id.borrow().as_deref() == Some(stream_id))
            .map(|handle| handle.status.clone())?;
        let now = self.0.lifecycle.clock().now();
        Some(self.viewer_summaries(&status, now))
    }

    /// The viewers of every channel of stream key `key` (any format and parameters);
    /// `None` when no channel has that key.
    pub fn viewers_of_key(&self, key: &str) -> Option<Vec<ViewerSummary>> {
        let statuses: Vec<Arc<ChannelStatus>> = self
            .channels()
            .iter()
            .filter(|(channel, _)| channel.key.eq_ignore_ascii_case(key))
            .map(|(_, handle)| handle.status.clone())
            .collect();
        if statuses.is_empty() {
            return None;
        }
        let now = self.0.lifecycle.clock().now();
        Some(
            statuses
                .iter()
                .flat_map(|status| self.viewer_summaries(status, now))
                .collect(),
        )
    }
}
