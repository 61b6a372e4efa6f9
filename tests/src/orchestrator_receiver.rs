//! Webhook receivers that check event bodies the way each orchestrator reads them: a
//! body that does not decode into the orchestrator's own event type (a missing field,
//! a field of the wrong type, a field it does not know) is answered 400 and counted.
//! What decodes is recorded, in order, with the event path it came to.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use tokio::task::JoinHandle;

/// Whose event contract a receiver enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contract {
    /// The Python orchestrator's `StreamStartedEvent` / `StreamEndedEvent`.
    Python,
    /// The Go orchestrator's `StreamStartedEvent` / `StreamEndedEvent` (a non-empty
    /// `content_id` required, as its handlers do).
    Go,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PyEngine {
    host: String,
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PyStream {
    key_type: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PySession {
    playback_session_id: String,
    stat_url: String,
    command_url: String,
    is_live: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PyStarted {
    container_id: Option<String>,
    engine: PyEngine,
    stream: PyStream,
    session: PySession,
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PyEnded {
    container_id: Option<String>,
    stream_id: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GoStarted {
    content_id: String,
    #[allow(dead_code)]
    engine_id: String,
    #[allow(dead_code)]
    engine_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GoEnded {
    content_id: String,
    #[allow(dead_code)]
    engine_id: String,
}

/// One accepted delivery: the event type from the path and the body as sent.
#[derive(Clone, Debug)]
pub struct Received {
    /// `stream_started` or `stream_ended`.
    pub event: String,
    /// The JSON body.
    pub body: Value,
}

#[derive(Default)]
struct Record {
    accepted: Vec<Received>,
    refused: Vec<String>,
}

/// A receiver enforcing one orchestrator's contract on a free loopback port.
pub struct OrchestratorReceiver {
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
    task: JoinHandle<()>,
}

impl OrchestratorReceiver {
    /// Starts one enforcing `contract`.
    pub async fn start(contract: Contract) -> OrchestratorReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("local address");
        let record = Arc::new(Mutex::new(Record::default()));
        let app = axum::Router::new()
            .route(
                "/events/{event}",
                axum::routing::post(
                    move |state: State<Arc<Mutex<Record>>>,
                          event: Path<String>,
                          body: axum::body::Bytes| async move {
                        receive(contract, state, event, body)
                    },
                ),
            )
            .with_state(record.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        OrchestratorReceiver { addr, record, task }
    }

    /// `http://127.0.0.1:<port>`, a webhook base URL.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The deliveries accepted so far, in order.
    pub fn accepted(&self) -> Vec<Received> {
        self.lock().accepted.clone()
    }

    /// Why each refused delivery was refused.
    pub fn refused(&self) -> Vec<String> {
        self.lock().refused.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl Drop for OrchestratorReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| error.to_string())
}

fn check(contract: Contract, event: &str, body: &[u8]) -> Result<(), String> {
    match (contract, event) {
        (Contract::Python, "stream_started") => decode::<PyStarted>(body).map(drop),
        (Contract::Python, "stream_ended") => decode::<PyEnded>(body).map(drop),
        (Contract::Go, "stream_started") => {
            let started = decode::<GoStarted>(body)?;
            if started.content_id.is_empty() {
                return Err("content_id required".into());
            }
            Ok(())
        }
        (Contract::Go, "stream_ended") => {
            let ended = decode::<GoEnded>(body)?;
            if ended.content_id.is_empty() {
                return Err("content_id required".into());
            }
            Ok(())
        }
        _ => Err(format!("unknown event {event}")),
    }
}

fn receive(
    contract: Contract,
    State(record): State<Arc<Mutex<Record>>>,
    Path(event): Path<String>,
    body: axum::body::Bytes,
) -> StatusCode {
    let mut record = record.lock().unwrap_or_else(|poison| poison.into_inner());
    match check(contract, &event, &body) {
        Ok(()) => {
            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
            record.accepted.push(Received { event, body });
            // The Go orchestrator answers a start 201, the Python one 200.
            if contract == Contract::Go
                && record.accepted.last().map(|r| r.event.as_str()) == Some("stream_started")
            {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            }
        }
        Err(reason) => {
            record.refused.push(format!("{event}: {reason}"));
            StatusCode::BAD_REQUEST
        }
    }
}
