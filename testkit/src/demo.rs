//! `acemux demo`: the proxy and a built-in engine emulator in one process, so a
//! fresh clone can be watched in a player with one command.

use std::net::SocketAddr;
use std::sync::Arc;

use acemux_core::lifecycle::EngineAddr;

use crate::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use acemux::app::{start, Running, ServeOptions};
use acemux::clock::unix_micros_now;
use acemux::net::{Net, TokioNet};
use acemux::store::{EventStore, SqliteStore};

/// The content id the demo prints a URL for (any id works: the emulator plays the
/// same media for every id).
pub const DEMO_CONTENT_ID: &str = "acemux-demo";

/// The running demo.
pub struct Demo {
    /// acemux.
    pub acemux: Running,
    /// The emulated engine.
    pub engine: RunningEmulator,
}

impl Demo {
    /// Starts the emulator on a free loopback port and acemux on `listen`, with the
    /// event log in memory.
    pub async fn start(listen: SocketAddr) -> Result<Demo, String> {
        let engine = Emulator::new(EmulatorConfig::default())
            .spawn(
                TokioNet
                    .bind(
                        SocketAddr::from(([127, 0, 0, 1], 0)),
                        acemux::net::DEFAULT_BACKLOG,
                    )
                    .await
                    .map_err(|error| format!("cannot start the engine emulator: {error}"))?,
            )
            .map_err(|error| format!("cannot start the engine emulator: {error}"))?;
        let store: Arc<dyn EventStore> = SqliteStore::open(":memory:".as_ref(), Vec::new())
            .map_err(|error| format!("cannot open the in-memory event log: {error}"))?;
        let listener = TokioNet
            .bind(listen, acemux::net::DEFAULT_BACKLOG)
            .await
            .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
        let origin = unix_micros_now();
        let mut options = ServeOptions {
            clock_origin_unix_micros: origin,
            engines: vec![EngineAddr {
                host: "127.0.0.1".into(),
                port: engine.local_addr().port(),
            }],
            ..ServeOptions::default()
        };
        options.registry.seed = origin;
        let acemux = start(TokioNet, listener, store, options)
            .await
            .map_err(|error| error.to_string())?;
        Ok(Demo { acemux, engine })
    }

    /// What to open in a player.
    pub fn stream_url(&self) -> String {
        format!(
            "http://{}/ace/getstream?id={DEMO_CONTENT_ID}",
            self.acemux.local_addr()
        )
    }

    /// Stops acemux (stopping its engine sessions), then the emulator.
    pub async fn shutdown(self) {
        self.acemux.shutdown().await;
        self.engine.shutdown().await;
    }
}
