//! Webhook outbox delivery: each event, in sequence order, POSTed to every configured
//! receiver off the request path, retried with bounded exponential backoff, and kept
//! in the store until delivered (so it survives restarts) or given up: after
//! `max_attempts`, or as the oldest beyond `max_pending` pending deliveries.

use std::sync::Arc;
use std::time::Duration;

use acemux_core::lifecycle::{Event, EventKind};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use thiserror::Error;
use tokio::sync::watch;

use crate::metrics::{Metrics, WebhookLabels};
use crate::net::{HttpClient, Net};
use crate::store::{DeliveryOutcome, EventStore};

/// Events fetched from the store per round.
const BATCH: usize = 64;
/// Largest response body read from a receiver (only for the log line).
const MAX_RESPONSE_BYTES: usize = 4096;

/// A configured receiver.
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    /// The base URL as configured (also the key of its pending deliveries).
    pub base: String,
    started: Uri,
    ended: Uri,
}

/// A webhook URL that cannot be used.
#[derive(Debug, Error)]
#[error("invalid webhook URL {url:?}: {reason}")]
pub struct WebhookUrlError {
    url: String,
    reason: String,
}

impl WebhookTarget {
    /// Parses an `http://host:port[/prefix]` base URL.
    pub fn parse(base: &str) -> Result<Self, WebhookUrlError> {
        let error = |reason: &str| WebhookUrlError {
            url: base.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = base.trim_end_matches('/');
        let uri: Uri = trimmed.parse().map_err(|_| error("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(error("only http:// is supported"));
        }
        if uri.host().is_none() {
            return Err(error("no host"));
        }
        if uri.query().is_some() {
            return Err(error("a query string is not allowed"));
        }
        let path = |kind: EventKind| -> Result<Uri, WebhookUrlError> {
            format!("{trimmed}/events/{}", kind.as_str())
                .parse()
                .map_err(|_| error("not a URL"))
        };
        Ok(WebhookTarget {
            base: base.to_owned(),
            started: path(EventKind::StreamStarted)?,
            ended: path(EventKind::StreamEnded)?,
        })
    }

    fn uri(&self, kind: EventKind) -> &Uri {
        match kind {
            EventKind::StreamStarted => &self.started,
            EventKind::StreamEnded => &self.ended,
        }
    }
}

/// The body shape receivers expect: the paths (`/events/stream_started`,
/// `/events/stream_ended`) are the same for both orchestrators, the bodies are not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookFormat {
    /// The Python orchestrator's event contract (engine, stream key, session URLs,
    /// labels; `stream_ended` names the stream id).
    #[default]
    OrchestratorPy,
    /// The Go orchestrator's: `{content_id, engine_id, engine_name}` and
    /// `{content_id, engine_id}`, streams keyed by content id and engine container id.
    OrchestratorGo,
}

/// What the status page shows of each webhook: its last delivery and last failure.
#[derive(Debug, Default)]
pub struct WebhookBoard {
    states: std::sync::Mutex<std::collections::BTreeMap<String, WebhookState>>,
}

/// One webhook's delivery state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookState {
    /// Events delivered since the process started.
    pub delivered: u64,
    /// When the last one was.
    pub last_delivered_at: Option<acemux_core::Instant>,
    /// The last failure (a retry, a refusal or a give-up), and when.
    pub last_error: Option<(String, acemux_core::Instant)>,
}

impl WebhookBoard {
    /// A board of the configured webhooks (by base URL).
    pub fn new<'a>(webhooks: impl IntoIterator<Item = &'a str>) -> Self {
        WebhookBoard {
            states: std::sync::Mutex::new(
                webhooks
                    .into_iter()
                    .map(|url| (url.to_owned(), WebhookState::default()))
                    .collect(),
            ),
        }
    }

    fn update(&self, webhook: &str, change: impl FnOnce(&mut WebhookState)) {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        change(states.entry(webhook.to_owned()).or_default());
    }

    /// Every configured webhook's state, by URL.
    pub fn states(&self) -> std::collections::BTreeMap<String, WebhookState> {
        self.states
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

/// How deliveries are made and retried.
#[derive(Clone, Debug)]
pub struct DeliveryPolicy {
    /// The body shape receivers expect.
    pub format: WebhookFormat,
    /// Bearer key sent to receivers.
    pub api_key: Option<String>,
    /// Bound on one attempt, connect to response.
    pub attempt_timeout: Duration,
    /// First retry delay; doubles per failure.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Attempts per event before its delivery is given up (the event stays in the
    /// event log); 0 retries for ever.
    pub max_attempts: u32,
    /// Deliveries kept pending per webhook; the oldest beyond are given up (their events
    /// stay in the event log). 0: unbounded.
    pub max_pending: u64,
}

/// The body an orchestrator's event API of `format` expects for `event`.
pub fn event_body(event: &Event, format: WebhookFormat) -> serde_json::Value {
    let stream = &event.stream;
    match (format, event.kind) {
        // The Go orchestrator keys a stream by its content and an engine by its
        // container; an engine without a container id (a plain `--engine` address) is
        // named by its address, which is also what `engine_name` shows.
        (WebhookFormat::OrchestratorGo, kind) => {
            let engine_name = format!("{}:{}", stream.engine.host, stream.engine.port);
            let engine_id = stream
                .container_id
                .clone()
                .unwrap_or_else(|| engine_name.clone());
            match kind {
                EventKind::StreamStarted => json!({
                    "content_id": stream.stream.key,
                    "engine_id": engine_id,
                    "engine_name": engine_name,
                }),
                EventKind::StreamEnded => json!({
                    "content_id": stream.stream.key,
                    "engine_id": engine_id,
                }),
            }
        }
        (WebhookFormat::OrchestratorPy, EventKind::StreamStarted) => json!({
            "container_id": stream.container_id,
            "engine": { "host": stream.engine.host, "port": stream.engine.port },
            "stream": { "key_type": stream.stream.key_type, "key": stream.stream.key },
            "session": {
                "playback_session_id": stream.session.playback_session_id,
                "stat_url": stream.session.stat_url,
                "command_url": stream.session.command_url,
                "is_live": u8::from(stream.session.is_live),
            },
            "labels": stream.labels,
        }),
        (WebhookFormat::OrchestratorPy, EventKind::StreamEnded) => json!({
            "container_id": stream.container_id,
            "stream_id": stream.id,
            "reason": stream.end_reason,
        }),
    }
}

enum Attempt {
    Delivered,
    Rejected(StatusCode),
    Retry(String),
}

/// Delivers `target`'s pending events until `shutdown` turns true.
#[allow(clippy::too_many_arguments)]
pub async fn deliver<N: Net>(
    target: WebhookTarget,
    policy: DeliveryPolicy,
    client: HttpClient<N>,
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    board: Arc<WebhookBoard>,
    clock: crate::clock::Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    let failed = |error: String| {
        board.update(&target.base, |state| {
            state.last_error = Some((error, clock.now()));
        });
    };
    let labels = WebhookLabels {
        webhook: target.base.clone(),
    };
    let mut committed = store.committed();
    loop {
        committed.borrow_and_update();
        trim_backlog(&target, &policy, &*store, &metrics, &labels).await;
        let batch = match store.pending(target.base.clone(), BATCH).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(webhook = %target.base, %error, "cannot read pending deliveries");
                if sleep_or_stop(policy.max_backoff, &mut shutdown).await {
                    return;
                }
                continue;
            }
        };
        if batch.is_empty() {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                changed = committed.changed() => if changed.is_err() { return },
            }
            continue;
        }
        'batch: for event in batch {
            let mut backoff = policy.initial_backoff;
            let mut attempts: u32 = 0;
            let outcome = loop {
                attempts = attempts.saturating_add(1);
                match attempt(&client, &target, &policy, &event).await {
                    Attempt::Delivered => {
                        metrics.webhook_delivered.get_or_create(&labels).inc();
                        board.update(&target.base, |state| {
                            state.delivered += 1;
                            state.last_delivered_at = Some(clock.now());
                        });
                        break DeliveryOutcome::Delivered;
                    }
                    Attempt::Rejected(status) => {
                        metrics.webhook_rejected.get_or_create(&labels).inc();
                        failed(format!("event {} refused for good: {status}", event.seq));
                        tracing::error!(webhook = %target.base, seq = event.seq, %status,
                            "webhook refused the event for good; not retrying");
                        break DeliveryOutcome::Rejected;
                    }
                    Attempt::Retry(reason)
                        if policy.max_attempts != 0 && attempts >= policy.max_attempts =>
                    {
                        metrics.webhook_given_up.get_or_create(&labels).inc();
                        metrics.limit_hit("webhook_attempts");
                        failed(format!(
                            "event {} given up after {attempts} attempts: {reason}",
                            event.seq
                        ));
                        tracing::error!(webhook = %target.base, seq = event.seq, event_id = %event.event_id,
                            %reason, attempts, "webhook delivery given up after the maximum attempts; the event stays in the event log (GET /events)");
                        break DeliveryOutcome::Rejected;
                    }
                    Attempt::Retry(reason) => {
                        metrics.webhook_retried.get_or_create(&labels).inc();
                        failed(format!("event {}: {reason}; retrying", event.seq));
                        tracing::warn!(webhook = %target.base, seq = event.seq, %reason,
                            retry_in = ?backoff, "webhook delivery failed; will retry");
                        // The backlog grows while the receiver is down: trim it now rather
                        // than after this event's last attempt. What is left of the batch
                        // (this event first, as the oldest) may just have been given up.
                        if trim_backlog(&target, &policy, &*store, &metrics, &labels).await {
                            break 'batch;
                        }
                        if sleep_or_stop(backoff, &mut shutdown).await {
                            return;
                        }
                        backoff = (backoff * 2).min(policy.max_backoff);
                    }
                }
            };
            if let Err(error) = store
                .finish_delivery(target.base.clone(), event.seq, outcome)
                .await
            {
                tracing::warn!(webhook = %target.base, seq = event.seq, %error,
                    "cannot record delivery; it may be repeated (receivers dedupe by Idempotency-Key)");
            }
            metrics.webhook_pending.get_or_create(&labels).dec();
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

/// Gives up the oldest pending deliveries beyond `policy.max_pending` and sets the
/// pending gauge; `true` when any were given up.
async fn trim_backlog(
    target: &WebhookTarget,
    policy: &DeliveryPolicy,
    store: &dyn EventStore,
    metrics: &Metrics,
    labels: &WebhookLabels,
) -> bool {
    let Ok(mut pending) = store.pending_count(target.base.clone()).await else {
        // Reading the batch reports a failing store; nothing to trim or show meanwhile.
        return false;
    };
    let mut trimmed = false;
    if policy.max_pending != 0 && pending > policy.max_pending {
        match store
            .give_up_oldest(target.base.clone(), policy.max_pending)
            .await
        {
            Ok(Some(given_up)) => {
                trimmed = true;
                pending = pending.saturating_sub(given_up.count);
                metrics
                    .webhook_given_up
                    .get_or_create(labels)
                    .inc_by(given_up.count);
                metrics.limit_hits_by("webhook_pending", given_up.count);
                tracing::warn!(webhook = %target.base, given_up = given_up.count,
                    first_seq = given_up.first_seq, last_seq = given_up.last_seq,
                    max_pending = policy.max_pending,
                    "webhook backlog over --webhook-max-pending; the oldest deliveries were given up (the events stay in the event log, GET /events)");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(webhook = %target.base, %error,
                    "cannot give up deliveries beyond --webhook-max-pending; will try again");
            }
        }
    }
    metrics
        .webhook_pending
        .get_or_create(labels)
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    trimmed
}

/// Sleeps `delay`; `true` when shutdown came first.
async fn sleep_or_stop(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        biased;
        _ = shutdown.wait_for(|stop| *stop) => true,
        () = tokio::time::sleep(delay) => false,
    }
}

async fn attempt<N: Net>(
    client: &HttpClient<N>,
    target: &WebhookTarget,
    policy: &DeliveryPolicy,
    event: &Event,
) -> Attempt {
    let body = event_body(event, policy.format).to_string();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(target.uri(event.kind).clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", &event.event_id)
        .header(
            header::USER_AGENT,
            concat!("acemux/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(key) = &policy.api_key {
        request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let request = match request.body(Full::new(Bytes::from(body))) {
        Ok(request) => request,
        Err(error) => return Attempt::Retry(format!("cannot build request: {error}")),
    };
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(policy.attempt_timeout, exchange).await {
        Err(_) => Attempt::Retry(format!("no answer within {:?}", policy.attempt_timeout)),
        Ok(Err(error)) => Attempt::Retry(error),
        Ok(Ok((status, _))) if status.is_success() => Attempt::Delivered,
        Ok(Ok((status, _))) if refused_for_good(status) => Attempt::Rejected(status),
        Ok(Ok((status, body))) => Attempt::Retry(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(256)])
        )),
    }
}

/// Whether a webhook's answer refuses an event for good (a 4xx other than 408 and 429):
/// it is not sent again. Other failures are retried.
pub fn refused_for_good(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_checked_and_joined() {
        let target = WebhookTarget::parse("http://127.0.0.1:9000/hooks/").expect("valid URL");
        assert_eq!(
            target.uri(EventKind::StreamStarted).to_string(),
            "http://127.0.0.1:9000/hooks/events/stream_started"
        );
        assert_eq!(
            target.uri(EventKind::StreamEnded).to_string(),
            "http://127.0.0.1:9000/hooks/events/stream_ended"
        );
        assert!(WebhookTarget::parse("https://example.org").is_err());
        assert!(WebhookTarget::parse("not a url").is_err());
        assert!(WebhookTarget::parse("http://host/x?y=1").is_err());
    }

    fn event(kind: EventKind, container_id: Option<&str>) -> Event {
        use acemux_core::lifecycle::{
            EngineAddr, KeyType, SessionInfo, StreamKey, StreamState, StreamStatus,
        };
        use acemux_core::time::Instant;
        Event {
            seq: 1,
            event_id: "ev1".into(),
            kind,
            stream: StreamState {
                id: "abc|s1".into(),
                status: StreamStatus::Started,
                container_id: container_id.map(str::to_owned),
                engine: EngineAddr {
                    host: "10.0.0.7".into(),
                    port: 19001,
                },
                stream: StreamKey {
                    key_type: KeyType::Infohash,
                    key: "abc".into(),
                },
                session: SessionInfo {
                    playback_session_id: "s1".into(),
                    stat_url: "http://10.0.0.7:19001/ace/stat/abc/s1".into(),
                    command_url: "http://10.0.0.7:19001/ace/cmd/abc/s1".into(),
                    is_live: true,
                },
                labels: Default::default(),
                started_at: Instant::ZERO,
                ended_at: None,
                end_reason: None,
                last_event_seq: 1,
            },
            at: Instant::ZERO,
        }
    }

    #[test]
    fn go_bodies_name_the_engine_by_container_id_when_there_is_one() {
        let go = WebhookFormat::OrchestratorGo;
        assert_eq!(
            event_body(&event(EventKind::StreamStarted, Some("c0ffee")), go),
            json!({ "content_id": "abc", "engine_id": "c0ffee", "engine_name": "10.0.0.7:19001" })
        );
        assert_eq!(
            event_body(&event(EventKind::StreamEnded, Some("c0ffee")), go),
            json!({ "content_id": "abc", "engine_id": "c0ffee" })
        );
        assert_eq!(
            event_body(&event(EventKind::StreamEnded, None), go),
            json!({ "content_id": "abc", "engine_id": "10.0.0.7:19001" })
        );
    }

    #[test]
    fn python_bodies_are_the_event_contract() {
        let py = WebhookFormat::OrchestratorPy;
        let started = event_body(&event(EventKind::StreamStarted, Some("c0ffee")), py);
        assert_eq!(started["container_id"], "c0ffee");
        assert_eq!(
            started["stream"],
            json!({ "key_type": "infohash", "key": "abc" })
        );
        assert_eq!(started["session"]["is_live"], 1);
        let ended = event_body(&event(EventKind::StreamEnded, Some("c0ffee")), py);
        assert_eq!(
            ended,
            json!({ "container_id": "c0ffee", "stream_id": "abc|s1", "reason": null })
        );
    }
}
