//! The servers under test run as child processes of this binary (`acemux-bench serve
//! <role>`), each on its own runtime, so that the load generator never shares their
//! threads and their CPU time and memory can be read from `/proc/<pid>`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Kernel clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
/// Bound on a child's start-up (it prints its address once listening).
const START_BOUND: Duration = Duration::from_secs(20);

/// CPU time and memory of a process at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// User + system CPU time so far.
    pub cpu_seconds: f64,
    /// Resident memory now.
    pub rss_bytes: u64,
    /// Peak resident memory so far.
    pub peak_rss_bytes: u64,
}

/// A server running as a child process.
pub struct Server {
    role: String,
    child: Child,
    /// Closing it tells the child to shut down.
    stdin: Option<ChildStdin>,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    /// Starts `acemux-bench serve <role> <args>`; its log goes to `<log_dir>/<role>.log`.
    pub async fn spawn(role: &str, args: &[String], log_dir: &Path) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|error| format!("own path: {error}"))?;
        let log = log_dir.join(format!("{role}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|error| format!("{}: {error}", log.display()))?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg(role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("cannot start the {role} server: {error}"))?;
        let pid = child.id().ok_or("the child exited at once")?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_BOUND, lines.next_line())
            .await
            .map_err(|_| format!("the {role} server did not start in {START_BOUND:?}"))?
            .map_err(|error| format!("reading the {role} server: {error}"))?
            .ok_or_else(|| {
                format!(
                    "the {role} server exited at start; its log: {}",
                    log.display()
                )
            })?;
        let addr = line
            .strip_prefix("listening ")
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| format!("unexpected line from the {role} server: {line:?}"))?;
        Ok(Server {
            role: role.to_owned(),
            stdin: child.stdin.take(),
            child,
            pid,
            addr,
            log,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its CPU time and memory now.
    pub fn usage(&self) -> Usage {
        usage(self.pid).unwrap_or_default()
    }

    /// Asks it to stop (closes its stdin) and waits a bounded time, then kills it.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!(
                "  the {} server exited with {status}; its log: {}",
                self.role,
                self.log.display()
            ),
            Ok(Err(error)) => eprintln!("  waiting for the {} server: {error}", self.role),
            Err(_) => {
                eprintln!("  the {} server did not stop in time; killed", self.role);
                let _ = self.child.kill().await;
            }
        }
    }
}

/// CPU time (`/proc/<pid>/stat`) and memory (`/proc/<pid>/status`) of `pid`.
pub fn usage(pid: u32) -> Option<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after `)`.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Some(Usage {
        cpu_seconds: ticks / TICKS_PER_SECOND,
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_usage() {
        let usage = super::usage(std::process::id()).expect("/proc is readable");
        assert!(usage.rss_bytes > 0 && usage.peak_rss_bytes >= usage.rss_bytes);
        assert!(usage.cpu_seconds >= 0.0);
    }
}
