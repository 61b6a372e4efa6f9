//! Cluster mode's test rig: a real redis-server, acemux instances clustered through it
//! over one engine emulator, and what the tests read from them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{free_port, Acemux, Client};

/// The channel every cluster test plays.
pub const CHANNEL: &str = "c1a57e4000000000000000000000000000000001";
/// The cluster secret of every test instance.
pub const SECRET: &str = "cluster-test-secret";

pub use crate::redis::Redis;

/// Instance `n` with its own database, clustered through `redis`, with a 3 s lease.
pub async fn instance(dir: &Path, n: usize, redis: &Redis, engine: &Acemux) -> Acemux {
    instance_with(dir, n, &redis.url(), engine, &["--cluster-lease-ttl", "3s"]).await
}

/// Instance `n` with its own database, clustered through `redis_url`, with `extra`
/// flags; its id is derived from its database.
pub async fn instance_with(
    dir: &Path,
    n: usize,
    redis_url: &str,
    engine: &Acemux,
    extra: &[&str],
) -> Acemux {
    clustered(dir, &format!("instance{n}"), None, redis_url, engine, extra).await
}

/// Instance `id` (`--instance-id`) with its own database, clustered through
/// `redis_url`, with `extra` flags.
pub async fn named_instance(
    dir: &Path,
    id: &str,
    redis_url: &str,
    engine: &Acemux,
    extra: &[&str],
) -> Acemux {
    clustered(dir, id, Some(id), redis_url, engine, extra).await
}

/// An instance whose database and log are named `name`.
async fn clustered(
    dir: &Path,
    name: &str,
    id: Option<&str>,
    redis_url: &str,
    engine: &Acemux,
    extra: &[&str],
) -> Acemux {
    let port = free_port();
    let db = dir.join(format!("{name}.db"));
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
    if let Some(id) = id {
        args.extend_from_slice(&["--instance-id", id]);
    }
    args.extend_from_slice(extra);
    Acemux::serve(port, &args, &dir.join(format!("{name}.log"))).await
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

/// A TS viewer that counts the bytes it received.
pub struct Viewer {
    bytes: Arc<AtomicU64>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Viewer {
    pub async fn connect(addr: SocketAddr) -> Viewer {
        Viewer::connect_to(addr, CHANNEL).await
    }

    /// A viewer of the content `id`.
    pub async fn connect_to(addr: SocketAddr, id: &str) -> Viewer {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET /ace/getstream?id={id} HTTP/1.1\r\nhost: acemux\r\nuser-agent: test\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let bytes = Arc::new(AtomicU64::new(0));
        let counted = bytes.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                counted.fetch_add(n as u64, Ordering::SeqCst);
            }
        });
        Viewer { bytes, task }
    }

    pub fn received(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The leases `GET /cluster` shows on `acemux`.
pub async fn leases(client: &Client, acemux: &Acemux) -> Vec<Value> {
    let (status, view) = client.get(&acemux.url("/cluster")).await.expect("/cluster");
    assert_eq!(status, StatusCode::OK, "{view}");
    view["leases"].as_array().cloned().unwrap_or_default()
}

/// The `instance_id` `GET /cluster` shows on `acemux`.
pub async fn instance_id(client: &Client, acemux: &Acemux) -> String {
    let (_, view) = client.get(&acemux.url("/cluster")).await.expect("/cluster");
    view["instance_id"]
        .as_str()
        .expect("instance id")
        .to_owned()
}
