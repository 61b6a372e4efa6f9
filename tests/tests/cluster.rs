//! Cluster mode against a real redis-server: three acemux processes, one engine
//! emulator. Viewers of one channel spread over the instances get one engine session
//! between them; when the owner dies (`kill -9`), another instance takes the channel
//! over after the lease's time to live and the viewers on the survivors get media
//! again. redis-server must be installed (`scripts/test.sh` installs it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acemux_tests::{eventually, free_port, loopback, Acemux, Client};
use hyper::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHANNEL: &str = "c1a57e4000000000000000000000000000000001";
const SECRET: &str = "cluster-test-secret";

/// A redis-server on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start(log: &Path) -> Redis {
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
        let port = free_port();
        let log_file = std::fs::File::create(log).expect("redis log file");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
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

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TS viewer that counts the bytes it received.
struct Viewer {
    bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Viewer {
    async fn connect(addr: SocketAddr) -> Viewer {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "GET /ace/getstream?id={CHANNEL} HTTP/1.1\r\nhost: acemux\r\nuser-agent: test\r\n\r\n"
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

    fn received(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn instance(dir: &Path, n: usize, redis: &Redis, engine: &Acemux) -> Acemux {
    let port = free_port();
    let db = dir.join(format!("instance{n}.db"));
    let advertise = format!("http://127.0.0.1:{port}");
    let args = [
        "--db",
        db.to_str().expect("utf-8 path"),
        "--engine",
        &engine.addr.to_string(),
        "--redis",
        &redis.url(),
        "--advertise",
        &advertise,
        "--cluster-secret",
        SECRET,
        "--cluster-lease-ttl",
        "3s",
    ];
    Acemux::serve(port, &args, &dir.join(format!("instance{n}.log"))).await
}

/// The emulator's counters of the channel.
async fn channel_stats(client: &Client, engine: &Acemux) -> Value {
    let (status, stats) = client
        .get(&engine.url("/control/stats"))
        .await
        .expect("emulator stats");
    assert_eq!(status, StatusCode::OK);
    stats["contents"][CHANNEL].clone()
}

/// The leases `GET /cluster` shows on `acemux`.
async fn leases(client: &Client, acemux: &Acemux) -> Vec<Value> {
    let (status, view) = client.get(&acemux.url("/cluster")).await.expect("/cluster");
    assert_eq!(status, StatusCode::OK, "{view}");
    view["leases"].as_array().cloned().unwrap_or_default()
}

fn logs(instances: &[&Acemux]) -> String {
    instances
        .iter()
        .map(|acemux| format!("--- {}\n{}", acemux.addr, acemux.log_text()))
        .collect()
}

#[tokio::test]
async fn viewers_spread_over_instances_share_one_engine_session_and_survive_the_owners_death() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let mut instances = Vec::new();
    for n in 0..3 {
        instances.push(instance(dir.path(), n, &redis, &engine).await);
    }

    // Each instance has its own id, stable with its database.
    let mut ids = Vec::new();
    for acemux in &instances {
        let (_, view) = client.get(&acemux.url("/cluster")).await.expect("/cluster");
        ids.push(
            view["instance_id"]
                .as_str()
                .expect("instance id")
                .to_owned(),
        );
        assert_eq!(
            view["advertise"].as_str(),
            Some(format!("http://{}", acemux.addr).as_str())
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct instance ids: {ids:?}");

    // Two viewers on each instance, all at once.
    let mut viewers = Vec::new();
    for _ in 0..2 {
        for acemux in &instances {
            viewers.push((acemux.addr, Viewer::connect(acemux.addr).await));
        }
    }
    let all_served = eventually(Duration::from_secs(20), || async {
        viewers.iter().all(|(_, viewer)| viewer.received() > 0)
    })
    .await;
    let all: Vec<&Acemux> = instances.iter().collect();
    assert!(
        all_served,
        "every viewer receives media; logs:\n{}",
        logs(&all)
    );
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(
        stats["sessions_started"],
        1,
        "one engine session for every viewer on every instance: {stats}; logs:\n{}",
        logs(&all)
    );
    assert_eq!(stats["active_playbacks"], 1, "{stats}");

    // Exactly one instance holds the channel's lease.
    let mut owners = Vec::new();
    for (index, acemux) in instances.iter().enumerate() {
        let held = leases(&client, acemux).await;
        if !held.is_empty() {
            assert_eq!(held.len(), 1);
            assert!(
                held[0]["fencing"].as_u64().is_some_and(|n| n >= 1),
                "{held:?}"
            );
            assert!(held[0]["channel"]
                .as_str()
                .is_some_and(|c| c.contains(CHANNEL)));
            owners.push(index);
        }
    }
    assert_eq!(owners.len(), 1, "one owner: {owners:?}");
    for (index, acemux) in instances.iter().enumerate() {
        let relays = client
            .metric(&acemux.url(""), "acemux_cluster_relays_total")
            .await;
        if index == owners[0] {
            assert_eq!(relays, 0.0, "the owner relays from nobody");
        } else {
            assert!(relays >= 1.0, "{} relays from the owner", acemux.addr);
        }
    }
    let owner = instances.remove(owners[0]);
    let first_fencing = leases(&client, &owner).await[0]["fencing"]
        .as_u64()
        .expect("fencing");

    // A player cannot pose as an instance.
    let (status, body) = client
        .send(
            hyper::Method::GET,
            &owner.url(&format!("/ace/getstream?id={CHANNEL}")),
            &[("x-acemux-peer", "wrong")],
            None,
        )
        .await
        .expect("request");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");

    // The owner dies.
    let owner_addr = owner.addr;
    owner.kill();
    let survivors: Vec<&(SocketAddr, Viewer)> = viewers
        .iter()
        .filter(|(addr, _)| *addr != owner_addr)
        .collect();
    assert_eq!(survivors.len(), 4);
    let before: Vec<u64> = survivors
        .iter()
        .map(|(_, viewer)| viewer.received())
        .collect();
    let resumed = eventually(Duration::from_secs(40), || async {
        survivors
            .iter()
            .zip(&before)
            .all(|((_, viewer), before)| viewer.received() > before + 64 * 1024)
    })
    .await;
    let all: Vec<&Acemux> = instances.iter().collect();
    assert!(
        resumed,
        "the survivors' viewers get media again after the lease expires; logs:\n{}",
        logs(&all)
    );

    // One new engine session, on the new owner, with a higher fencing number.
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(
        stats["sessions_started"],
        2,
        "{stats}; logs:\n{}",
        logs(&all)
    );
    let mut new_owners = Vec::new();
    for acemux in &instances {
        for lease in leases(&client, acemux).await {
            new_owners.push(lease["fencing"].as_u64().expect("fencing"));
        }
    }
    assert_eq!(
        new_owners.len(),
        1,
        "one owner after the takeover: {new_owners:?}"
    );
    assert!(
        new_owners[0] > first_fencing,
        "{new_owners:?} after {first_fencing}"
    );
}
