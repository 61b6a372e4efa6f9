//! A webhook receiver that can be down (every delivery answered 503) and come back,
//! recording which events it accepted, in order, for outbox tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use hyper::{HeaderMap, StatusCode};
use tokio::task::JoinHandle;

/// A webhook receiver that answers 503 while down and records, in order, the
/// `Idempotency-Key` (event id) of every delivery it accepts while up.
pub struct SwitchableReceiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ReceiverState {
    up: AtomicBool,
    refused: AtomicUsize,
    accepted: Mutex<Vec<String>>,
}

impl SwitchableReceiver {
    /// Starts a receiver on a free loopback port, down.
    pub async fn start_down() -> SwitchableReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        SwitchableReceiver { addr, state, task }
    }

    /// `http://127.0.0.1:<port>`, a webhook base URL.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on, accepts every delivery.
    pub fn come_back(&self) {
        self.state.up.store(true, Ordering::SeqCst);
    }

    /// Deliveries answered 503 so far.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Event ids of the deliveries accepted so far, in order.
    pub fn accepted(&self) -> Vec<String> {
        self.state
            .accepted
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

impl Drop for SwitchableReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap) -> StatusCode {
    if !state.up.load(Ordering::SeqCst) {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|key| key.to_str().ok())
        .unwrap_or("missing")
        .to_owned();
    state
        .accepted
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .push(key);
    StatusCode::OK
}
