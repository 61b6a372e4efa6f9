//! Cluster mode's test rig: a real redis-server, acemux instances clustered through it
//! over one engine emulator, and what the tests read from them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;

use crate::{eventually, free_port, loopback, Acemux, Client};

/// The channel every cluster test plays.
pub const CHANNEL: &str = "c1a57e4000000000000000000000000000000001";
/// The cluster secret of every test instance.
pub const SECRET: &str = "cluster-test-secret";

/// A redis-server on a free loopback port, killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    pub async fn start(log: &Path) -> Redis {
        Redis::start_on(free_port(), log).await
    }

    /// A redis-server on `port`, without persistence: a restart starts empty.
    pub async fn start_on(port: u16, log: &Path) -> Redis {
        Redis::start_with(port, &[], log).await
    }

    /// A redis-server on `port` with `extra` arguments.
    pub async fn start_with(port: u16, extra: &[&str], log: &Path) -> Redis {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        assert!(
            found,
            "redis-server is not installed: the cluster tests need it \
             (scripts/test.sh installs it; on Debian: apt-get install redis-server)"
        );
        let log_file = std::fs::File::create(log).expect("redis log file");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let redis = Redis { child, port };
        let up = eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(loopback(port)).await.is_ok()
        })
        .await;
        assert!(up, "redis-server did not listen on {port} within 10 s");
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Instance `n` with its own database, clustered through `redis`, with a 3 s lease.
pub async fn instance(dir: &Path, n: usize, redis: &Redis, engine: &Acemux) -> Acemux {
    instance_with(dir, n, &redis.url(), engine, &["--cluster-lease-ttl", "3s"]).await
}

/// Instance `n` with its own database, clustered through `redis_url`, with `extra`
/// flags.
pub async fn instance_with(
    dir: &Path,
    n: usize,
    redis_url: &str,
    engine: &Acemux,
    extra: &[&str],
) -> Acemux {
    let port = free_port();
    let db = dir.join(format!("instance{n}.db"));
    let advertise = format!("http://127.0.0.1:{port}");
    let engine_addr = engine.addr.to_string();
    let mut args = vec![
        "--db",
        db.to_str().expect("utf-8 path"),
        "--engine",
        &engine_addr,
        "--redis",
        redis_url,
        "--advertise",
        &advertise,
        "--cluster-secret",
        SECRET,
    ];
    args.extend_from_slice(extra);
    Acemux::serve(port, &args, &dir.join(format!("instance{n}.log"))).await
}

/// The emulator's counters of the channel.
pub async fn channel_stats(client: &Client, engine: &Acemux) -> Value {
    let (status, stats) = client
        .get(&engine.url("/control/stats"))
        .await
        .expect("emulator stats");
    assert_eq!(status, StatusCode::OK);
    stats["contents"][CHANNEL].clone()
}

/// The logs of `instances`, each under its address.
pub fn logs(instances: &[&Acemux]) -> String {
    instances
        .iter()
        .map(|acemux| format!("--- {}\n{}", acemux.addr, acemux.log_text()))
        .collect()
}
