//! A scripted hostile engine: an HTTP server on loopback that answers every request
//! with whatever the test's script says (bad envelopes, odd playback URLs, non-TS
//! bytes, bad playlists, endless bodies, redirect loops, late answers), and records
//! every request it gets. One with a script that answers `200 ok` is a recorder: a
//! test asserts it saw nothing to prove a URL was never fetched.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acemux::net::{Net, TokioNet};
use acemux_core::lifecycle::EngineAddr;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use tokio::task::JoinHandle;

/// How long [`Answer::Hang`] keeps a request open: longer than any test waits.
const HANG: Duration = Duration::from_secs(120);

/// One request the engine received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The path, e.g. `/ace/getstream`.
    pub path: String,
    /// The raw query, without `?` (empty when none).
    pub query: String,
}

/// What the engine answers to one request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 `application/json` with this text.
    Json(String),
    /// Any status, content type and body.
    Body {
        /// HTTP status.
        status: u16,
        /// `content-type`.
        content_type: &'static str,
        /// The body.
        body: Bytes,
    },
    /// 200 with `chunk` sent again and again every `every`, for ever.
    Endless {
        /// `content-type`.
        content_type: &'static str,
        /// What is sent each time.
        chunk: Bytes,
        /// Pause between chunks.
        every: Duration,
    },
    /// 302 to `location`.
    Redirect(String),
    /// No answer at all (the request stays open).
    Hang,
    /// `answer`, once `after` has passed (an engine slow to open a session).
    Delayed {
        /// How long the request is left unanswered.
        after: Duration,
        /// What is answered then.
        answer: Box<Answer>,
    },
}

impl Answer {
    /// 200 `text/plain` `ok`.
    pub fn ok() -> Answer {
        Answer::body(200, "text/plain", "ok")
    }

    /// `status` with a `content_type` body.
    pub fn body(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
        Answer::Body {
            status,
            content_type,
            body: body.into(),
        }
    }
}

type Script = dyn Fn(&Hit) -> Answer + Send + Sync;

struct Inner {
    script: Box<Script>,
    hits: Mutex<Vec<Hit>>,
}

/// A running scripted engine.
pub struct HostileEngine {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl HostileEngine {
    /// Starts an engine on a free loopback port that answers each request with
    /// `script(hit)`.
    pub async fn start(script: impl Fn(&Hit) -> Answer + Send + Sync + 'static) -> HostileEngine {
        let listener = TokioNet
            .bind(
                "127.0.0.1:0".parse().expect("address"),
                acemux::net::DEFAULT_BACKLOG,
            )
            .await
            .expect("bind hostile engine");
        let addr = listener.local_addr().expect("local address");
        let inner = Arc::new(Inner {
            script: Box::new(script),
            hits: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(answer).with_state(inner.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                panic!("hostile engine stopped: {error}");
            }
        });
        HostileEngine { addr, inner, task }
    }

    /// A recorder: answers `200 ok` to everything.
    pub async fn recorder() -> HostileEngine {
        HostileEngine::start(|_| Answer::ok()).await
    }

    /// Its address as acemux's `--engine` takes it.
    pub fn engine_addr(&self) -> EngineAddr {
        EngineAddr {
            host: "127.0.0.1".into(),
            port: self.addr.port(),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn hits(&self) -> Vec<Hit> {
        self.inner
            .hits
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Requests received so far whose path starts with `prefix`.
    pub fn hits_on(&self, prefix: &str) -> usize {
        self.hits()
            .iter()
            .filter(|hit| hit.path.starts_with(prefix))
            .count()
    }
}

impl Drop for HostileEngine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An engine session envelope whose playback URL is `playback_url` (any text) and
/// whose stat and command URLs are on `base`.
pub fn session_envelope(base: &str, playback_url: &str) -> String {
    serde_json::json!({
        "response": {
            "playback_url": playback_url,
            "stat_url": format!("{base}/ace/stat/hostile"),
            "command_url": format!("{base}/ace/cmd/hostile"),
            "playback_session_id": "hostile",
            "is_live": 1
        },
        "error": null
    })
    .to_string()
}

async fn answer(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let hit = Hit {
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or_default().to_owned(),
    };
    inner
        .hits
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .push(hit.clone());
    let mut scripted = (inner.script)(&hit);
    // Each level of nesting is one box the script built: this ends.
    while let Answer::Delayed { after, answer } = scripted {
        tokio::time::sleep(after).await;
        scripted = *answer;
    }
    let builder = Response::builder();
    let response = match scripted {
        Answer::Json(text) => builder
            .header("content-type", "application/json")
            .body(Body::from(text)),
        Answer::Body {
            status,
            content_type,
            body,
        } => builder
            .status(status)
            .header("content-type", content_type)
            .body(Body::from(body)),
        Answer::Endless {
            content_type,
            chunk,
            every,
        } => {
            let chunks = futures::stream::unfold((), move |()| {
                let chunk = chunk.clone();
                async move {
                    tokio::time::sleep(every).await;
                    Some((Ok::<_, std::io::Error>(chunk), ()))
                }
            });
            builder
                .header("content-type", content_type)
                .body(Body::from_stream(chunks))
        }
        Answer::Redirect(location) => builder
            .status(302)
            .header("location", location)
            .body(Body::empty()),
        Answer::Hang => {
            tokio::time::sleep(HANG).await;
            builder.status(504).body(Body::empty())
        }
        Answer::Delayed { .. } => unreachable!("delays are waited out above"),
    };
    response.expect("a valid scripted response")
}
