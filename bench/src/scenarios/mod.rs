//! The scenarios, and what they share: the servers under test, crowds of streaming
//! viewers, measuring windows and progress lines.

mod cluster;
mod fanout;
mod fanout_max;
mod hls;
mod isolation;
mod join;
mod join_storm;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::load::{self, Conn, Watched};
use crate::procs::{Server, Usage};
use crate::report::{self, ScenarioReport};
use crate::Options;

/// A benchmark scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Fanout,
    FanoutMax,
    Join,
    Hls,
    Isolation,
    JoinStorm,
    C10k,
    Cluster,
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 8] = [
        Scenario::Fanout,
        Scenario::FanoutMax,
        Scenario::Join,
        Scenario::JoinStorm,
        Scenario::C10k,
        Scenario::Hls,
        Scenario::Isolation,
        Scenario::Cluster,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::FanoutMax => "fanout-max",
            Scenario::Join => "join",
            Scenario::Hls => "hls",
            Scenario::Isolation => "isolation",
            Scenario::JoinStorm => "join-storm",
            Scenario::C10k => "c10k",
            Scenario::Cluster => "cluster",
        }
    }

    pub async fn run(self, options: &Options) -> Result<ScenarioReport, String> {
        match self {
            Scenario::Fanout => fanout::run(options).await,
            Scenario::FanoutMax => fanout_max::run(options).await,
            Scenario::Join => join::run(options).await,
            Scenario::Hls => hls::run(options).await,
            Scenario::Isolation => isolation::run(options).await,
            Scenario::JoinStorm => join_storm::run(options).await,
            Scenario::C10k => fanout::run_c10k(options).await,
            Scenario::Cluster => cluster::run(options).await,
        }
    }
}

/// What an engine holds when a session starts: enough that a new HLS channel lists
/// the segments acemux waits for at once, as engines that have buffered do.
pub(crate) const ENGINE_PREBUFFER_MS: u64 = 6000;

/// The engine emulator, acemux in front of it, and the baseline sender, each its own
/// process.
pub struct Rig {
    pub engine: Server,
    pub acemux: Server,
    pub baseline: Server,
    _logs: tempfile::TempDir,
}

impl Rig {
    /// Starts the three servers; acemux keeps a ring of `ring_bytes` per channel.
    pub async fn start(ring_bytes: usize) -> Result<Rig, String> {
        Rig::start_with(ring_bytes, ENGINE_PREBUFFER_MS).await
    }

    /// Same, with an engine that holds `engine_prebuffer_ms` of media when a session
    /// starts (sent at once to a new playback, listed at once in a new playlist).
    pub async fn start_with(ring_bytes: usize, engine_prebuffer_ms: u64) -> Result<Rig, String> {
        Rig::start_full(ring_bytes, engine_prebuffer_ms, &[]).await
    }

    /// Same, with more `acemux_args` for acemux (e.g. `--hls-source engine`).
    pub async fn start_full(
        ring_bytes: usize,
        engine_prebuffer_ms: u64,
        acemux_args: &[&str],
    ) -> Result<Rig, String> {
        let logs = tempfile::Builder::new()
            .prefix("acemux-bench-")
            .tempdir()
            .map_err(|error| format!("temp dir: {error}"))?;
        let engine_args = vec![
            "--workers".to_owned(),
            "1".to_owned(),
            "--engine-prebuffer-ms".to_owned(),
            engine_prebuffer_ms.to_string(),
        ];
        let engine = Server::spawn("engine", &engine_args, logs.path()).await?;
        let mut args = vec![
            "--engine".to_owned(),
            engine.addr().to_string(),
            "--ring-bytes".to_owned(),
            ring_bytes.to_string(),
        ];
        args.extend(acemux_args.iter().map(|arg| (*arg).to_owned()));
        let acemux = Server::spawn("acemux", &args, logs.path()).await?;
        let baseline = Server::spawn("baseline", &[], logs.path()).await?;
        progress(&format!(
            "engine {}, acemux {}, baseline {} (logs in {})",
            engine.addr(),
            acemux.addr(),
            baseline.addr(),
            logs.path().display()
        ));
        Ok(Rig {
            engine,
            acemux,
            baseline,
            _logs: logs,
        })
    }

    /// Sets the engine's faults (a [`acemux_testkit::emulator::Faults`] as JSON) for `content_id`.
    pub async fn set_faults(&self, content_id: &str, faults: Value) -> Result<(), String> {
        let mut conn = Conn::new(self.engine.addr());
        let body = faults.to_string();
        let answer = conn
            .send(
                "PUT",
                &format!("/control/faults/{content_id}"),
                body.as_bytes(),
            )
            .await?;
        if answer.status == 200 {
            Ok(())
        } else {
            Err(format!(
                "the engine refused faults {body}: {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ))
        }
    }

    pub async fn stop(self) {
        self.acemux.stop().await;
        self.baseline.stop().await;
        self.engine.stop().await;
    }
}

/// Prints a progress line on stderr.
pub fn progress(message: &str) {
    eprintln!("  {message}");
}

/// A metric of the acemux at `addr`: the sum of the samples of `name` whose labels
/// contain `label` (0 when absent).
pub async fn metric(addr: SocketAddr, name: &str, label: &str) -> f64 {
    let Ok(answer) = Conn::new(addr).get("/metrics").await else {
        return 0.0;
    };
    String::from_utf8_lossy(&answer.body)
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Streaming viewers of one URL, each counting the payload bytes it receives.
pub struct Crowd {
    counters: Vec<Arc<AtomicU64>>,
    viewers: Vec<JoinHandle<Watched>>,
    stop: watch::Sender<bool>,
}

impl Crowd {
    /// Starts `count` viewers of `path`, spread evenly over `ramp`.
    pub fn start(addr: SocketAddr, path: &str, count: usize, ramp: Duration) -> Crowd {
        let (stop, stopped) = watch::channel(false);
        let mut counters = Vec::with_capacity(count);
        let mut viewers = Vec::with_capacity(count);
        for n in 0..count {
            let counter = Arc::new(AtomicU64::new(0));
            counters.push(counter.clone());
            let delay = ramp.mul_f64(n as f64 / count.max(1) as f64);
            let path = path.to_owned();
            let stopped = stopped.clone();
            viewers.push(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                load::watch(addr, path, counter, stopped).await
            }));
        }
        Crowd {
            counters,
            viewers,
            stop,
        }
    }

    /// One viewer that keeps the channel at `path` running, once it has media and the
    /// channel has run a second (as a channel people join does).
    pub async fn holder(addr: SocketAddr, path: &str, label: &str) -> Result<Crowd, String> {
        let holder = Crowd::start(addr, path, 1, Duration::ZERO);
        if holder.wait_started(Duration::from_secs(15)).await == 0 {
            let error = holder.finish().await.pop().and_then(|w| w.error);
            return Err(format!("{label}: the channel did not start ({error:?})"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(holder)
    }

    /// Bytes each viewer has received so far.
    pub fn snapshot(&self) -> Vec<u64> {
        self.counters
            .iter()
            .map(|counter| counter.load(Ordering::Relaxed))
            .collect()
    }

    /// Waits (at most `bound`) until every viewer has received media, or has ended;
    /// returns how many have media.
    pub async fn wait_started(&self, bound: Duration) -> usize {
        let deadline = Instant::now() + bound;
        loop {
            let started = self.snapshot().iter().filter(|&&bytes| bytes > 0).count();
            let ended = self.viewers.iter().filter(|v| v.is_finished()).count();
            if started + ended >= self.counters.len() || Instant::now() >= deadline {
                return started;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every viewer; what each saw.
    pub async fn finish(self) -> Vec<Watched> {
        let _ = self.stop.send(true);
        let mut watched = Vec::with_capacity(self.viewers.len());
        for viewer in self.viewers {
            watched.push(viewer.await.unwrap_or_default());
        }
        watched
    }
}

/// What a crowd received over a measuring window, and what it cost the server.
#[derive(Debug)]
pub struct Window {
    /// Per viewer, bit/s over the window.
    pub rates_bps: Vec<f64>,
    /// All viewers together, bit/s.
    pub egress_bps: f64,
    /// Server CPU over the window, in cores.
    pub cpu_cores: f64,
    /// Server usage at the end of the window.
    pub usage: Usage,
}

/// Measures `crowd` for `seconds`, with a progress line every second.
pub async fn measure(crowd: &Crowd, server: &Server, seconds: f64, label: &str) -> Window {
    let started = Instant::now();
    let before = crowd.snapshot();
    let usage_before = server.usage();
    let end = started + Duration::from_secs_f64(seconds);
    let mut last = before.clone();
    let mut last_at = started;
    loop {
        let next = (last_at + Duration::from_secs(1)).min(end);
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        let snapshot = crowd.snapshot();
        let interval = now.duration_since(last_at).as_secs_f64().max(1e-6);
        let bytes: u64 = snapshot.iter().zip(&last).map(|(a, b)| a - b).sum();
        let slowest = snapshot
            .iter()
            .zip(&last)
            .map(|(a, b)| a - b)
            .min()
            .unwrap_or(0);
        progress(&format!(
            "{label}: {:>4.1}/{seconds:.0} s  egress {}  slowest viewer {}",
            now.duration_since(started).as_secs_f64(),
            report::mbit(bytes as f64 * 8.0 / interval),
            report::mbit(slowest as f64 * 8.0 / interval),
        ));
        last = snapshot;
        last_at = now;
        if now >= end {
            break;
        }
    }
    let elapsed = last_at.duration_since(started).as_secs_f64().max(1e-6);
    let usage = server.usage();
    let rates_bps: Vec<f64> = last
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) as f64 * 8.0 / elapsed)
        .collect();
    Window {
        egress_bps: rates_bps.iter().sum(),
        rates_bps,
        cpu_cores: (usage.cpu_seconds - usage_before.cpu_seconds) / elapsed,
        usage,
    }
}

/// The option's value, else the scenario's default.
pub fn or<T: Copy>(value: Option<T>, default: T) -> T {
    value.unwrap_or(default)
}
