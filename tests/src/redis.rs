//! A real redis-server for the cluster tests, on a free loopback port, killed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, free_port, loopback};

/// A redis-server on a free loopback port, killed on drop.
pub struct Redis {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl Redis {
    /// A redis-server on a free port, without persistence.
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

    /// `redis://127.0.0.1:<port>`.
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
