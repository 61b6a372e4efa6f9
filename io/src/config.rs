//! The proxy's configuration: what `acemux serve`'s flags set for the channels.

use std::time::Duration;

use acemux_core::channel::{ChannelConfig, CutHlsConfig, StatsConfig};
use acemux_core::fanout::FanoutConfig;
use acemux_core::hls::HlsConfig;
use acemux_core::planted::{Bug, Planted};
use acemux_core::ts::segmenter::SegmenterConfig;

/// Where the HLS players of a content get their segments from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HlsSource {
    /// Cut by acemux from the channel's MPEG-TS: one channel and one engine session per
    /// content, whatever the players ask for.
    #[default]
    Ts,
    /// The engine's own HLS output: an HLS channel of its own, with its own engine
    /// session, beside the TS one.
    Engine,
}

/// Bounds of the proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Timing of each channel.
    pub channel: ChannelConfig,
    /// Ring and viewer bounds of each channel.
    pub fanout: FanoutConfig,
    /// Channels at once; more get 503 `capacity`.
    pub max_channels: usize,
    /// Bound on each engine request (session, stop, fetch) up to its answer.
    pub engine_request_timeout: Duration,
    /// Sessions per engine.
    pub max_streams_per_engine: usize,
    /// How long an engine that keeps failing is skipped.
    pub engine_cooldown: Duration,
    /// Where HLS players' segments come from.
    pub hls_source: HlsSource,
    /// The duration segments cut from TS aim at (with `HlsSource::Ts`); none lasts
    /// more than three times this.
    pub hls_segment_target: Duration,
    /// Fetch loop and buffer of HLS channels (the ready, window and buffer bounds apply
    /// to cut HLS too).
    pub hls: HlsConfig,
    /// An HLS player that requests nothing this long no longer counts as a viewer.
    pub hls_idle_timeout: Duration,
    /// An engine playlist that brings no new segment this long is reopened (then the
    /// session replaced), like a silent TS playback.
    pub hls_stall_timeout: Duration,
    /// Largest segment read from an engine; a larger one is cut off and becomes a
    /// discontinuity.
    pub hls_max_segment_bytes: usize,
    /// Polling each playing session's stats, and the no-progress rule (off by default
    /// here; `acemux serve` polls every 5 s and replaces after 60 s).
    pub stats: StatsConfig,
    /// Bugs planted for the simulation's self-test (see
    /// [`acemux_core::planted`]); none in the product, and no flag sets them.
    pub planted: Planted,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            channel: ChannelConfig::default(),
            fanout: FanoutConfig::default(),
            max_channels: 256,
            engine_request_timeout: Duration::from_secs(10),
            max_streams_per_engine: 16,
            engine_cooldown: Duration::from_secs(10),
            hls_source: HlsSource::Ts,
            hls_segment_target: Duration::from_secs(2),
            hls: HlsConfig::default(),
            hls_idle_timeout: Duration::from_secs(30),
            hls_stall_timeout: Duration::from_secs(30),
            hls_max_segment_bytes: 32 * 1024 * 1024,
            stats: StatsConfig::default(),
            planted: Planted::NONE,
        }
    }
}

impl ProxyConfig {
    /// Plants `bug` in every machine it lives in: the simulation's self-test only.
    pub fn plant(&mut self, bug: Bug) {
        let planted = Planted::only(bug);
        self.planted = planted;
        self.fanout.planted = planted;
        self.hls.planted = planted;
    }

    /// The HLS a TS channel cuts, with `HlsSource::Ts`.
    pub fn cut_hls(&self) -> Option<CutHlsConfig> {
        (self.hls_source == HlsSource::Ts).then(|| CutHlsConfig {
            segmenter: SegmenterConfig {
                max_bytes: self.hls_max_segment_bytes.max(1),
                ..SegmenterConfig::with_target(self.hls_segment_target.max(MIN_SEGMENT_TARGET))
            },
            max_segments: self.hls.max_segments,
            max_buffer_bytes: self.hls.max_buffer_bytes,
            window_segments: self.hls.window_segments,
            ready_segments: self.hls.ready_segments,
            idle_timeout: self.hls_idle_timeout,
            first_playlist_timeout: self.channel.start_timeout,
            planted: self.planted,
            ..CutHlsConfig::default()
        })
    }
}

/// The shortest segment target taken (a shorter one is raised to it).
const MIN_SEGMENT_TARGET: Duration = Duration::from_millis(100);
