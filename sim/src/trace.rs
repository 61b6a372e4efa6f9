//! A hash of a whole run: every log event of every host (target, level, fields,
//! simulated time), every player's answers and received bytes, and the event log.
//! Two runs of one seed must produce the same hash.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer};

/// A 64-bit hash of everything added, word by word (see [`crate::media_index::word_hash`]): stable across runs, processes and platforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHasher {
    state: u64,
    items: u64,
}

impl Default for TraceHasher {
    fn default() -> Self {
        TraceHasher {
            state: 0xcbf2_9ce4_8422_2325,
            items: 0,
        }
    }
}

impl TraceHasher {
    /// Adds bytes.
    pub fn add_bytes(&mut self, bytes: &[u8]) {
        self.state = crate::media_index::word_hash(self.state, bytes);
        self.state = crate::media_index::word_hash(self.state, &(bytes.len() as u64).to_le_bytes());
        self.items += 1;
    }

    /// Adds a line of text.
    pub fn add_text(&mut self, text: &str) {
        self.add_bytes(text.as_bytes());
        self.add_bytes(b"\n");
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.state
    }

    /// Items added so far.
    pub fn items(&self) -> u64 {
        self.items
    }
}

/// A `tracing` layer that feeds every event into a shared [`TraceHasher`].
#[derive(Clone)]
pub struct TraceLayer {
    hasher: Arc<Mutex<TraceHasher>>,
    /// Where every hashed line also goes, when `SIM_TRACE_FILE` names a file: two
    /// runs' files diff to the first divergence.
    dump: Option<Arc<Mutex<std::fs::File>>>,
    /// Set while a host is torn down: the order in which a dropped runtime drops its
    /// tasks (and so logs their ends) follows tokio's process-wide task ids, which a
    /// second run in the same process does not share; those lines are left out.
    paused: Arc<std::sync::atomic::AtomicBool>,
    /// Lines of the current instant, hashed sorted once time moves: hosts that wake at
    /// one instant on events turmoil delivers in hash-map order (a crashed host's
    /// sockets closing) log in an order a second run in the same process may not share.
    instant: Arc<Mutex<(u128, Vec<String>)>>,
}

impl Default for TraceLayer {
    fn default() -> Self {
        let dump = std::env::var("SIM_TRACE_FILE")
            .ok()
            .and_then(|path| std::fs::File::create(path).ok())
            .map(|file| Arc::new(Mutex::new(file)));
        TraceLayer {
            hasher: Arc::default(),
            dump,
            paused: Arc::default(),
            instant: Arc::default(),
        }
    }
}

impl TraceLayer {
    /// The hash of the events seen so far.
    pub fn hash(&self) -> TraceHasher {
        let mut instant = self.instant.lock().unwrap_or_else(|p| p.into_inner());
        self.flush(&mut instant.1);
        *self.hasher.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hashes (and dumps) `lines`, sorted, and empties it.
    fn flush(&self, lines: &mut Vec<String>) {
        lines.sort();
        let mut hasher = self.hasher.lock().unwrap_or_else(|p| p.into_inner());
        for line in lines.drain(..) {
            if let Some(dump) = &self.dump {
                let _ = writeln!(dump.lock().unwrap_or_else(|p| p.into_inner()), "{line}");
            }
            hasher.add_text(&line);
        }
    }

    /// Runs `teardown` (a host crashed or bounced) without hashing what it logs.
    pub fn unhashed<T>(&self, teardown: impl FnOnce() -> T) -> T {
        use std::sync::atomic::Ordering;
        self.paused.store(true, Ordering::SeqCst);
        let result = teardown();
        self.paused.store(false, Ordering::SeqCst);
        result
    }
}

struct LineVisitor(String);

impl Visit for LineVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl<S: Subscriber> Layer<S> for TraceLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if self.paused.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        let metadata = event.metadata();
        let mut line = LineVisitor(format!(
            "{}us {} {}",
            elapsed.as_micros(),
            metadata.level(),
            metadata.target()
        ));
        event.record(&mut line);
        let mut instant = self.instant.lock().unwrap_or_else(|p| p.into_inner());
        if instant.0 != elapsed.as_micros() {
            self.flush(&mut instant.1);
            instant.0 = elapsed.as_micros();
        }
        instant.1.push(line.0);
    }
}

/// Installs, for this thread until the guard drops, the trace layer (debug and above)
/// and, when `SIM_LOG` holds a filter, human-readable logs on stderr.
pub fn install(layer: TraceLayer) -> tracing::subscriber::DefaultGuard {
    let hashed = layer.with_filter(tracing_subscriber::filter::LevelFilter::DEBUG);
    let printed = std::env::var("SIM_LOG").ok().map(|filter| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_timer(SimTime)
            .with_filter(EnvFilter::new(filter))
    });
    let subscriber = tracing_subscriber::registry().with(hashed).with(printed);
    tracing::subscriber::set_default(subscriber)
}

/// Log timestamps in simulated time, so that logs line up with failure reports.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let elapsed = turmoil::sim_elapsed().unwrap_or_default();
        write!(w, "{:>9.3}s", elapsed.as_secs_f64())
    }
}
