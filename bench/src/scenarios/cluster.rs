//! `cluster`: two acemux instances sharing one Redis, one channel, viewers split across
//! both. The owner opens the one engine session; the peer relays it from the owner.
//! However many viewers the peer has, the owner's egress towards it must stay one
//! stream, and every viewer on either instance must keep the rate.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{metric, or, progress, Crowd, ENGINE_PREBUFFER_MS};
use crate::load::Conn;
use crate::procs::Server;
use crate::report::{finite, mbit, quantile, ratio, times, Row, ScenarioReport};
use crate::Options;

/// The owner's egress towards the peer, as a multiple of the channel's rate.
const TARGET_PEER_RATIO: f64 = 1.05;
/// A viewer keeps the rate when it gets at least this share of it over the window.
const KEEPS_RATE: f64 = 0.95;
/// Time for joining viewers to take their join burst before the window.
const WARMUP: Duration = Duration::from_secs(3);

/// A redis-server on a free loopback port, without persistence; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    async fn start(log_dir: &Path) -> Result<RedisServer, String> {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            return Err("the cluster scenario needs redis-server on PATH \
                 (scripts/test.sh installs it; on Debian: apt-get install redis-server)"
                .to_owned());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("a free port for redis-server: {error}"))?
            .port();
        let log = log_dir.join("redis.log");
        let log_file =
            std::fs::File::create(&log).map_err(|error| format!("{}: {error}", log.display()))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("cannot start redis-server: {error}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server did not listen on {port} within 10 s; its log: {}",
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(RedisServer { child, port })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The engine's active sessions of `content_id`.
async fn engine_sessions(engine: SocketAddr, content_id: &str) -> f64 {
    let Ok(answer) = Conn::new(engine).get("/control/stats").await else {
        return f64::NAN;
    };
    serde_json::from_slice::<Value>(&answer.body)
        .ok()
        .and_then(|stats| stats["contents"][content_id]["active_sessions"].as_f64())
        .unwrap_or(f64::NAN)
}

/// Counters read at the start and the end of the window.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    owner_in: f64,
    owner_out: f64,
    peer_in: f64,
    peer_out: f64,
}

async fn counters(owner: SocketAddr, peer: SocketAddr, label: &str) -> Counters {
    Counters {
        owner_in: metric(owner, "acemux_channel_bytes_in", label).await,
        owner_out: metric(owner, "acemux_channel_bytes_out", label).await,
        peer_in: metric(peer, "acemux_channel_bytes_in", label).await,
        peer_out: metric(peer, "acemux_channel_bytes_out", label).await,
    }
}

fn rates(after: &[u64], before: &[u64], seconds: f64) -> Vec<f64> {
    after
        .iter()
        .zip(before)
        .map(|(a, b)| (a - b) as f64 * 8.0 / seconds)
        .collect()
}

pub async fn run(options: &Options) -> Result<ScenarioReport, String> {
    let viewers = or(options.viewers, 200).max(2);
    let seconds = or(options.seconds, 10.0);
    let bitrate = or(options.bitrate_bps, 4_000_000);
    let name = "cluster";
    let logs = tempfile::Builder::new()
        .prefix("acemux-bench-")
        .tempdir()
        .map_err(|error| format!("temp dir: {error}"))?;
    let redis = RedisServer::start(logs.path()).await?;
    let engine_args = vec![
        "--workers".to_owned(),
        "1".to_owned(),
        "--engine-prebuffer-ms".to_owned(),
        ENGINE_PREBUFFER_MS.to_string(),
    ];
    let engine = Server::spawn("engine", &engine_args, logs.path()).await?;
    let instance_args = |id: &str| {
        vec![
            "--engine".to_owned(),
            engine.addr().to_string(),
            "--redis".to_owned(),
            redis.url(),
            "--instance-id".to_owned(),
            id.to_owned(),
        ]
    };
    // Each server's log is named by its role: the two instances get their own folders.
    let (owner_logs, peer_logs) = (logs.path().join("owner"), logs.path().join("peer"));
    for dir in [&owner_logs, &peer_logs] {
        std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    }
    let owner = Server::spawn("acemux", &instance_args("bench-owner"), &owner_logs).await?;
    let peer = Server::spawn("acemux", &instance_args("bench-peer"), &peer_logs).await?;
    progress(&format!(
        "redis {}, engine {}, owner {}, peer {} (logs in {})",
        redis.url(),
        engine.addr(),
        owner.addr(),
        peer.addr(),
        logs.path().display()
    ));
    let result = measure(&engine, &owner, &peer, name, viewers, seconds, bitrate).await;
    owner.stop().await;
    peer.stop().await;
    engine.stop().await;
    redis.stop().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    engine: &Server,
    owner: &Server,
    peer: &Server,
    name: &'static str,
    viewers: usize,
    seconds: f64,
    bitrate: u64,
) -> Result<ScenarioReport, String> {
    let mut conn = Conn::new(engine.addr());
    let faults = json!({ "bitrate_bps": bitrate }).to_string();
    let answer = conn
        .send("PUT", &format!("/control/faults/{name}"), faults.as_bytes())
        .await?;
    if answer.status != 200 {
        return Err(format!("the engine refused faults: {}", answer.status));
    }
    let path = format!("/ace/getstream?id={name}");
    // The first viewer, on the owner, makes it the channel's owner.
    let holder = Crowd::holder(owner.addr(), &path, "owner").await?;
    let on_peer = viewers / 2;
    let on_owner = viewers - on_peer - 1;
    let ramp = Duration::from_secs_f64((viewers as f64 / 500.0).clamp(0.2, 5.0));
    progress(&format!(
        "{} viewers on the owner, {on_peer} on the peer, joining over {ramp:?}",
        on_owner + 1
    ));
    let owner_crowd = Crowd::start(owner.addr(), &path, on_owner, ramp);
    let peer_crowd = Crowd::start(peer.addr(), &path, on_peer, ramp);
    let bound = ramp + Duration::from_secs(40);
    let started = owner_crowd.wait_started(bound).await + peer_crowd.wait_started(bound).await;
    progress(&format!(
        "{started}/{} viewers have media",
        on_owner + on_peer
    ));
    tokio::time::sleep(WARMUP).await;

    let label = format!("\"content_id:{name}\"");
    let (o0, p0, h0) = (
        owner_crowd.snapshot(),
        peer_crowd.snapshot(),
        holder.snapshot(),
    );
    let c0 = counters(owner.addr(), peer.addr(), &label).await;
    let (owner_cpu0, peer_cpu0) = (owner.usage().cpu_seconds, peer.usage().cpu_seconds);
    let window_start = Instant::now();
    let end = window_start + Duration::from_secs_f64(seconds);
    let mut last = (c0, window_start);
    while Instant::now() < end {
        tokio::time::sleep_until((Instant::now() + Duration::from_secs(1)).min(end)).await;
        let now = Instant::now();
        let c = counters(owner.addr(), peer.addr(), &label).await;
        let interval = now.duration_since(last.1).as_secs_f64().max(1e-6);
        progress(&format!(
            "{:>4.1}/{seconds:.0} s  channel in {}  owner → peer {}  owner egress {}  peer egress {}",
            now.duration_since(window_start).as_secs_f64(),
            mbit((c.owner_in - last.0.owner_in) * 8.0 / interval),
            mbit((c.peer_in - last.0.peer_in) * 8.0 / interval),
            mbit((c.owner_out - last.0.owner_out) * 8.0 / interval),
            mbit((c.peer_out - last.0.peer_out) * 8.0 / interval),
        ));
        last = (c, now);
    }
    let c1 = counters(owner.addr(), peer.addr(), &label).await;
    let elapsed = Instant::now()
        .duration_since(window_start)
        .as_secs_f64()
        .max(1e-6);
    let (owner_cpu, peer_cpu) = (
        (owner.usage().cpu_seconds - owner_cpu0) / elapsed,
        (peer.usage().cpu_seconds - peer_cpu0) / elapsed,
    );
    let mut owner_rates = rates(&owner_crowd.snapshot(), &o0, elapsed);
    owner_rates.extend(rates(&holder.snapshot(), &h0, elapsed));
    let peer_rates = rates(&peer_crowd.snapshot(), &p0, elapsed);
    let sessions = engine_sessions(engine.addr(), name).await;
    let relays = metric(peer.addr(), "acemux_cluster_relays", "").await;
    let watched_owner = owner_crowd.finish().await;
    let watched_peer = peer_crowd.finish().await;
    let dropped = watched_owner
        .iter()
        .chain(&watched_peer)
        .filter(|w| w.ended_early)
        .count();
    drop(holder.finish().await);

    let per_second = |bytes: f64| bytes * 8.0 / elapsed;
    let channel_bps = per_second(c1.owner_in - c0.owner_in);
    let owner_to_peer_bps = per_second(c1.peer_in - c0.peer_in);
    let owner_out_bps = per_second(c1.owner_out - c0.owner_out);
    let peer_out_bps = per_second(c1.peer_out - c0.peer_out);
    let owner_viewers_bps: f64 = owner_rates.iter().sum();
    // What the owner handed to connections beyond its own viewers: the peer's stream.
    let owner_to_peer_metric_bps = (owner_out_bps - owner_viewers_bps).max(0.0);
    let peer_ratio = ratio(owner_to_peer_bps, channel_bps);
    let keeps = |rates: &[f64]| quantile(rates, 0.01) >= KEEPS_RATE * bitrate as f64;
    let rate_cell = |rates: &[f64]| {
        format!(
            "{} / {}",
            mbit(quantile(rates, 0.01)),
            mbit(quantile(rates, 0.5))
        )
    };
    let rate_target = format!(
        "every viewer ≥ {:.0}% of {}",
        KEEPS_RATE * 100.0,
        mbit(bitrate as f64)
    );
    let rows = vec![
        Row::alone(
            "channel rate (owner's bytes in from the engine)",
            mbit(channel_bps),
        ),
        Row::alone(
            "owner → peer egress (peer's bytes in from the owner)",
            format!(
                "{} ({} the channel)",
                mbit(owner_to_peer_bps),
                times(peer_ratio)
            ),
        )
        .target(
            &format!("≤ {TARGET_PEER_RATIO}× the channel"),
            peer_ratio <= TARGET_PEER_RATIO,
        ),
        Row::alone(
            "owner → peer egress (owner's bytes out beyond its viewers)",
            mbit(owner_to_peer_metric_bps),
        ),
        Row::alone(
            "engine sessions / relayed upstream connections",
            format!("{sessions} / {relays}"),
        )
        .target("1 / 1", sessions == 1.0 && relays == 1.0),
        Row::alone(
            &format!(
                "per-viewer rate p1 / p50, owner ({} viewers)",
                owner_rates.len()
            ),
            rate_cell(&owner_rates),
        )
        .target(&rate_target, keeps(&owner_rates)),
        Row::alone(
            &format!("per-viewer rate p1 / p50, peer ({on_peer} viewers)"),
            rate_cell(&peer_rates),
        )
        .target(&rate_target, keeps(&peer_rates)),
        Row::alone("viewers dropped", dropped.to_string()).target("0", dropped == 0),
        Row::alone(
            "egress: owner / peer (bytes out)",
            format!("{} / {}", mbit(owner_out_bps), mbit(peer_out_bps)),
        ),
        Row::alone(
            "server CPU (cores): owner / peer",
            format!("{owner_cpu:.2} / {peer_cpu:.2}"),
        ),
    ];
    let setup = format!(
        "Two acemux instances (own processes, 2 runtime worker threads each) sharing a \
         redis-server; one channel at {}; {viewers} viewers, {} on the owner (the first \
         one made it the owner) and {on_peer} on the peer, which relays the channel from \
         the owner; {seconds:.0} s measured after a {WARMUP:?} warm-up.",
        mbit(bitrate as f64),
        owner_rates.len(),
    );
    let json = json!({
        "viewers": viewers,
        "viewers_owner": owner_rates.len(),
        "viewers_peer": on_peer,
        "seconds": seconds,
        "bitrate_bps": bitrate,
        "channel_bps": finite(channel_bps),
        "owner_to_peer_bps": finite(owner_to_peer_bps),
        "owner_to_peer_ratio": finite(peer_ratio),
        "owner_to_peer_from_owner_metrics_bps": finite(owner_to_peer_metric_bps),
        "engine_sessions": finite(sessions),
        "relayed_upstreams": finite(relays),
        "owner": {
            "rate_bps_p1": finite(quantile(&owner_rates, 0.01)),
            "rate_bps_p50": finite(quantile(&owner_rates, 0.5)),
            "egress_bps": finite(owner_out_bps),
            "cpu_cores": finite(owner_cpu),
        },
        "peer": {
            "rate_bps_p1": finite(quantile(&peer_rates, 0.01)),
            "rate_bps_p50": finite(quantile(&peer_rates, 0.5)),
            "egress_bps": finite(peer_out_bps),
            "cpu_cores": finite(peer_cpu),
        },
        "viewers_dropped": dropped,
    });
    Ok(ScenarioReport {
        name,
        setup,
        rows,
        json,
    })
}
