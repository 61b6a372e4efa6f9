//! An AceStream engine emulator: a real HTTP server that answers like an engine's
//! HTTP API and plays real MPEG-TS (H.264 + AAC) at its real bitrate, with fault
//! knobs. Used by `acemux emulate-engine`, `acemux demo`, the tests and the
//! simulator; generic over [`NetListener`], time only through `tokio::time`.
//!
//! Engine API (answers in the engine's envelope `{"response": …, "error": …}`):
//!
//! - `GET /ace/getstream?id=<content id>` (or `content_id=`, `infohash=`, `url=`,
//!   `magnet=`; `file_indexes=`, `live_delay=`, `seekback=` are taken and recorded)
//!   `&format=json` → a new session: `playback_url`, `stat_url`, `command_url`, `playback_session_id`, … .
//!   A refused or malformed request is a 200 with `"error"`, as engines do. Without
//!   `format=json` the stream itself is answered, for players pointed straight at it.
//! - `GET /ace/r/<session>` → `video/mp2t`: the media looped forever (see
//!   [`MediaLoop`]), from the channel's live position minus the prebuffer (moved
//!   back to a keyframe), sent as a burst and then paced at the media's bitrate.
//!   Every session of a content id shares one timeline that starts at the first
//!   `getstream` for it.
//! - `GET /ace/manifest.m3u8?id=<content id>&format=json` → a session whose
//!   `playback_url` is a live HLS playlist `/ace/m/<session>.m3u8` of 2 s segments
//!   `/ace/c/<session>/<n>.ts`, on the same timeline (see the `hls` module).
//! - `GET /ace/stat/<session>` → download statistics.
//! - `GET /webui/api/service?method=get_version` → the engine's version, as engines
//!   answer it (`{"result": {"code", "platform", "version"}, "error": null}`); a 500
//!   while the version fault is set.
//! - `GET /ace/cmd/<session>?method=stop` → stops the session: its playbacks end and
//!   later requests for it (playback, playlist, segments, stat) get 404.
//!
//! Control API: `PUT`/`GET`/`DELETE /control/faults/<content id>` ([`Faults`] as
//! JSON), `GET /control/faults`, `GET /control/stats` ([`EmulatorStats`]),
//! `GET /control/requests` (the latest session requests with their parameters,
//! [`SessionRequest`]), `PUT /control/version` (`{"fails": true|false}`).
//!
//! The session ids, the bytes at every stream offset and the schedule are fixed by
//! the media, the requests and the clock: no randomness.

mod faults;
mod hls;
mod media;
mod playback;
mod routes;
mod sessions;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use axum::Router;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub use acemux_core::ts::restamp::RestampError as MediaError;
pub use faults::{faults_from_flags, FaultError, FaultFlag, Faults, ANY_CONTENT};
pub use media::{MediaLoop, DEFAULT_MEDIA};
pub use routes::OFFSET_HEADER;
pub use sessions::{
    ContentStats, EmulatorStats, SessionRequest, SessionStats, MAX_RECORDED_REQUESTS,
};

use acemux::metrics::Metrics;
use acemux::net::NetListener;
use acemux::server::ServerLimits;
use sessions::{Limits, State};

/// How the emulator behaves and what it holds at most.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// What every channel plays.
    pub media: MediaLoop,
    /// How far behind live a playback starts; sent at once as the initial burst.
    /// HLS playlists list the segments complete within `prebuffer` + time since the
    /// channel's origin.
    pub prebuffer: Duration,
    /// How often a paced playback sends (each send carries this much media).
    pub pacing_interval: Duration,
    /// Faults per content id at start (`*` for any content id without its own);
    /// entries that fail [`Faults::validate`] are ignored with a warning.
    pub faults: BTreeMap<String, Faults>,
    /// Sessions not stopped; `getstream` answers an error beyond.
    pub max_sessions: usize,
    /// Stopped sessions remembered for their stats.
    pub max_remembered_sessions: usize,
    /// Distinct content ids; `getstream` answers an error beyond.
    pub max_contents: usize,
    /// Playback connections at once; 503 beyond.
    pub max_playbacks: usize,
    /// Content ids in the fault table.
    pub max_fault_entries: usize,
    /// Largest control request body.
    pub max_control_body_bytes: usize,
    /// HTTP server bounds.
    pub server: ServerLimits,
    /// Number of the first session; session ids derive from it. Emulators sharing a
    /// network (several engines, a restarted engine) start far apart so that their
    /// session ids differ, as real engines' do.
    pub first_session_number: u64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            media: MediaLoop::builtin(),
            prebuffer: Duration::from_secs(2),
            pacing_interval: Duration::from_millis(50),
            faults: BTreeMap::new(),
            max_sessions: 1000,
            max_remembered_sessions: 10_000,
            max_contents: 10_000,
            max_playbacks: 1000,
            max_fault_entries: 10_000,
            max_control_body_bytes: 16 * 1024,
            server: ServerLimits {
                max_connections: 2048,
                header_read_timeout: Duration::from_secs(10),
                shutdown_timeout: Duration::from_secs(5),
                ..ServerLimits::default()
            },
            first_session_number: 1,
        }
    }
}

/// What the routes and playbacks share.
pub(crate) struct Shared {
    config: EmulatorConfig,
    state: Mutex<State>,
    /// Set once at shutdown; every playback body then ends.
    shutdown: watch::Sender<bool>,
    /// The address served, for URLs when a request has no Host header.
    listen_addr: OnceLock<SocketAddr>,
    /// The HLS segments of `config.media`.
    hls: hls::Segmenter,
    /// The version API fails (500) while set: an engine that is up but unwell.
    version_fails: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The state. Held only for short synchronous updates, never across an `.await`.
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters at worst slightly off;
        // the emulator keeps serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_faults(&self, content_id: &str, faults: Faults) -> Result<(), FaultError> {
        faults.validate()?;
        if self.state().set_faults(content_id, faults) {
            Ok(())
        } else {
            Err(FaultError::TableFull(self.config.max_fault_entries))
        }
    }
}

/// An emulated engine. Cheap to clone; clones share state. One emulator serves
/// once: after its shutdown its playbacks end at once, so a restarted engine is a
/// new `Emulator`.
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// An emulator with no sessions yet.
    pub fn new(config: EmulatorConfig) -> Self {
        let limits = Limits {
            max_sessions: config.max_sessions,
            max_remembered_sessions: config.max_remembered_sessions,
            max_contents: config.max_contents,
            max_playbacks: config.max_playbacks,
            max_fault_entries: config.max_fault_entries,
        };
        let faults = config
            .faults
            .iter()
            .filter(|(content_id, faults)| match faults.validate() {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(content_id, %error, "ignoring invalid emulator faults");
                    false
                }
            })
            .map(|(content_id, faults)| (content_id.clone(), faults.clone()))
            .collect();
        let mut state = State::new(limits, faults);
        state.set_first_session_number(config.first_session_number);
        let (shutdown, _) = watch::channel(false);
        Emulator {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                shutdown,
                listen_addr: OnceLock::new(),
                hls: hls::Segmenter::new(&config.media, hls::GOPS_PER_SEGMENT),
                version_fails: std::sync::atomic::AtomicBool::new(false),
                config,
            }),
        }
    }

    /// The media every channel plays.
    pub fn media(&self) -> &MediaLoop {
        &self.shared.config.media
    }

    /// The engine and control routes.
    pub fn router(&self) -> Router {
        routes::router(self.shared.clone())
    }

    /// Replaces the faults of `content_id` (`*`: every content id without its own).
    /// Playbacks already running keep the faults they started with.
    pub fn set_faults(&self, content_id: &str, faults: Faults) -> Result<(), FaultError> {
        self.shared.set_faults(content_id, faults)
    }

    /// Removes the faults of `content_id`; whether it had any.
    pub fn clear_faults(&self, content_id: &str) -> bool {
        self.shared.state().clear_faults(content_id)
    }

    /// Counters, per content id and session.
    pub fn stats(&self) -> EmulatorStats {
        self.shared.state().stats()
    }

    /// Makes the version API fail (500) or answer again (also
    /// `PUT /control/version {"fails": true}`); sessions are answered either way.
    pub fn set_version_fails(&self, fails: bool) {
        self.shared
            .version_fails
            .store(fails, std::sync::atomic::Ordering::SeqCst);
    }

    /// The latest session requests, oldest first (also `GET /control/requests`).
    pub fn requests(&self) -> Vec<SessionRequest> {
        self.shared.state().requests()
    }

    /// Serves on `listener` until `shutdown` resolves; then playbacks end and
    /// in-flight requests get the server's shutdown timeout to finish.
    pub async fn serve<L: NetListener>(&self, listener: L, shutdown: impl Future<Output = ()>) {
        if let Ok(addr) = listener.local_addr() {
            let _ = self.shared.listen_addr.set(addr);
        }
        let shared = self.shared.clone();
        let shutdown = async move {
            shutdown.await;
            shared.shutdown.send_replace(true);
        };
        acemux::server::serve(
            listener,
            self.router(),
            None,
            self.shared.config.server.clone(),
            Arc::new(Metrics::new()),
            shutdown,
        )
        .await;
    }

    /// Serves on `listener` in a task; the handle stops it when shut down or dropped.
    pub fn spawn<L: NetListener>(&self, listener: L) -> io::Result<RunningEmulator> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let emulator = self.clone();
        let task = tokio::spawn(async move {
            emulator
                .serve(listener, async move {
                    // A dropped handle stops the server too.
                    let _ = stopped.await;
                })
                .await;
        });
        tracing::info!(%addr, "engine emulator listening");
        Ok(RunningEmulator {
            addr,
            stop: Some(stop),
            task: Some(task),
            emulator: self.clone(),
        })
    }
}

/// An emulator serving in a task (see [`Emulator::spawn`]). Dropping it stops it.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    emulator: Emulator,
}

impl RunningEmulator {
    /// The address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The emulator (for faults and stats).
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops accepting, ends playbacks and waits for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::error!(%error, "engine emulator task failed");
            }
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
