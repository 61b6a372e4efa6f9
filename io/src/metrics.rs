//! Prometheus metrics (prometheus-client), rendered at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `acemux_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route pattern (not the raw path, which would explode cardinality).
    pub route: String,
    /// The response status code.
    pub status: u16,
}

/// Labels naming an event type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `stream_started` or `stream_ended`.
    pub r#type: String,
}

/// Labels of webhook metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// The webhook base URL.
    pub webhook: String,
}

/// Labels naming an engine list (`--engines-from`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineListLabels {
    /// The list's URL.
    pub source: String,
}

/// Labels naming a proxied channel.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// `[hls:]<key type>:<key>[<player parameters>]`, e.g. `content_id:<id>`,
    /// `hls:infohash:<hash>`, `content_id:<id>[file_indexes=1]`.
    pub channel: String,
}

impl ChannelLabels {
    /// Labels for `channel`.
    pub fn new(channel: &impl std::fmt::Display) -> Self {
        ChannelLabels {
            channel: channel.to_string(),
        }
    }
}

/// The figures an engine reports of a channel's session, per channel; a channel's
/// series go when its session does.
#[derive(Clone, Debug, Default)]
pub struct SessionStatsMetrics {
    peers: Family<ChannelLabels, Gauge>,
    speed_down: Family<ChannelLabels, Gauge>,
    speed_up: Family<ChannelLabels, Gauge>,
    downloaded: Family<ChannelLabels, Gauge>,
    uploaded: Family<ChannelLabels, Gauge>,
}

impl SessionStatsMetrics {
    fn families(&self) -> [(&'static str, &'static str, &Family<ChannelLabels, Gauge>); 5] {
        [
            (
                "engine_peers",
                "Peers of the channel's engine session",
                &self.peers,
            ),
            (
                "engine_speed_down_kilobytes",
                "Download speed of the channel's engine session, KB/s",
                &self.speed_down,
            ),
            (
                "engine_speed_up_kilobytes",
                "Upload speed of the channel's engine session, KB/s",
                &self.speed_up,
            ),
            (
                "engine_downloaded_bytes",
                "Bytes the channel's engine session downloaded",
                &self.downloaded,
            ),
            (
                "engine_uploaded_bytes",
                "Bytes the channel's engine session uploaded",
                &self.uploaded,
            ),
        ]
    }

    fn register(&self, registry: &mut Registry) {
        for (name, help, family) in self.families() {
            registry.register(format!("channel_{name}"), help, family.clone());
        }
    }

    /// Shows `stats` for the channel `labels` names.
    pub fn set(&self, labels: &ChannelLabels, stats: &acemux_core::channel::EngineStats) {
        let values = [
            stats.peers,
            stats.speed_down,
            stats.speed_up,
            stats.downloaded,
            stats.uploaded,
        ];
        for ((_, _, family), value) in self.families().into_iter().zip(values) {
            family
                .get_or_create(labels)
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    /// Removes the channel's series.
    pub fn remove(&self, labels: &ChannelLabels) {
        for (_, _, family) in self.families() {
            family.remove(labels);
        }
    }
}

/// Labels of cut HLS segments.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CutLabels {
    /// The channel.
    pub channel: String,
    /// `keyframe` (a random-access point), `discontinuity` (after a new playback or a
    /// timestamp jump, without one) or `bound` (cut at the duration or byte bound
    /// without one).
    pub start: String,
}

/// Labels of cluster lease events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseEventLabels {
    /// `acquired`, `lost`, `local_fallback`, `stale_fencing` or `expired`.
    pub event: String,
}

/// Labels of failed Redis calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedisCallLabels {
    /// `acquire`, `renew`, `release` or `raise`.
    pub call: String,
}

/// Labels of HLS fetches from a channel's owning instance.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HlsRelayFetchLabels {
    /// `playlist` or `segment`.
    pub kind: &'static str,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// Labels of cluster directory reads.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectoryReadLabels {
    /// `ok`, `stale` or `unavailable`.
    pub result: String,
}

/// Labels of viewer drops.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// The channel.
    pub channel: String,
    /// `stalled` or `fell_behind`.
    pub reason: String,
}

/// Labels naming an engine.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EngineLabels {
    /// The engine's configured address, `host:port`.
    pub engine: String,
}

/// Labels of `acemux_limit_hits_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The bound that was hit, e.g. `connections`, `body_bytes`, `channels`.
    pub limit: String,
}

/// Every metric acemux exports.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Connections open now.
    pub http_connections: Gauge,
    /// Connections refused because the connection cap was reached.
    pub http_connections_rejected: Counter,
    /// Streams active in the registry.
    pub active_streams: Gauge,
    /// Events appended to the outbox, by type.
    pub events: Family<EventLabels, Counter>,
    /// Event requests answered from the idempotency-key cache.
    pub idempotent_replays: Counter,
    /// Webhook deliveries accepted by the receiver.
    pub webhook_delivered: Family<WebhookLabels, Counter>,
    /// Webhook delivery attempts that failed and will be retried.
    pub webhook_retried: Family<WebhookLabels, Counter>,
    /// Webhook deliveries refused for good by the receiver.
    pub webhook_rejected: Family<WebhookLabels, Counter>,
    /// Events waiting to be delivered, per webhook.
    pub webhook_pending: Family<WebhookLabels, Gauge>,
    /// Engines each engine list names now (the last good list).
    pub engine_list_engines: Family<EngineListLabels, Gauge>,
    /// Polls of an engine list that could not be used (unreachable, bad status,
    /// malformed); the last good list stays.
    pub engine_list_failures: Family<EngineListLabels, Counter>,
    /// Event store writes that failed.
    pub store_commit_errors: Counter,
    /// Proxied channels running.
    pub channels: Gauge,
    /// Viewers per channel.
    pub channel_viewers: Family<ChannelLabels, Gauge>,
    /// Media bytes received from engines, per channel.
    pub channel_bytes_in: Family<ChannelLabels, Counter>,
    /// Bytes sent to viewers, per channel.
    pub channel_bytes_out: Family<ChannelLabels, Counter>,
    /// Playback connections acemux closed because the engine sent nothing for the
    /// stall timeout, per channel (a playback that fails by itself counts as a
    /// reconnect).
    pub channel_upstream_stalls: Family<ChannelLabels, Counter>,
    /// Playback reconnects after the stream had started, per channel.
    pub channel_reconnects: Family<ChannelLabels, Counter>,
    /// What the engine reports of each channel's session (`stat_url`).
    pub session_stats: SessionStatsMetrics,
    /// Stat polls that failed, per channel.
    pub channel_stat_failures: Family<ChannelLabels, Counter>,
    /// Sessions replaced for zero peers and no download progress, per channel.
    pub channel_no_peers: Family<ChannelLabels, Counter>,
    /// Viewers dropped, by channel and reason.
    pub viewer_drops: Family<DropLabels, Counter>,
    /// Engine sessions stopped.
    pub engine_stops: Counter,
    /// Sessions an engine granted after acemux had given up on the request (each is
    /// stopped at once), per engine.
    pub engine_late_sessions: Family<EngineLabels, Counter>,
    /// Time from a viewer's request to its first media bytes.
    pub time_to_first_byte: Histogram,
    /// Requests, connections or inputs refused or cut because a configured bound was
    /// reached, by bound.
    pub limit_hits: Family<LimitLabels, Counter>,
    /// Bytes from engines that were not MPEG-TS packets (no sync byte where one was
    /// due) and were discarded, per channel.
    pub ts_discarded_bytes: Family<ChannelLabels, Counter>,
    /// Engine playlist polls that failed (unreachable, invalid, too large), per channel.
    pub hls_playlist_errors: Family<ChannelLabels, Counter>,
    /// HLS segments cut from a channel's TS, by how they start.
    pub hls_cut_segments: Family<CutLabels, Counter>,
    /// Webhook deliveries given up after `--webhook-max-attempts` or beyond
    /// `--webhook-max-pending` (the event stays in the event log).
    pub webhook_given_up: Family<WebhookLabels, Counter>,
    /// Cluster mode: channel leases this instance holds now.
    pub cluster_leases: Gauge,
    /// Cluster mode: lease events, by event.
    pub cluster_lease_events: Family<LeaseEventLabels, Counter>,
    /// Cluster mode: Redis calls that failed or timed out, by call.
    pub cluster_redis_failures: Family<RedisCallLabels, Counter>,
    /// Cluster mode: upstream connections opened to the owning instance of a channel.
    pub cluster_relays: Counter,
    /// Cluster mode: HLS playlist and segment fetches from the owning instance of a
    /// channel, by kind and result.
    pub cluster_hls_relay_fetches: Family<HlsRelayFetchLabels, Counter>,
    /// Cluster mode: directory reads (`GET /streams`, `GET /cluster`), by result.
    pub cluster_directory_reads: Family<DirectoryReadLabels, Counter>,
    /// Refusals at configured bounds, logged once per bound and second.
    pub refusals: crate::refusals::RefusalLog,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All metrics, registered under the `acemux` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("acemux");
        let metrics = Metrics {
            http_requests: Family::default(),
            http_connections: Gauge::default(),
            http_connections_rejected: Counter::default(),
            active_streams: Gauge::default(),
            events: Family::default(),
            idempotent_replays: Counter::default(),
            webhook_delivered: Family::default(),
            webhook_retried: Family::default(),
            webhook_rejected: Family::default(),
            webhook_pending: Family::default(),
            engine_list_engines: Family::default(),
            engine_list_failures: Family::default(),
            store_commit_errors: Counter::default(),
            channels: Gauge::default(),
            channel_viewers: Family::default(),
            channel_bytes_in: Family::default(),
            channel_bytes_out: Family::default(),
            channel_upstream_stalls: Family::default(),
            channel_reconnects: Family::default(),
            session_stats: SessionStatsMetrics::default(),
            channel_stat_failures: Family::default(),
            channel_no_peers: Family::default(),
            viewer_drops: Family::default(),
            engine_stops: Counter::default(),
            engine_late_sessions: Family::default(),
            time_to_first_byte: Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            limit_hits: Family::default(),
            ts_discarded_bytes: Family::default(),
            hls_playlist_errors: Family::default(),
            hls_cut_segments: Family::default(),
            webhook_given_up: Family::default(),
            cluster_leases: Gauge::default(),
            cluster_lease_events: Family::default(),
            cluster_redis_failures: Family::default(),
            cluster_relays: Counter::default(),
            cluster_hls_relay_fetches: Family::default(),
            cluster_directory_reads: Family::default(),
            refusals: crate::refusals::RefusalLog::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered",
            metrics.http_requests.clone(),
        );
        registry.register(
            "http_connections",
            "HTTP connections open",
            metrics.http_connections.clone(),
        );
        registry.register(
            "http_connections_rejected",
            "HTTP connections refused at the connection cap",
            metrics.http_connections_rejected.clone(),
        );
        registry.register(
            "active_streams",
            "Streams active in the registry",
            metrics.active_streams.clone(),
        );
        registry.register(
            "events",
            "Lifecycle events appended to the outbox",
            metrics.events.clone(),
        );
        registry.register(
            "idempotent_replays",
            "Event requests answered from the idempotency-key cache",
            metrics.idempotent_replays.clone(),
        );
        registry.register(
            "webhook_delivered",
            "Webhook deliveries accepted",
            metrics.webhook_delivered.clone(),
        );
        registry.register(
            "webhook_retried",
            "Webhook delivery attempts that failed and will be retried",
            metrics.webhook_retried.clone(),
        );
        registry.register(
            "webhook_rejected",
            "Webhook deliveries refused for good by the receiver",
            metrics.webhook_rejected.clone(),
        );
        registry.register(
            "webhook_pending",
            "Events waiting for webhook delivery",
            metrics.webhook_pending.clone(),
        );
        registry.register(
            "engine_list_engines",
            "Engines each engine list (--engines-from) names now",
            metrics.engine_list_engines.clone(),
        );
        registry.register(
            "engine_list_failures",
            "Polls of an engine list that could not be used; the last good list stays",
            metrics.engine_list_failures.clone(),
        );
        registry.register(
            "store_commit_errors",
            "Event store writes that failed",
            metrics.store_commit_errors.clone(),
        );
        registry.register(
            "channels",
            "Proxied channels running",
            metrics.channels.clone(),
        );
        registry.register(
            "channel_viewers",
            "Viewers per channel",
            metrics.channel_viewers.clone(),
        );
        registry.register(
            "channel_bytes_in",
            "Media bytes received from engines",
            metrics.channel_bytes_in.clone(),
        );
        registry.register(
            "channel_bytes_out",
            "Bytes sent to viewers",
            metrics.channel_bytes_out.clone(),
        );
        registry.register(
            "channel_upstream_stalls",
            "Playback connections closed because the engine sent nothing for the stall timeout",
            metrics.channel_upstream_stalls.clone(),
        );
        registry.register(
            "channel_reconnects",
            "Playback reconnects after the stream had started",
            metrics.channel_reconnects.clone(),
        );
        metrics.session_stats.register(&mut registry);
        registry.register(
            "channel_stat_failures",
            "Engine stat polls that failed",
            metrics.channel_stat_failures.clone(),
        );
        registry.register(
            "channel_no_peers_replacements",
            "Sessions replaced for zero peers and no download progress",
            metrics.channel_no_peers.clone(),
        );
        registry.register(
            "viewer_drops",
            "Viewers dropped",
            metrics.viewer_drops.clone(),
        );
        registry.register(
            "cluster_leases",
            "Channel leases this instance holds",
            metrics.cluster_leases.clone(),
        );
        registry.register(
            "cluster_lease_events",
            "Channel lease events",
            metrics.cluster_lease_events.clone(),
        );
        registry.register(
            "cluster_redis_failures",
            "Redis calls that failed or timed out",
            metrics.cluster_redis_failures.clone(),
        );
        registry.register(
            "cluster_relays",
            "Upstream connections opened to the owning instance of a channel",
            metrics.cluster_relays.clone(),
        );
        registry.register(
            "cluster_hls_relay_fetches",
            "HLS playlist and segment fetches from the owning instance of a channel",
            metrics.cluster_hls_relay_fetches.clone(),
        );
        registry.register(
            "cluster_directory_reads",
            "Cluster directory reads, by result",
            metrics.cluster_directory_reads.clone(),
        );
        registry.register(
            "engine_stops",
            "Engine sessions stopped",
            metrics.engine_stops.clone(),
        );
        registry.register(
            "engine_late_sessions",
            "Sessions granted after their request timed out, stopped at once",
            metrics.engine_late_sessions.clone(),
        );
        registry.register(
            "time_to_first_byte_seconds",
            "Time from a viewer's request to its first media bytes",
            metrics.time_to_first_byte.clone(),
        );
        registry.register(
            "limit_hits",
            "Requests, connections or inputs refused or cut at a configured bound",
            metrics.limit_hits.clone(),
        );
        registry.register(
            "ts_discarded_bytes",
            "Bytes from engines discarded as not MPEG-TS",
            metrics.ts_discarded_bytes.clone(),
        );
        registry.register(
            "hls_playlist_errors",
            "Engine playlist polls that failed",
            metrics.hls_playlist_errors.clone(),
        );
        registry.register(
            "hls_cut_segments",
            "HLS segments cut from a channel's TS, by how they start",
            metrics.hls_cut_segments.clone(),
        );
        registry.register(
            "webhook_given_up",
            "Webhook deliveries given up (too many attempts, or beyond the pending bound)",
            metrics.webhook_given_up.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts one hit of the bound `limit` (`acemux_limit_hits_total{limit}`).
    pub fn limit_hit(&self, limit: &str) {
        self.limit_hits
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .inc();
    }

    /// Removes every per-channel series of the channel `labels` names, as it ends:
    /// per-channel series stay bounded by the channels running (`--max-channels`).
    pub fn remove_channel(&self, labels: &ChannelLabels) {
        for family in [
            &self.channel_bytes_in,
            &self.channel_bytes_out,
            &self.channel_upstream_stalls,
            &self.channel_reconnects,
            &self.channel_stat_failures,
            &self.channel_no_peers,
            &self.ts_discarded_bytes,
            &self.hls_playlist_errors,
        ] {
            family.remove(labels);
        }
        self.channel_viewers.remove(labels);
        self.session_stats.remove(labels);
        for start in ["keyframe", "discontinuity", "bound"] {
            self.hls_cut_segments.remove(&CutLabels {
                channel: labels.channel.clone(),
                start: start.to_owned(),
            });
        }
        for reason in [
            acemux_core::fanout::DropReason::FellBehind,
            acemux_core::fanout::DropReason::Stalled,
        ] {
            self.viewer_drops.remove(&DropLabels {
                channel: labels.channel.clone(),
                reason: reason.as_str().to_owned(),
            });
        }
    }

    /// Counts a request or connection refused at the bound `limit` (a 503), and logs it
    /// in that bound's next summary line.
    pub fn refused(&self, limit: &'static str) {
        self.limit_hit(limit);
        self.refusals.refused(limit);
    }

    /// Counts `count` hits of the bound `limit` at once, e.g. one per item it dropped.
    pub fn limit_hits_by(&self, limit: &str, count: u64) {
        self.limit_hits
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .inc_by(count);
    }

    /// Counts one session `engine` granted after its request timed out
    /// (`acemux_engine_late_sessions_total{engine}`).
    pub fn engine_late_session(&self, engine: &impl std::fmt::Display) {
        self.engine_late_sessions
            .get_or_create(&EngineLabels {
                engine: engine.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
