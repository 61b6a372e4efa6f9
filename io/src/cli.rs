//! Command-line configuration. Every flag has an `ACEMUX_*` environment variable;
//! `acemux --help`, `acemux serve --help` and `docs/config.md` (generated from these
//! definitions: `UPDATE_DOCS=1 cargo test -p acemux-cmd --test config_docs`) are the
//! configuration reference.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use acemux_core::channel::{ChannelConfig, StatsConfig};
use acemux_core::channel_list::BaseUrl;
use acemux_core::fanout::FanoutConfig;
use acemux_core::hls::HlsConfig;
use acemux_core::lifecycle::{EngineAddr, RegistryConfig};
use clap::{Args, ValueEnum};

use crate::app::ServeOptions;
use crate::config::HlsSource;
use crate::http::{CorsPolicy, PlayerRules, StreamMode};
use crate::playlists::{base_url, load_channels, Playlists, DEFAULT_MAX_PLAYLIST_BYTES};
use crate::proxy::ProxyConfig;
use crate::server::ServerLimits;
use crate::webhook::{DeliveryPolicy, WebhookFormat, WebhookTarget};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Parses a duration flag (`500ms`, `10s`, `2m`).
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{error} (examples: 500ms, 10s, 2m)"))
}

/// `acemux serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ACEMUX_LISTEN", default_value = "127.0.0.1:6880")]
    pub listen: SocketAddr,

    /// Connections the kernel queues before acemux accepts them: room for a crowd that
    /// connects at once (the kernel caps it at `net.core.somaxconn`).
    #[arg(long, env = "ACEMUX_LISTEN_BACKLOG", default_value_t = crate::net::DEFAULT_BACKLOG)]
    pub listen_backlog: u32,

    /// Bearer API key required by the event routes. Without one they are open.
    #[arg(long, env = "ACEMUX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Origins whose web pages may play the player routes (getstream, HLS manifest and
    /// segments) and read `/playlist.m3u`: `*` for any, `off` for no cross-origin headers, else origins
    /// (`https://host[:port]`; repeatable, or comma-separated).
    #[arg(
        long,
        env = "ACEMUX_CORS_ORIGIN",
        default_value = "*",
        value_delimiter = ','
    )]
    pub cors_origin: Vec<String>,

    /// Take `url=` (a torrent URL) and `magnet=` from players and hand them to the
    /// engine, which fetches them. Off by default: they let a player make an engine
    /// fetch an address of its choosing (403 `source_not_allowed`).
    #[arg(long, env = "ACEMUX_ALLOW_URL_SOURCES")]
    pub allow_url_sources: bool,

    /// What `/ace/getstream` answers: `ts` (the channel's MPEG-TS) or `hls` (a 302 to
    /// the same channel's HLS playlist, as the orchestrator's HLS mode).
    #[arg(long, env = "ACEMUX_STREAM_MODE", value_enum, default_value_t = StreamMode::Ts)]
    pub stream_mode: StreamMode,

    /// acemux's address as players and media servers reach it
    /// (`http(s)://host[:port][/prefix]`, no query), for every URL acemux hands out
    /// (`/playlist.m3u`, `/playlist/rewrite`). Without it, each request's `Host`.
    #[arg(long, env = "ACEMUX_PUBLIC_URL", value_parser = base_url)]
    pub public_url: Option<BaseUrl>,

    /// A channel list, served as `GET /playlist.m3u` with acemux's URLs: an M3U file
    /// (`.m3u`, `.m3u8`: `#EXTINF` lines and `acestream://` or engine URLs) or a TOML one
    /// (`.toml`: `[[channel]]` tables of `name`, `id` or `infohash`, `group`, `logo`,
    /// `tvg_id`). Read at start; a malformed one stops acemux, naming the line. At most
    /// 10,000 channels.
    #[arg(long, env = "ACEMUX_CHANNELS")]
    pub channels: Option<PathBuf>,

    /// Largest playlist read, in bytes: the `--channels` file, a `POST
    /// /playlist/rewrite` body (413 beyond).
    #[arg(long, env = "ACEMUX_MAX_PLAYLIST_BYTES", default_value_t = DEFAULT_MAX_PLAYLIST_BYTES)]
    pub max_playlist_bytes: usize,

    /// SQLite database of the event log (`:memory:` for a throw-away one).
    #[arg(long, env = "ACEMUX_DB", default_value = "acemux.db")]
    pub db: PathBuf,

    /// Base URL that receives every event as `POST <URL>/events/<type>`. Repeatable;
    /// comma-separated in the environment.
    #[arg(
        long = "event-webhook",
        env = "ACEMUX_EVENT_WEBHOOKS",
        value_delimiter = ','
    )]
    pub event_webhooks: Vec<String>,

    /// Bearer key sent to webhook receivers.
    #[arg(long, env = "ACEMUX_EVENT_WEBHOOK_API_KEY", hide_env_values = true)]
    pub event_webhook_api_key: Option<String>,

    /// The event bodies webhook receivers expect: `orchestrator-py` (engine, stream key,
    /// session URLs, labels) or `orchestrator-go` (`content_id`, `engine_id`).
    #[arg(
        long,
        env = "ACEMUX_EVENT_WEBHOOK_FORMAT",
        value_enum,
        default_value_t = WebhookFormat::OrchestratorPy
    )]
    pub event_webhook_format: WebhookFormat,

    /// Bound on one webhook delivery attempt.
    #[arg(long, env = "ACEMUX_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub webhook_timeout: Duration,

    /// First delay before retrying a failed webhook delivery; doubles per failure.
    #[arg(long, env = "ACEMUX_WEBHOOK_INITIAL_BACKOFF", default_value = "500ms", value_parser = duration)]
    pub webhook_initial_backoff: Duration,

    /// Longest delay between webhook delivery retries.
    #[arg(long, env = "ACEMUX_WEBHOOK_MAX_BACKOFF", default_value = "60s", value_parser = duration)]
    pub webhook_max_backoff: Duration,

    /// Attempts per event and webhook before its delivery is given up (logged, counted;
    /// the event stays in the event log). 0: retry for ever.
    #[arg(long, env = "ACEMUX_WEBHOOK_MAX_ATTEMPTS", default_value_t = 10_000)]
    pub webhook_max_attempts: u32,

    /// Deliveries waiting per webhook; beyond it the oldest are given up (logged,
    /// counted; the events stay in the event log). 0: unbounded.
    #[arg(long, env = "ACEMUX_WEBHOOK_MAX_PENDING", default_value_t = 100_000)]
    pub webhook_max_pending: u64,

    /// Connections served at once; more get 503 `capacity`.
    #[arg(long, env = "ACEMUX_MAX_CONNECTIONS", default_value_t = 16_384)]
    pub max_connections: usize,

    /// Time a client has to send its request headers.
    #[arg(long, env = "ACEMUX_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,

    /// Largest request head (request line and headers), in bytes (431 beyond; at
    /// least 8192).
    #[arg(long, env = "ACEMUX_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,

    /// Largest accepted request body, in bytes (413 beyond).
    #[arg(long, env = "ACEMUX_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Time a client has to send a request body whole (408 beyond).
    #[arg(long, env = "ACEMUX_BODY_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub body_read_timeout: Duration,

    /// Time in-flight requests get to finish at shutdown.
    #[arg(long, env = "ACEMUX_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// Bound on waiting for an event to be committed to the database (503 beyond).
    #[arg(long, env = "ACEMUX_COMMIT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub commit_timeout: Duration,

    /// Streams active at once in the registry (503 `capacity` beyond).
    #[arg(long, env = "ACEMUX_MAX_ACTIVE_STREAMS", default_value_t = 10_000)]
    pub max_active_streams: usize,

    /// Ended streams remembered in memory (the database keeps them all).
    #[arg(long, env = "ACEMUX_MAX_ENDED_STREAMS", default_value_t = 10_000)]
    pub max_ended_streams: usize,

    /// How long an ended stream stays in memory.
    #[arg(long, env = "ACEMUX_ENDED_RETENTION", default_value = "24h", value_parser = duration)]
    pub ended_retention: Duration,

    /// Seed for event ids of a new database (default: from the clock and process id).
    /// An existing database keeps its own seed.
    #[arg(long, env = "ACEMUX_SEED")]
    pub seed: Option<u64>,

    /// Async worker threads; 1 runs everything on one thread, 0 uses one per core.
    #[arg(long, env = "ACEMUX_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

    #[command(flatten)]
    pub proxy: ProxyArgs,

    /// Cluster mode.
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
}

/// Proxy options (engines, channels, viewers).
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// An AceStream engine's HTTP API address, `host:port`. Repeatable; comma-separated
    /// in the environment. A host name that resolves to several addresses is one engine
    /// per address (looked up again every `--engines-poll-interval`). Without engines
    /// `/ace/getstream` answers 503.
    #[arg(long = "engine", env = "ACEMUX_ENGINES", value_delimiter = ',', value_parser = engine_addr)]
    pub engines: Vec<EngineAddr>,

    /// An orchestrator's engine list to poll (`http://…/engines` of the Python
    /// orchestrator, `http://…/api/v1/engines` of the Go one): engines it lists are
    /// used, engines that leave it get no new sessions, draining ones neither.
    /// Repeatable; comma-separated in the environment.
    #[arg(long = "engines-from", env = "ACEMUX_ENGINES_FROM", value_delimiter = ',', value_parser = crate::discovery::check_list_url)]
    pub engines_from: Vec<String>,

    /// How often each engine's version API is probed (`/webui/api/service?method=
    /// get_version`); an engine whose probe fails gets no new sessions until one is
    /// answered (probed again later each time, up to 8 intervals). 0 turns probing off.
    #[arg(long, env = "ACEMUX_ENGINE_HEALTH_INTERVAL", default_value = "10s", value_parser = duration)]
    pub engine_health_interval: Duration,

    /// How often each `--engines-from` list is polled.
    #[arg(long, env = "ACEMUX_ENGINES_POLL_INTERVAL", default_value = "10s", value_parser = duration)]
    pub engines_poll_interval: Duration,

    /// How often each playing session's `stat_url` is polled (peers, speeds, totals,
    /// shown on `/streams` and as per-channel metrics). 0 turns polling off (and with
    /// it the no-peers rule).
    #[arg(long, env = "ACEMUX_STAT_INTERVAL", default_value = "5s", value_parser = duration)]
    pub stat_interval: Duration,

    /// A session whose engine reports zero peers and no download progress this long is
    /// replaced (another engine preferred), as a stalled one is. 0 turns it off.
    #[arg(long, env = "ACEMUX_NO_PEERS_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub no_peers_timeout: Duration,

    /// Sessions acemux opens on one engine at most.
    #[arg(long, env = "ACEMUX_MAX_STREAMS_PER_ENGINE", default_value_t = 16)]
    pub max_streams_per_engine: usize,

    /// Bound on a new channel's wait for its first media (504 `engine_timeout` beyond).
    #[arg(long, env = "ACEMUX_START_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub start_timeout: Duration,

    /// Bound on each engine request (session, stop) and on a playback answer's head. A
    /// session request past it is still watched for max(6 × this, 60 s); a session the
    /// engine grants that late is stopped at once.
    #[arg(long, env = "ACEMUX_ENGINE_REQUEST_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub engine_request_timeout: Duration,

    /// Upstream silence after which the playback connection is reopened.
    #[arg(long, env = "ACEMUX_UPSTREAM_STALL_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub upstream_stall_timeout: Duration,

    /// Longest time spent recovering once a started stream's outage is detected; viewers
    /// are then closed and the stream ends (`upstream_lost`).
    #[arg(long, env = "ACEMUX_RECOVERY_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub recovery_timeout: Duration,

    /// A viewer whose writes make no progress this long is dropped.
    #[arg(long, env = "ACEMUX_VIEWER_STALL_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub viewer_stall_timeout: Duration,

    /// Time a channel without viewers keeps its engine session.
    #[arg(long, env = "ACEMUX_IDLE_GRACE", default_value = "10s", value_parser = duration)]
    pub idle_grace: Duration,

    /// Bytes of recent media kept per channel; a viewer further behind is dropped.
    #[arg(long, env = "ACEMUX_RING_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub ring_bytes: usize,

    /// Channels at once (503 `capacity` beyond).
    #[arg(long, env = "ACEMUX_MAX_CHANNELS", default_value_t = 256)]
    pub max_channels: usize,

    /// Viewers per channel (503 `capacity` beyond).
    #[arg(long, env = "ACEMUX_MAX_VIEWERS_PER_CHANNEL", default_value_t = 16_384)]
    pub max_viewers_per_channel: usize,

    /// Where HLS players' segments come from: `ts` (cut by acemux from the channel's
    /// MPEG-TS: TS and HLS players of a content share one channel and one engine
    /// session) or `engine` (the engine's own HLS, a channel and session of its own).
    #[arg(long, env = "ACEMUX_HLS_SOURCE", value_enum, default_value_t = HlsSource::Ts)]
    pub hls_source: HlsSource,

    /// The duration HLS segments cut from TS aim at (`--hls-source ts`): cut at the
    /// keyframe nearest it, never longer than three times it.
    #[arg(long, env = "ACEMUX_HLS_SEGMENT_TARGET", default_value = "2s", value_parser = duration)]
    pub hls_segment_target: Duration,

    /// Segments an HLS channel holds before its first playlist is served. Three lets
    /// common players (ffmpeg, VLC, hls.js), which start three target durations behind
    /// live, start without stalling.
    #[arg(long, env = "ACEMUX_HLS_READY_SEGMENTS", default_value_t = 3)]
    pub hls_ready_segments: usize,

    /// Segments listed in the served HLS playlist. A TS channel that no HLS player
    /// watches (none seen yet, or all idle) holds only these and 2 more of the
    /// segments it cuts.
    #[arg(long, env = "ACEMUX_HLS_WINDOW", default_value_t = 6)]
    pub hls_window: usize,

    /// The engine playlist is polled every target duration × this (0.1 to 1).
    #[arg(long, env = "ACEMUX_HLS_POLL_FACTOR", default_value_t = 0.5)]
    pub hls_poll_factor: f64,

    /// An HLS player that requests nothing this long stops counting as a viewer; with
    /// none left the channel stops after `--idle-grace`.
    #[arg(long, env = "ACEMUX_HLS_IDLE_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub hls_idle_timeout: Duration,

    /// An engine playlist that brings no new segment this long is reopened, then its
    /// session replaced (another engine when one is available); players keep polling.
    #[arg(long, env = "ACEMUX_HLS_STALL_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub hls_stall_timeout: Duration,

    /// Bytes of segments an HLS channel holds; the oldest are evicted beyond (the
    /// newest segment is always held). At most 30 segments are held, and while no HLS
    /// player watches a TS channel only `--hls-window` + 2 of those it cuts.
    #[arg(long, env = "ACEMUX_HLS_BUFFER_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub hls_buffer_bytes: usize,

    /// Largest engine segment fetched, in bytes; a larger one is cut off and becomes a
    /// discontinuity.
    #[arg(long, env = "ACEMUX_HLS_MAX_SEGMENT_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub hls_max_segment_bytes: usize,
}

/// Parses an engine address flag (`host:port`).
pub fn engine_addr(text: &str) -> Result<EngineAddr, String> {
    let (host, port) = text
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("{text:?} has no valid port"))?;
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    Ok(EngineAddr {
        host: host.to_owned(),
        port,
    })
}

impl ProxyArgs {
    /// The proxy configuration these flags describe.
    pub fn config(&self) -> ProxyConfig {
        let interval = Some(self.stat_interval).filter(|interval| !interval.is_zero());
        ProxyConfig {
            stats: StatsConfig {
                interval,
                no_peers_timeout: Some(self.no_peers_timeout)
                    .filter(|bound| !bound.is_zero() && interval.is_some()),
            },
            channel: ChannelConfig {
                start_timeout: self.start_timeout,
                upstream_stall_timeout: self.upstream_stall_timeout,
                recovery_timeout: self.recovery_timeout,
                idle_grace: self.idle_grace,
                ..ChannelConfig::default()
            },
            fanout: FanoutConfig {
                ring_capacity_bytes: self.ring_bytes,
                viewer_stall_timeout: self.viewer_stall_timeout,
                max_viewers: self.max_viewers_per_channel,
                ..FanoutConfig::default()
            },
            max_channels: self.max_channels,
            engine_request_timeout: self.engine_request_timeout,
            max_streams_per_engine: self.max_streams_per_engine,
            hls: HlsConfig {
                ready_segments: self.hls_ready_segments.max(1),
                window_segments: self.hls_window.max(1),
                max_buffer_bytes: self.hls_buffer_bytes,
                poll_factor_permille: (self.hls_poll_factor.clamp(0.1, 1.0) * 1000.0).round()
                    as u32,
                ..HlsConfig::default()
            },
            hls_source: self.hls_source,
            hls_segment_target: self.hls_segment_target,
            hls_idle_timeout: self.hls_idle_timeout,
            hls_stall_timeout: self.hls_stall_timeout,
            hls_max_segment_bytes: self.hls_max_segment_bytes.max(1),
            ..ProxyConfig::default()
        }
    }
}

impl ServeArgs {
    /// The server options these flags describe, for a process whose clock starts at
    /// `origin_unix_micros` and whose new database gets `seed`.
    pub fn options(&self, origin_unix_micros: u64, seed: u64) -> Result<ServeOptions, String> {
        let webhooks = self
            .event_webhooks
            .iter()
            .filter(|url| !url.trim().is_empty())
            .map(|url| WebhookTarget::parse(url.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| error.to_string())?;
        let channels = self
            .channels
            .as_deref()
            .map(|path| load_channels(path, self.max_playlist_bytes))
            .transpose()?;
        Ok(ServeOptions {
            api_key: self.api_key.clone().filter(|key| !key.is_empty()),
            player: PlayerRules {
                cors: CorsPolicy::parse(&self.cors_origin)?,
                allow_url_sources: self.allow_url_sources,
                stream_mode: self.stream_mode,
            },
            public_url: self.public_url.clone(),
            playlists: Playlists {
                channels: channels.map(std::sync::Arc::new),
                max_bytes: self.max_playlist_bytes,
            },
            webhooks,
            delivery: DeliveryPolicy {
                format: self.event_webhook_format,
                api_key: self.event_webhook_api_key.clone(),
                attempt_timeout: self.webhook_timeout,
                initial_backoff: self.webhook_initial_backoff,
                max_backoff: self.webhook_max_backoff,
                max_attempts: self.webhook_max_attempts,
                max_pending: self.webhook_max_pending,
            },
            server: ServerLimits {
                max_connections: self.max_connections,
                header_read_timeout: self.header_read_timeout,
                max_header_bytes: self.max_header_bytes,
                shutdown_timeout: self.shutdown_timeout,
            },
            max_body_bytes: self.max_body_bytes,
            body_read_timeout: self.body_read_timeout,
            commit_timeout: self.commit_timeout,
            registry: RegistryConfig {
                seed: self.seed.unwrap_or(seed),
                max_active_streams: self.max_active_streams,
                max_ended_streams: self.max_ended_streams,
                ended_retention: self.ended_retention,
                ..RegistryConfig::default()
            },
            clock_origin_unix_micros: origin_unix_micros,
            engines: self.proxy.engines.clone(),
            engine_lists: self.proxy.engines_from.clone(),
            engine_health_interval: (!self.proxy.engine_health_interval.is_zero()).then(|| {
                self.proxy
                    .engine_health_interval
                    .max(Duration::from_millis(100))
            }),
            engine_list_interval: self
                .proxy
                .engines_poll_interval
                .max(Duration::from_millis(100)),
            proxy: self.proxy.config(),
            cluster: self.cluster.options()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `acemux serve` alone, as the binary parses it.
    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        Serve::try_parse_from(["serve"].iter().chain(args)).map(|serve| serve.args)
    }

    fn serve_args(args: &[&str]) -> ServeArgs {
        parse(args).expect("the arguments parse")
    }

    #[test]
    fn webhook_max_pending_defaults_to_100000_and_reaches_the_delivery_policy() {
        let options = |args: &[&str]| serve_args(args).options(0, 1).expect("valid options");
        assert_eq!(options(&[]).delivery.max_pending, 100_000);
        assert_eq!(
            options(&["--webhook-max-pending", "3"])
                .delivery
                .max_pending,
            3
        );
        assert_eq!(
            options(&["--webhook-max-pending", "0"])
                .delivery
                .max_pending,
            0,
            "0 means unbounded"
        );
        assert!(parse(&["--webhook-max-pending", "-1"]).is_err());
    }

    #[test]
    fn stats_poll_every_5s_and_replace_after_60s_and_0_turns_each_off() {
        let stats = |args: &[&str]| {
            serve_args(args)
                .options(0, 1)
                .expect("valid options")
                .proxy
                .stats
        };
        assert_eq!(
            stats(&[]),
            StatsConfig {
                interval: Some(Duration::from_secs(5)),
                no_peers_timeout: Some(Duration::from_secs(60)),
            }
        );
        assert_eq!(
            stats(&["--no-peers-timeout", "0"]),
            StatsConfig {
                interval: Some(Duration::from_secs(5)),
                no_peers_timeout: None,
            }
        );
        assert_eq!(
            stats(&["--stat-interval", "0"]),
            StatsConfig::default(),
            "no polling, no figures to judge by"
        );
        assert_eq!(
            stats(&["--stat-interval", "2s", "--no-peers-timeout", "30s"]),
            StatsConfig {
                interval: Some(Duration::from_secs(2)),
                no_peers_timeout: Some(Duration::from_secs(30)),
            }
        );
    }

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "a test writes its channel files to disk"
    )]
    fn playlist_flags_reach_the_options_and_a_bad_channel_file_stops_with_its_line() {
        let options = |args: &[&str]| serve_args(args).options(0, 1);
        let plain = options(&[]).expect("valid");
        assert_eq!(plain.public_url, None);
        assert!(plain.playlists.channels.is_none());
        assert_eq!(plain.playlists.max_bytes, 4 << 20);
        assert!(parse(&["--public-url", "ftp://x"]).is_err());
        assert!(parse(&["--public-url", "http://tv.example/?a=1"]).is_err());

        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("list.m3u");
        std::fs::write(
            &good,
            "#EXTM3U\n#EXTINF:-1 group-title=\"G\",One\nacestream://0123456789abcdef0123456789abcdef01234567\n",
        )
        .expect("write");
        let path = good.to_str().expect("utf-8 path");
        let options = options(&[
            "--channels",
            path,
            "--public-url",
            "https://tv.example/acemux/",
            "--max-playlist-bytes",
            "1000",
        ])
        .expect("valid");
        assert_eq!(
            options.public_url.map(|url| url.to_string()),
            Some("https://tv.example/acemux".to_owned())
        );
        assert_eq!(options.playlists.max_bytes, 1000);
        let channels = options.playlists.channels.expect("channels");
        assert_eq!(channels.len(), 1);
        assert_eq!(channels[0].group.as_deref(), Some("G"));

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[[channel]]\nname = \"A\"\nid = \"nope\"\n").expect("write");
        let error = serve_args(&["--channels", bad.to_str().expect("utf-8 path")])
            .options(0, 1)
            .expect_err("invalid list");
        assert!(
            error.contains("bad.toml") && error.contains("line 3"),
            "{error}"
        );
        let error = serve_args(&["--channels", path, "--max-playlist-bytes", "10"])
            .options(0, 1)
            .expect_err("too large");
        assert!(error.contains("--max-playlist-bytes"), "{error}");
        let error = serve_args(&["--channels", "/nonexistent/list.m3u"])
            .options(0, 1)
            .expect_err("missing");
        assert!(error.contains("/nonexistent/list.m3u"), "{error}");
    }

    #[test]
    fn cors_origin_defaults_to_any_and_takes_a_list_or_off() {
        let options = |args: &[&str]| serve_args(args).options(0, 1);
        assert_eq!(options(&[]).expect("valid").player.cors, CorsPolicy::Any);
        assert_eq!(
            options(&["--cors-origin", "off"])
                .expect("valid")
                .player
                .cors,
            CorsPolicy::Off
        );
        assert_eq!(
            options(&[
                "--cors-origin",
                "https://a.example,https://b.example",
                "--cors-origin",
                "http://c.example:8080"
            ])
            .expect("valid")
            .player
            .cors,
            CorsPolicy::Origins(vec![
                "https://a.example".into(),
                "https://b.example".into(),
                "http://c.example:8080".into()
            ])
        );
        let error = options(&["--cors-origin", "a.example"]).expect_err("not an origin");
        assert!(error.contains("--cors-origin"), "{error}");
    }
}
