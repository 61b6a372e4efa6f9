//! Flags of the test equipment's subcommands (`acemux emulate-engine`, `acemux relay`,
//! `acemux demo`). Every flag has an `ACEMUX_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use acemux::cli::{duration, engine_addr};
use acemux_core::lifecycle::EngineAddr;
use clap::Args;

use crate::emulator::FaultFlag;

/// `acemux demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address the proxy listens on.
    #[arg(long, env = "ACEMUX_LISTEN", default_value = "127.0.0.1:6880")]
    pub listen: SocketAddr,
}

/// `acemux emulate-engine` options.
#[derive(Debug, Args)]
pub struct EmulateEngineArgs {
    /// Address to listen on (engines listen on port 6878).
    #[arg(long, env = "ACEMUX_EMULATOR_LISTEN", default_value = "127.0.0.1:6878")]
    pub listen: SocketAddr,

    /// A fault for one content id (`*`: any content id without its own), as
    /// `<content_id>:<knob>=<value>`. Knobs: start_delay, bitrate_bps, stall_after,
    /// stall_for, cut_after_bytes, close_abruptly_after_bytes, `refuse=<message>`,
    /// no_data, and for HLS playlist_delay, segment_404_every, sequence_jump_after,
    /// sequence_jump_by, sequence_reset_after, playlist_stall_after. Durations like
    /// 500ms or 2s. Repeatable; `;`-separated in the environment.
    #[arg(long = "fault", env = "ACEMUX_EMULATOR_FAULTS", value_delimiter = ';')]
    pub faults: Vec<FaultFlag>,

    /// MPEG-TS file to loop instead of the built-in 8 s test pattern.
    #[arg(long, env = "ACEMUX_EMULATOR_MEDIA")]
    pub media: Option<PathBuf>,

    /// How far behind live a playback starts (sent at once as its first burst).
    #[arg(long, env = "ACEMUX_EMULATOR_PREBUFFER", default_value = "2s", value_parser = duration)]
    pub prebuffer: Duration,

    /// Sessions not stopped at once; `getstream` answers an error beyond.
    #[arg(long, env = "ACEMUX_EMULATOR_MAX_SESSIONS", default_value_t = 1000)]
    pub max_sessions: usize,

    /// Playback connections at once; 503 beyond.
    #[arg(long, env = "ACEMUX_EMULATOR_MAX_PLAYBACKS", default_value_t = 1000)]
    pub max_playbacks: usize,

    /// Connections served at once; 503 `capacity` beyond.
    #[arg(long, env = "ACEMUX_EMULATOR_MAX_CONNECTIONS", default_value_t = 2048)]
    pub max_connections: usize,

    /// Async worker threads; 1 runs everything on one thread, 0 uses one per core.
    #[arg(long, env = "ACEMUX_EMULATOR_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
}

/// `acemux relay` options.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Address to listen on.
    #[arg(long, env = "ACEMUX_RELAY_LISTEN")]
    pub listen: SocketAddr,

    /// Where to forward every connection, `host:port`.
    #[arg(long, env = "ACEMUX_RELAY_UPSTREAM", value_parser = engine_addr)]
    pub upstream: EngineAddr,

    /// Seed of the probability selectors (`p=…`): the same seed picks the same
    /// connections.
    #[arg(long, env = "ACEMUX_RELAY_SEED", default_value_t = 0)]
    pub seed: u64,

    /// A fault rule, `[selector:]knob[=value][,knob[=value]…]`. Selectors: all
    /// (default), conn=N, every=K, p=0.25. Knobs: dir=up|down|both, latency=200ms,
    /// throttle=64KB/s, stall_after_bytes=N or stall_after=5s with stall_for=10s,
    /// cut_after_bytes=N, rst_after_bytes=N, refuse. Later rules override earlier
    /// ones. Repeatable; `;`-separated in the environment.
    #[arg(long = "fault", env = "ACEMUX_RELAY_FAULTS", value_delimiter = ';')]
    pub faults: Vec<crate::relay::FaultRule>,

    /// Address of the control API (`/control/rules`, `/control/partition`,
    /// `/control/repair`, `/control/stats`); none without it.
    #[arg(long, env = "ACEMUX_RELAY_CONTROL")]
    pub control: Option<SocketAddr>,

    /// Connections relayed at once; more are closed at once.
    #[arg(long, env = "ACEMUX_RELAY_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Bound on dialling the upstream.
    #[arg(long, env = "ACEMUX_RELAY_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub connect_timeout: Duration,
}

impl RelayArgs {
    /// The relay configuration these flags describe.
    pub fn config(&self) -> Result<crate::relay::RelayConfig, String> {
        let plan =
            crate::relay::FaultPlan::new(self.faults.clone()).map_err(|error| error.to_string())?;
        let upstream = crate::relay::Upstream {
            host: self.upstream.host.clone(),
            port: self.upstream.port,
        };
        Ok(crate::relay::RelayConfig {
            seed: self.seed,
            plan,
            max_connections: self.max_connections,
            connect_timeout: self.connect_timeout,
            ..crate::relay::RelayConfig::new(upstream)
        })
    }
}
