//! Engines from an orchestrator's list, over real sockets: a test server serves the
//! list in the Python and the Go orchestrator's shapes while engine emulators come and
//! go. Listed engines get sessions, an engine that leaves the list keeps its running
//! channel but gets no new one, a draining engine gets none, a malformed or missing
//! list keeps the last good one, and nothing leaks. And engines whose version API fails
//! their probe get no new sessions until it answers again, nor do engines a session
//! request found unanswering.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acemux::net::{Net, TokioNet};
use acemux::proxy::ProxyConfig;
use acemux::store::{EventStore, MemoryStore};
use acemux::{Running, ServeOptions};
use acemux_testkit::emulator::{Emulator, EmulatorConfig, Faults, RunningEmulator};
use acemux_tests::proxy::{open, patient_proxy, read_at_least, viewer_client};
use acemux_tests::{eventually, metric_sample, Client};
use axum::extract::State;
use hyper::StatusCode;
use serde_json::{json, Value};

/// Serves whatever body it holds now at any path, as JSON (or a given status).
struct ListServer {
    url: String,
    body: Arc<Mutex<(u16, String)>>,
    task: tokio::task::JoinHandle<()>,
}

impl ListServer {
    async fn start(path: &str) -> ListServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind list server");
        let addr = listener.local_addr().expect("address");
        let body = Arc::new(Mutex::new((200, "[]".to_owned())));
        let app = axum::Router::new()
            .fallback(|State(body): State<Arc<Mutex<(u16, String)>>>| async move {
                let (status, body) = body.lock().expect("lock").clone();
                (
                    StatusCode::from_u16(status).expect("status"),
                    [("content-type", "application/json")],
                    body,
                )
            })
            .with_state(body.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("list server serves");
        });
        ListServer {
            url: format!("http://{addr}{path}"),
            body,
            task,
        }
    }

    fn set(&self, status: u16, body: String) {
        *self.body.lock().expect("lock") = (status, body);
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn emulator() -> RunningEmulator {
    let listener = TokioNet
        .bind("127.0.0.1:0".parse().expect("address"), 128)
        .await
        .expect("bind engine");
    Emulator::new(EmulatorConfig::default())
        .spawn(listener)
        .expect("engine")
}

async fn acemux(lists: Vec<String>) -> Running {
    acemux_with(Vec::new(), lists, None).await
}

async fn acemux_with(
    engines: Vec<acemux_core::lifecycle::EngineAddr>,
    lists: Vec<String>,
    health: Option<Duration>,
) -> Running {
    started(ServeOptions {
        engines,
        engine_health_interval: health,
        engine_lists: lists,
        engine_list_interval: Duration::from_millis(100),
        proxy: patient_proxy(),
        ..ServeOptions::default()
    })
    .await
}

/// acemux with `options`, on a free loopback port, its events in memory.
async fn started(options: ServeOptions) -> Running {
    let listener = TokioNet
        .bind("127.0.0.1:0".parse().expect("address"), 128)
        .await
        .expect("bind acemux");
    let store: Arc<dyn EventStore> = MemoryStore::new(Vec::new());
    acemux::start(TokioNet, listener, store, options)
        .await
        .expect("start")
}

fn python_entry(engine: &RunningEmulator, id: &str) -> Value {
    json!({
        "container_id": id,
        "host": "127.0.0.1",
        "port": engine.local_addr().port(),
        "labels": {"acestream.http_port": engine.local_addr().port().to_string()},
        "streams": [],
        "health_status": "healthy",
    })
}

fn go_entry(engine: &RunningEmulator, id: &str, draining: bool) -> Value {
    json!({
        "id": id,
        "host": "127.0.0.1",
        "port": engine.local_addr().port(),
        "draining": draining,
        "vpn": "gluetun",
    })
}

async fn engines_view(acemux: &Running) -> Vec<Value> {
    let (status, engines) = Client::new()
        .get(&format!("http://{}/engines", acemux.local_addr()))
        .await
        .expect("engines");
    assert_eq!(status, StatusCode::OK);
    engines.as_array().cloned().unwrap_or_default()
}

/// The `GET /engines` row of `engine`, once it has `health` (bounded wait).
async fn wait_health(acemux: &Running, engine: &RunningEmulator, health: &str) -> Value {
    let port = engine.local_addr().port();
    let mut last = Vec::new();
    for _ in 0..100 {
        last = engines_view(acemux).await;
        if let Some(row) = last
            .iter()
            .find(|row| row["port"] == port && row["health"] == health)
        {
            return row.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("engine {port} never {health}: {last:?}");
}

fn sessions_of(engine: &RunningEmulator) -> Vec<String> {
    engine
        .emulator()
        .requests()
        .into_iter()
        .map(|request| request.source.1)
        .collect()
}

#[tokio::test]
async fn engines_follow_the_python_orchestrators_list() {
    let (a, b) = (emulator().await, emulator().await);
    let list = ListServer::start("/engines").await;
    list.set(200, json!([python_entry(&a, "ca")]).to_string());
    let acemux = acemux(vec![list.url.clone()]).await;
    let row = wait_health(&acemux, &a, "unchecked").await;
    assert_eq!(row["source"], "orchestrator");
    assert_eq!(row["container_id"], "ca");
    assert_eq!(row["cap"], 16);

    // A channel on A.
    let client = viewer_client();
    let stream = |id: &str| format!("http://{}/ace/getstream?id={id}", acemux.local_addr());
    let (status, mut first) = open(&client, &stream("first")).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut first, 188 * 50, Duration::from_secs(5)).await;
    assert_eq!(sessions_of(&a), ["first"]);

    // A leaves, B comes: A's channel keeps playing, new channels go to B.
    list.set(200, json!([python_entry(&b, "cb")]).to_string());
    wait_health(&acemux, &a, "unlisted").await;
    wait_health(&acemux, &b, "unchecked").await;
    let (status, mut second) = open(&client, &stream("second")).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut second, 188 * 50, Duration::from_secs(5)).await;
    read_at_least(&mut first, 188 * 500, Duration::from_secs(5)).await;
    assert_eq!(sessions_of(&a), ["first"]);
    assert_eq!(sessions_of(&b), ["second"]);

    // A broken list keeps the last good one, once logged, counted.
    list.set(200, "<html>oops</html>".into());
    let metrics_url = format!("http://{}/metrics", acemux.local_addr());
    let failures = format!(
        "acemux_engine_list_failures_total{{source=\"{}\"}}",
        list.url
    );
    let counted = eventually(Duration::from_secs(5), || async {
        let (_, text) = Client::new().get(&metrics_url).await.expect("metrics");
        metric_sample(text.as_str().unwrap_or_default(), &failures) >= 2.0
    })
    .await;
    assert!(counted, "failed polls are counted");
    list.set(503, "{}".into());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, mut third) = open(&client, &stream("third")).await;
    assert_eq!(status, StatusCode::OK, "B is still listed");
    read_at_least(&mut third, 188 * 50, Duration::from_secs(5)).await;
    assert_eq!(sessions_of(&b), ["second", "third"]);

    // Nothing leaks: the viewers go, the channels stop, A leaves the pool (it stays
    // known from the lifecycle events of its stream, and only so).
    drop((first, second, third));
    let a_port = a.local_addr().port();
    let gone = eventually(Duration::from_secs(10), || async {
        let rows = engines_view(&acemux).await;
        let a_left = rows
            .iter()
            .filter(|row| row["port"] == a_port)
            .all(|row| row["sources"] == json!(["event"]));
        let idle = rows.iter().all(|row| row["sessions"] == 0);
        a_left && idle
    })
    .await;
    assert!(gone, "{:?}", engines_view(&acemux).await);
    let stopped = eventually(Duration::from_secs(10), || async {
        a.emulator().stats().active_sessions == 0 && b.emulator().stats().active_sessions == 0
    })
    .await;
    assert!(stopped, "every engine session was stopped");
    acemux.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn draining_engines_of_the_go_orchestrators_list_get_no_new_sessions() {
    let (a, b) = (emulator().await, emulator().await);
    let list = ListServer::start("/api/v1/engines").await;
    list.set(
        200,
        json!({"engines": [go_entry(&a, "ea", true), go_entry(&b, "eb", false)]}).to_string(),
    );
    let acemux = acemux(vec![list.url.clone()]).await;
    let row = wait_health(&acemux, &a, "draining").await;
    assert_eq!(row["container_id"], "ea");
    wait_health(&acemux, &b, "unchecked").await;
    let client = viewer_client();
    for id in ["one", "two"] {
        let url = format!("http://{}/ace/getstream?id={id}", acemux.local_addr());
        let (status, mut body) = open(&client, &url).await;
        assert_eq!(status, StatusCode::OK);
        read_at_least(&mut body, 188 * 50, Duration::from_secs(5)).await;
    }
    assert!(
        sessions_of(&a).is_empty(),
        "the draining engine got a session"
    );
    assert_eq!(sessions_of(&b), ["one", "two"]);
    // Every engine drained: no engine for a new channel.
    list.set(
        200,
        json!([go_entry(&a, "ea", true), go_entry(&b, "eb", true)]).to_string(),
    );
    wait_health(&acemux, &b, "draining").await;
    let url = format!("http://{}/ace/getstream?id=three", acemux.local_addr());
    let (status, _) = Client::new().get(&url).await.expect("answer");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    acemux.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn engines_failing_their_version_probe_get_no_new_sessions() {
    let (a, b) = (emulator().await, emulator().await);
    let addr = |engine: &RunningEmulator| acemux_core::lifecycle::EngineAddr {
        host: "127.0.0.1".into(),
        port: engine.local_addr().port(),
    };
    let acemux = acemux_with(
        vec![addr(&a), addr(&b)],
        Vec::new(),
        Some(Duration::from_millis(100)),
    )
    .await;
    let row = wait_health(&acemux, &a, "ok").await;
    assert!(row["last_check"].is_string(), "probed: {row}");
    assert_eq!(row["source"], "flag");
    // A's version API fails: it is marked down and skipped, though it would still
    // grant sessions.
    a.emulator().set_version_fails(true);
    wait_health(&acemux, &a, "down").await;
    let client = viewer_client();
    for id in ["p1", "p2"] {
        let url = format!("http://{}/ace/getstream?id={id}", acemux.local_addr());
        let (status, mut body) = open(&client, &url).await;
        assert_eq!(status, StatusCode::OK);
        read_at_least(&mut body, 188 * 50, Duration::from_secs(5)).await;
    }
    assert!(sessions_of(&a).is_empty(), "a down engine got a session");
    assert_eq!(sessions_of(&b), ["p1", "p2"]);
    // It answers again: up, and picked again (it is the less loaded one).
    a.emulator().set_version_fails(false);
    wait_health(&acemux, &a, "ok").await;
    let url = format!("http://{}/ace/getstream?id=p3", acemux.local_addr());
    let (status, mut body) = open(&client, &url).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut body, 188 * 50, Duration::from_secs(5)).await;
    assert_eq!(sessions_of(&a), ["p3"]);
    acemux.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_engine_whose_session_request_goes_unanswered_is_down_and_skipped() {
    let (one, two) = (emulator().await, emulator().await);
    // Ties go to the lower address: that one is asked first.
    let (first, second) = if one.local_addr().port() < two.local_addr().port() {
        (one, two)
    } else {
        (two, one)
    };
    let addr = |engine: &RunningEmulator| acemux_core::lifecycle::EngineAddr {
        host: "127.0.0.1".into(),
        port: engine.local_addr().port(),
    };
    first
        .emulator()
        .set_faults(
            "slow",
            Faults {
                start_delay: Some(Duration::from_secs(3)),
                ..Faults::default()
            },
        )
        .expect("valid faults");
    let acemux = started(ServeOptions {
        engines: vec![addr(&first), addr(&second)],
        // Probed at start, then not for a long while: what marks it down is the
        // failed request, and nothing brings it back during the test.
        engine_health_interval: Some(Duration::from_secs(60)),
        proxy: acemux::proxy::ProxyConfig {
            engine_request_timeout: Duration::from_millis(500),
            ..patient_proxy()
        },
        ..ServeOptions::default()
    })
    .await;
    wait_health(&acemux, &first, "ok").await;
    let client = viewer_client();
    let url = format!("http://{}/ace/getstream?id=slow", acemux.local_addr());
    let (status, mut body) = open(&client, &url).await;
    assert_eq!(status, StatusCode::OK, "failed over to the other engine");
    read_at_least(&mut body, 188 * 50, Duration::from_secs(5)).await;
    assert_eq!(sessions_of(&second), ["slow"]);
    wait_health(&acemux, &first, "down").await;
    // Down: a new channel, which the emulator would serve at once, goes elsewhere.
    let url = format!("http://{}/ace/getstream?id=quick", acemux.local_addr());
    let (status, mut body) = open(&client, &url).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut body, 188 * 50, Duration::from_secs(5)).await;
    assert_eq!(sessions_of(&second), ["slow", "quick"]);
    assert_eq!(sessions_of(&first), ["slow"], "asked once, then skipped");
    acemux.shutdown().await;
    first.shutdown().await;
    second.shutdown().await;
}

/// Real sockets, with one made-up name that resolves to several loopback addresses (as
/// a compose service scaled to several engines does).
#[derive(Clone)]
struct ScaledDns {
    name: &'static str,
    addresses: Arc<Mutex<Vec<std::net::IpAddr>>>,
}

impl Net for ScaledDns {
    type Stream = <TokioNet as Net>::Stream;
    type Listener = <TokioNet as Net>::Listener;

    async fn bind(
        &self,
        addr: std::net::SocketAddr,
        backlog: u32,
    ) -> std::io::Result<Self::Listener> {
        TokioNet.bind(addr, backlog).await
    }

    async fn connect(&self, host: &str, port: u16) -> std::io::Result<Self::Stream> {
        let first = self.addresses.lock().expect("lock").first().copied();
        match first {
            Some(address) if host == self.name => {
                TokioNet.connect(&address.to_string(), port).await
            }
            _ => TokioNet.connect(host, port).await,
        }
    }

    async fn resolve(&self, host: &str) -> std::io::Result<Vec<std::net::IpAddr>> {
        if host == self.name {
            Ok(self.addresses.lock().expect("lock").clone())
        } else {
            TokioNet.resolve(host).await
        }
    }
}

/// Two emulators on the same port of 127.0.0.1 and 127.0.0.2.
async fn replicas() -> (RunningEmulator, RunningEmulator) {
    for _ in 0..20 {
        let first = TokioNet
            .bind("127.0.0.1:0".parse().expect("address"), 128)
            .await
            .expect("bind");
        let port = acemux::net::NetListener::local_addr(&first)
            .expect("port")
            .port();
        let second = match TokioNet
            .bind(std::net::SocketAddr::from(([127, 0, 0, 2], port)), 128)
            .await
        {
            Ok(second) => second,
            Err(_) => continue,
        };
        let spawn = |listener| {
            Emulator::new(EmulatorConfig::default())
                .spawn(listener)
                .expect("engine")
        };
        return (spawn(first), spawn(second));
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test]
async fn a_name_with_several_addresses_is_one_engine_per_address() {
    let (one, two) = replicas().await;
    let port = one.local_addr().port();
    let net = ScaledDns {
        name: "engines.test",
        addresses: Arc::new(Mutex::new(vec![
            "127.0.0.1".parse().expect("address"),
            "127.0.0.2".parse().expect("address"),
        ])),
    };
    let options = ServeOptions {
        engines: vec![acemux_core::lifecycle::EngineAddr {
            host: "engines.test".into(),
            port,
        }],
        engine_list_interval: Duration::from_millis(100),
        proxy: ProxyConfig {
            max_streams_per_engine: 1,
            engine_request_timeout: Duration::from_secs(5),
            ..ProxyConfig::default()
        },
        ..ServeOptions::default()
    };
    let listener = net
        .bind("127.0.0.1:0".parse().expect("address"), 128)
        .await
        .expect("bind acemux");
    let store: Arc<dyn EventStore> = MemoryStore::new(Vec::new());
    let acemux = acemux::start(net.clone(), listener, store, options)
        .await
        .expect("start");
    let hosts = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|row| row["host"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let split = eventually(Duration::from_secs(5), || async {
        hosts(&engines_view(&acemux).await) == ["127.0.0.1", "127.0.0.2"]
    })
    .await;
    let rows = engines_view(&acemux).await;
    assert!(split, "the name itself is no engine any more: {rows:?}");
    assert!(rows.iter().all(|row| row["source"] == "dns"), "{rows:?}");
    // One session per engine: two channels land on the two replicas, and each is
    // played from the replica that granted it.
    let client = viewer_client();
    let mut bodies = Vec::new();
    for id in ["r1", "r2"] {
        let url = format!("http://{}/ace/getstream?id={id}", acemux.local_addr());
        let (status, mut body) = open(&client, &url).await;
        assert_eq!(status, StatusCode::OK);
        read_at_least(&mut body, 188 * 50, Duration::from_secs(5)).await;
        bodies.push(body);
    }
    assert_eq!(sessions_of(&one), ["r1"]);
    assert_eq!(sessions_of(&two), ["r2"]);
    assert_eq!(one.emulator().stats().active_playbacks, 1);
    assert_eq!(two.emulator().stats().active_playbacks, 1);
    // Scaled down to one address: the name is the engine again.
    *net.addresses.lock().expect("lock") = vec!["127.0.0.1".parse().expect("address")];
    let back = eventually(Duration::from_secs(5), || async {
        engines_view(&acemux)
            .await
            .iter()
            .any(|row| row["host"] == "engines.test" && row["source"] == "flag")
    })
    .await;
    assert!(back, "{:?}", engines_view(&acemux).await);
    drop(bodies);
    acemux.shutdown().await;
    one.shutdown().await;
    two.shutdown().await;
}
