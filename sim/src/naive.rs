//! A small model of the orchestrator acemux replaces: one request at a time; the
//! HLS handler waits (blocking the only worker) up to 30 s for the first segments
//! from an engine behind gluetun, read timeout 10 s, while a background task POSTs
//! `stream_started` to the same server with a 5 s timeout.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acemux::net::{http_client, HttpClient, NetListener};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::net::TurmoilNet;
use crate::observe::sim_now;

/// The model's port.
pub const NAIVE_PORT: u16 = 8000;
/// How long the handler waits for the first segments.
pub const INITIAL_BUFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// Read timeout towards the engine.
pub const ENGINE_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of the self-POST.
pub const SELF_POST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the model did, in order.
#[derive(Debug, Default, Clone)]
pub struct NaiveLog {
    /// Log lines with the simulated time.
    pub lines: Vec<(Duration, String)>,
    /// Streams its registry holds.
    pub registered: Vec<String>,
}

impl NaiveLog {
    /// Whether a line containing `text` was logged.
    pub fn has(&self, text: &str) -> bool {
        self.lines.iter().any(|(_, line)| line.contains(text))
    }
}

type Shared = Arc<Mutex<NaiveLog>>;

fn log(shared: &Shared, line: String) {
    tracing::info!(target: "naive", "{line}");
    shared
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .lines
        .push((sim_now(), line));
}

/// Runs the model: accepts a connection, serves its one request to the end, then
/// accepts the next, as one worker with a blocked event loop does.
pub async fn naive_orchestrator(shared: Shared, engine: (String, u16)) -> turmoil::Result {
    let listener = TurmoilNet::listen(NAIVE_PORT).await?;
    let client = http_client(TurmoilNet);
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        let client = client.clone();
        let engine = engine.clone();
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let shared = shared.clone();
            let client = client.clone();
            let engine = engine.clone();
            async move { Ok::<_, Infallible>(handle(request, &shared, &client, &engine).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(false)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}

fn answer(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}

async fn handle(
    request: Request<hyper::body::Incoming>,
    shared: &Shared,
    client: &HttpClient<TurmoilNet>,
    engine: &(String, u16),
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    match path.as_str() {
        "/health" => answer(StatusCode::OK, "ok"),
        "/events/stream_started" => {
            let body = request.into_body().collect().await.map(|b| b.to_bytes());
            let id = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
            log(shared, format!("registered {id}"));
            shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .registered
                .push(id);
            answer(StatusCode::OK, "{}")
        }
        "/ace/manifest.m3u8" => {
            let content_id = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("id="))
                .unwrap_or_default()
                .to_owned();
            // The background "thread": report the start to this same server.
            {
                let shared = shared.clone();
                let client = client.clone();
                let content_id = content_id.clone();
                tokio::spawn(async move {
                    let request =
                        Request::post(format!("http://naive:{NAIVE_PORT}/events/stream_started"))
                            .body(Full::new(Bytes::from(content_id)))
                            .expect("a valid request");
                    match tokio::time::timeout(SELF_POST_TIMEOUT, client.request(request)).await {
                        Ok(Ok(response)) => {
                            log(&shared, format!("self-POST answered {}", response.status()));
                        }
                        Ok(Err(error)) => {
                            log(&shared, format!("self-POST failed: {error}; event lost"))
                        }
                        Err(_) => log(
                            &shared,
                            "self-POST read timed out (read timeout=5); event lost".into(),
                        ),
                    }
                });
            }
            // The handler waits for the first segments on the only worker.
            let deadline = tokio::time::Instant::now() + INITIAL_BUFFER_TIMEOUT;
            while tokio::time::Instant::now() < deadline {
                match first_segment(client, engine, &content_id).await {
                    Ok(()) => return answer(StatusCode::OK, "#EXTM3U\n"),
                    Err(error) => log(shared, error),
                }
            }
            log(shared, "timeout waiting for initial buffer".into());
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "{\"detail\":\"timeout waiting for initial buffer\"}",
            )
        }
        _ => answer(StatusCode::NOT_FOUND, "{}"),
    }
}

/// Requests a session and the first segment, each read bounded by the engine read
/// timeout.
async fn first_segment(
    client: &HttpClient<TurmoilNet>,
    engine: &(String, u16),
    content_id: &str,
) -> Result<(), String> {
    let (host, port) = engine;
    let url = format!("http://{host}:{port}/ace/manifest.m3u8?id={content_id}&format=json");
    let body = get(client, &url).await?;
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|error| format!("bad engine answer: {error}"))?;
    let playback = json["response"]["playback_url"]
        .as_str()
        .ok_or("no playback_url")?
        .to_owned();
    let playlist = get(client, &playback).await?;
    let text = String::from_utf8_lossy(&playlist).into_owned();
    let segment = text
        .lines()
        .find(|line| !line.starts_with('#') && !line.trim().is_empty())
        .ok_or("no segment yet")?;
    let base = format!("http://{host}:{port}");
    let segment_url = if segment.starts_with("http") {
        segment.to_owned()
    } else {
        format!("{base}{segment}")
    };
    get(client, &segment_url).await.map(|_| ())
}

async fn get(client: &HttpClient<TurmoilNet>, url: &str) -> Result<Bytes, String> {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|error| error.to_string())?;
    let fetch = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        response
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(ENGINE_READ_TIMEOUT, fetch).await {
        Ok(result) => result,
        Err(_) => Err(format!("{url}: Read timed out (read timeout=10)")),
    }
}
