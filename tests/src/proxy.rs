//! In-process acemux + engine emulator over real loopback sockets, and viewers that
//! read the proxied MPEG-TS.

use std::sync::Arc;
use std::time::Duration;

use acemux::net::{http_client, HttpClient, Net, TokioNet};
use acemux::proxy::ProxyConfig;
use acemux::store::{EventStore, SqliteStore};
use acemux::{Running, ServeOptions};
use acemux_core::lifecycle::EngineAddr;
use acemux_core::ts::{packets, NULL_PID, PACKET_LEN};
use acemux_testkit::emulator::{Emulator, EmulatorConfig, MediaLoop, RunningEmulator};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

/// Engine emulators and acemux pointed at them.
pub struct ProxyRig {
    /// The engines, in the order given.
    pub engines: Vec<RunningEmulator>,
    /// acemux.
    pub acemux: Running,
    _dir: tempfile::TempDir,
}

impl ProxyRig {
    /// Starts an emulator and acemux with `proxy` bounds (engines filled in).
    pub async fn start(proxy: ProxyConfig) -> ProxyRig {
        ProxyRig::start_with(EmulatorConfig::default(), proxy).await
    }

    /// Same, with an emulator configured by `engine`.
    pub async fn start_with(engine: EmulatorConfig, proxy: ProxyConfig) -> ProxyRig {
        ProxyRig::start_engines(vec![engine], proxy).await
    }

    /// One emulator per config, and acemux using all of them.
    pub async fn start_engines(configs: Vec<EmulatorConfig>, proxy: ProxyConfig) -> ProxyRig {
        let options = ServeOptions {
            proxy,
            ..ServeOptions::default()
        };
        ProxyRig::start_options(configs, options).await
    }

    /// One emulator per config, and acemux with `options` using them after the engines
    /// `options` already names (e.g. scripted ones).
    pub async fn start_options(
        configs: Vec<EmulatorConfig>,
        mut options: ServeOptions,
    ) -> ProxyRig {
        init_test_logging();
        let any_port = "127.0.0.1:0".parse().expect("address");
        let mut engines = Vec::new();
        for (index, mut config) in configs.into_iter().enumerate() {
            // Engines number their sessions apart, as real engines' ids differ.
            if config.first_session_number == EmulatorConfig::default().first_session_number {
                config.first_session_number = index as u64 * 1_000_000 + 1;
            }
            let listener = TokioNet
                .bind(any_port, acemux::net::DEFAULT_BACKLOG)
                .await
                .expect("bind engine");
            engines.push(Emulator::new(config).spawn(listener).expect("engine"));
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn EventStore> = SqliteStore::open(
            &dir.path().join("events.db"),
            options
                .webhooks
                .iter()
                .map(|hook| hook.base.clone())
                .collect(),
        )
        .expect("store");
        options
            .engines
            .extend(engines.iter().map(|engine| EngineAddr {
                host: "127.0.0.1".into(),
                port: engine.local_addr().port(),
            }));
        let listener = TokioNet
            .bind(any_port, acemux::net::DEFAULT_BACKLOG)
            .await
            .expect("bind acemux");
        let acemux = acemux::start(TokioNet, listener, store, options)
            .await
            .expect("start");
        ProxyRig {
            engines,
            acemux,
            _dir: dir,
        }
    }

    /// `http://<acemux><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.acemux.local_addr(), path)
    }

    /// The player URL of content `id`.
    pub fn stream_url(&self, id: &str) -> String {
        self.url(&format!("/ace/getstream?id={id}"))
    }

    /// The (first) emulated engine.
    pub fn emulator(&self) -> &Emulator {
        self.engines[0].emulator()
    }

    /// One metric sample from acemux, or 0.
    pub fn metric(&self, sample: &str) -> f64 {
        crate::metric_sample(&self.acemux.metrics().render(), sample)
    }

    /// Stops acemux, then the engines.
    pub async fn shutdown(self) {
        self.acemux.shutdown().await;
        for engine in self.engines {
            engine.shutdown().await;
        }
    }
}

/// Proxy bounds for tests that start channels on the emulator and look at what the
/// players and the engine saw: a start that waits long enough on a busy test machine,
/// a short idle grace (channels stop soon after their viewers go), quick engine
/// requests.
pub fn patient_proxy() -> ProxyConfig {
    ProxyConfig {
        channel: acemux_core::channel::ChannelConfig {
            start_timeout: Duration::from_secs(20),
            idle_grace: Duration::from_millis(300),
            ..acemux_core::channel::ChannelConfig::default()
        },
        engine_request_timeout: Duration::from_secs(5),
        ..ProxyConfig::default()
    }
}

/// Logs to the test's output when `ACEMUX_TEST_LOG` holds a filter (e.g. `debug`).
pub fn init_test_logging() {
    if let Ok(filter) = std::env::var("ACEMUX_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

/// A streaming HTTP client for viewers.
pub fn viewer_client() -> HttpClient<TokioNet> {
    http_client(TokioNet)
}

/// Sends `GET url`; the status and the body to read incrementally.
pub async fn open(client: &HttpClient<TokioNet>, url: &str) -> (StatusCode, Incoming) {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("response");
    (response.status(), response.into_body())
}

/// Reads `body` for `duration` (or until it ends); returns the bytes and whether it ended.
pub async fn read_for(body: &mut Incoming, duration: Duration) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + duration;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return (bytes, false),
            Ok(None) | Ok(Some(Err(_))) => return (bytes, true),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Reads `body` until at least `len` bytes arrived or `bound` passed.
pub async fn read_at_least(body: &mut Incoming, len: usize, bound: Duration) -> Vec<u8> {
    let mut bytes = Vec::new();
    let deadline = tokio::time::Instant::now() + bound;
    while bytes.len() < len {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    bytes
}

/// `bytes` without TS null packets (acemux's keepalive), whole packets only.
pub fn without_nulls(bytes: &[u8]) -> Vec<u8> {
    packets(bytes)
        .filter(|packet| packet.pid() != NULL_PID)
        .flat_map(|packet| packet.bytes().iter().copied())
        .collect()
}

/// Asserts that `bytes` (nulls removed, whole packets) are one contiguous slice of
/// `stream` (the engine's output from offset 0); returns where the slice starts.
pub fn assert_contiguous_slice(stream: &[u8], bytes: &[u8]) -> usize {
    let clean = without_nulls(bytes);
    assert!(
        clean.len() >= 4 * PACKET_LEN,
        "too few bytes to check: {}",
        clean.len()
    );
    let probe = &clean[..4 * PACKET_LEN];
    let offset = (0..stream.len().saturating_sub(probe.len()))
        .step_by(PACKET_LEN)
        .find(|&offset| &stream[offset..offset + probe.len()] == probe)
        .expect("the viewer's first packets are not in the engine's stream");
    let end = (offset + clean.len()).min(stream.len());
    let expected = &stream[offset..end];
    let first_difference = expected.iter().zip(&clean).position(|(a, b)| a != b);
    assert_eq!(
        first_difference,
        None,
        "the viewer's bytes leave the engine's stream at byte {first_difference:?} of {}",
        clean.len()
    );
    assert_eq!(
        expected.len(),
        clean.len(),
        "search the engine's stream further"
    );
    offset
}

/// The engine's output for `media` from offset 0, `len` bytes.
pub fn engine_stream(media: &MediaLoop, len: usize) -> Vec<u8> {
    media.read(0, len).to_vec()
}
