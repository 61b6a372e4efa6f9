//! Helpers for the real-socket and real-process tests in `tests/tests/`.

pub mod browser;
pub mod cluster;
pub mod hostile_engine;
pub mod hostile_rig;
pub mod orchestrator_receiver;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod relay;
pub mod webhook_receiver;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use acemux::net::{http_client, HttpClient, TokioNet};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::Value;

/// The `acemux` binary: `$ACEMUX_BIN`, else `target/<profile>/acemux` next to this test.
pub fn acemux_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ACEMUX_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/acemux
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let bin = profile_dir.join("acemux");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p acemux-cmd` (scripts/test.sh does), or set ACEMUX_BIN",
        bin.display()
    );
    bin
}

/// `127.0.0.1:<port>`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// An `acemux` process, killed on drop.
pub struct Acemux {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
}

impl Acemux {
    /// Runs `acemux serve --listen 127.0.0.1:<port> <args>`, logging to `log`, and waits
    /// (bounded) until `/health` answers.
    pub async fn serve(port: u16, args: &[&str], log: &Path) -> Acemux {
        let addr = loopback(port);
        let mut full_args = vec!["--listen".to_owned(), addr.to_string()];
        full_args.extend(args.iter().map(|arg| (*arg).to_owned()));
        let ready = format!("http://{addr}/health");
        Acemux::start("serve", addr, &full_args, &ready, log).await
    }

    /// Runs `acemux emulate-engine --listen 127.0.0.1:<port> <args>` (an engine
    /// emulator process), logging to `log`, and waits (bounded) until its control API
    /// answers.
    pub async fn emulate_engine(port: u16, args: &[&str], log: &Path) -> Acemux {
        let addr = loopback(port);
        let mut full_args = vec!["--listen".to_owned(), addr.to_string()];
        full_args.extend(args.iter().map(|arg| (*arg).to_owned()));
        let ready = format!("http://{addr}/control/stats");
        Acemux::start("emulate-engine", addr, &full_args, &ready, log).await
    }

    /// Runs `acemux <subcommand> <args>` serving on `addr`, logging to `log`, and
    /// waits (bounded) until `GET ready_url` answers 200.
    pub async fn start(
        subcommand: &str,
        addr: SocketAddr,
        args: &[String],
        ready_url: &str,
        log: &Path,
    ) -> Acemux {
        let log_file = std::fs::File::create(log).expect("log file");
        let child = Command::new(acemux_bin())
            .arg(subcommand)
            .args(args)
            .env("ACEMUX_LOG", "info,acemux=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn acemux");
        let process = Acemux {
            child: Some(child),
            addr,
            log: log.to_owned(),
        };
        let client = Client::new();
        for _ in 0..200 {
            if let Ok((StatusCode::OK, _)) = client.get(ready_url).await {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "acemux {subcommand} did not answer {ready_url} within 10 s; log:\n{}",
            process.log_text()
        );
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process at once (SIGKILL, as `kill -9` does): nothing is ended or
    /// flushed beyond what was already committed.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running child");
        child.kill().expect("kill -9");
        let _ = child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running child");
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        for _ in 0..300 {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        panic!(
            "acemux did not exit within 15 s of SIGTERM; log:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Acemux {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A small JSON-over-HTTP client built on acemux's own `Net` client.
#[derive(Clone)]
pub struct Client {
    inner: HttpClient<TokioNet>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client over real sockets.
    pub fn new() -> Self {
        Client {
            inner: http_client(TokioNet),
        }
    }

    /// A client that keeps up to `idle_per_host` connections open for reuse (load
    /// generators with many concurrent requests).
    pub fn with_pool(idle_per_host: usize) -> Self {
        let inner =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .pool_max_idle_per_host(idle_per_host)
                .build(acemux::net::NetConnector::new(TokioNet));
        Client { inner }
    }

    /// Sends a request; the answer's status and body (JSON when it parses, else a string).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Value), String> {
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| error.to_string())?;
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|error| format!("{error:?}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| error.to_string())?
            .to_bytes();
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok((status, value))
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<(StatusCode, Value), String> {
        self.send(Method::GET, url, &[], None).await
    }

    /// `POST url` with a JSON body and optional bearer key.
    pub async fn post_json(
        &self,
        url: &str,
        body: &Value,
        api_key: Option<&str>,
    ) -> Result<(StatusCode, Value), String> {
        let auth = api_key.map(|key| format!("Bearer {key}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        self.send(
            Method::POST,
            url,
            &headers,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// The value of one Prometheus sample (`name{labels}` exactly as rendered), or 0.
    pub async fn metric(&self, base: &str, sample: &str) -> f64 {
        let (_, text) = self.get(&format!("{base}/metrics")).await.expect("metrics");
        metric_sample(text.as_str().unwrap_or_default(), sample)
    }
}

/// The value of one sample (`name{labels}` exactly as rendered) in Prometheus text, or 0.
pub fn metric_sample(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(sample))
        .filter_map(|rest| rest.strip_prefix(' '))
        .filter_map(|value| value.trim().parse().ok())
        .next()
        .unwrap_or(0.0)
}

/// Bound on one run of a media tool (ffmpeg, ffprobe), so a stuck tool fails the test
/// instead of hanging it.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a media tool to completion (bounded): whether it succeeded, its stdout and its
/// stderr.
pub async fn run_tool(program: &str, args: &[&str]) -> (bool, String, String) {
    let mut command = tokio::process::Command::new(program);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(TOOL_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} ran longer than {TOOL_TIMEOUT:?}"))
        .unwrap_or_else(|error| {
            panic!("cannot run {program} (scripts/test.sh installs it): {error}")
        });
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// [`run_tool`] that must succeed: its stdout and stderr.
pub async fn run_tool_ok(program: &str, args: &[&str]) -> (String, String) {
    let (ok, stdout, stderr) = run_tool(program, args).await;
    assert!(ok, "{program} {args:?} failed:\n{stderr}");
    (stdout, stderr)
}

/// ffmpeg with `-nostdin -v error` and `args`: whether it succeeded, and what it
/// reported on stderr (errors only).
pub async fn ffmpeg(args: &[&str]) -> (bool, String) {
    let mut all = vec!["-nostdin", "-v", "error"];
    all.extend_from_slice(args);
    let (ok, _, errors) = run_tool("ffmpeg", &all).await;
    (ok, errors)
}

/// ffmpeg reads `url` live for `seconds` (decoding to nothing) without reporting a
/// single error, and ffprobe finds H.264 and AAC in it.
pub async fn assert_ffmpeg_plays_cleanly(url: &str, seconds: u32) {
    let seconds = seconds.to_string();
    let (ok, errors) = ffmpeg(&["-t", &seconds, "-i", url, "-f", "null", "-"]).await;
    assert!(ok, "ffmpeg failed: {errors}");
    assert!(
        errors.trim().is_empty(),
        "ffmpeg reported errors:\n{errors}"
    );
    let codecs = probe_codecs(url).await;
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "codecs: {codecs}"
    );
}

/// VLC (cvlc, run as nobody when this is root, since VLC refuses root) plays `url` for
/// 10 s, writing what it plays to a file; the file must hold over 100 kB of H.264.
pub async fn assert_vlc_plays(url: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("vlc.ts");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let sout = format!("#std{{access=file,mux=ts,dst={}}}", out.display());
    let root = run_tool("id", &["-u"]).await.1.trim() == "0";
    let mut command = if root {
        let mut command = tokio::process::Command::new("runuser");
        command.args(["-u", "nobody", "--", "cvlc"]);
        command
    } else {
        tokio::process::Command::new("cvlc")
    };
    let status = command
        .args(["--intf", "dummy", "--vout", "dummy", "--aout", "dummy"])
        .args(["--no-video-title-show", "--run-time", "10", "--sout", &sout])
        .args([url, "vlc://quit"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), status)
        .await
        .expect("VLC finished within 60 s")
        .expect("run cvlc (apt install vlc-bin vlc-plugin-base)");
    let written = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    assert!(
        written > 100_000,
        "VLC wrote {written} bytes; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let codecs = probe_codecs(out.to_str().expect("UTF-8 path")).await;
    assert!(
        codecs.contains("h264"),
        "VLC's output has no H.264: {codecs}"
    );
}

/// The codec names ffprobe finds in `target` (a URL or a file), one per line.
pub async fn probe_codecs(target: &str) -> String {
    let args = [
        "-v",
        "error",
        "-show_entries",
        "stream=codec_name",
        "-of",
        "csv=p=0",
        target,
    ];
    run_tool_ok("ffprobe", &args).await.0
}

/// A `stream_started` body in the orchestrator's shape.
pub fn started_body(key: &str, session: &str, container: Option<&str>) -> Value {
    serde_json::json!({
        "container_id": container,
        "engine": { "host": "gluetun", "port": 19000 },
        "stream": { "key_type": "content_id", "key": key },
        "session": {
            "playback_session_id": session,
            "stat_url": format!("http://gluetun:19000/ace/stat/{session}"),
            "command_url": format!("http://gluetun:19000/ace/cmd/{session}"),
            "is_live": 1
        },
        "labels": {}
    })
}

/// Polls `check` every 50 ms until it is true, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
