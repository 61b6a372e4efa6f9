//! One relayed connection: two directions, each a reader and a writer joined by a
//! bounded queue of chunks, so latency delays chunks without reordering them and a
//! stall or throttle pushes back on the sender instead of buffering without bound.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::counters::{Counters, DirectionCounters};
use super::plan::{DirectionFaults, StallStart};

/// Shortest pacing step of a throttle: a throttled direction sends at most this
/// often, in pieces of the matching size.
const THROTTLE_STEP: Duration = Duration::from_millis(20);
/// Bound on flushing a FIN to a peer that stopped reading.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(1);

/// Chunks queued per direction at most; bytes are bounded by `PumpBounds` too.
const QUEUE_CHUNKS: usize = 4096;

/// Bounds of one direction's buffering.
#[derive(Clone, Copy, Debug)]
pub(super) struct PumpBounds {
    /// Largest chunk read at once.
    pub chunk_bytes: usize,
    /// Bytes read but not yet forwarded, at most (at least `chunk_bytes`). A budget
    /// in bytes rather than chunks, so that added latency does not also cap the rate
    /// when chunks are small.
    pub queue_bytes: usize,
}

/// A chunk, when it was read, and its share of the direction's byte budget.
type Queued = (Instant, Bytes, OwnedSemaphorePermit);

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// Both sides closed their sending halves.
    Finished,
    /// `cut_after_bytes` fired: FIN both ways.
    Cut,
    /// `rst_after_bytes` fired: reset both ways.
    Reset,
    /// The control API cut every open connection.
    Partitioned,
    /// The relay is shutting down.
    Shutdown,
    /// A read or write failed (the peer reset, …).
    Failed(String),
}

impl Ending {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Ending::Finished => "finished",
            Ending::Cut => "cut",
            Ending::Reset => "reset",
            Ending::Partitioned => "partitioned",
            Ending::Shutdown => "shutdown",
            Ending::Failed(_) => "failed",
        }
    }
}

/// Which way bytes flow, for logs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Way {
    Up,
    Down,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::Up => "up",
            Way::Down => "down",
        }
    }
}

/// What one direction needs besides its two halves.
pub(super) struct DirectionContext<'a> {
    pub way: Way,
    pub connection: u64,
    pub faults: DirectionFaults,
    pub accepted_at: Instant,
    pub bounds: PumpBounds,
    pub counters: &'a Counters,
    /// Set by the first direction that ends the whole connection.
    pub ending: &'a watch::Sender<Option<Ending>>,
}

impl DirectionContext<'_> {
    fn direction_counters(&self) -> &DirectionCounters {
        match self.way {
            Way::Up => &self.counters.up,
            Way::Down => &self.counters.down,
        }
    }

    fn end_connection(&self, ending: Ending) {
        self.ending.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(ending);
                true
            } else {
                false
            }
        });
    }
}

/// Forwards `reader` to `writer` under `context.faults` until the reader's end (then
/// the writer's sending half is shut down) or until this direction ends the
/// connection (then `context.ending` is set; the caller stops the other direction).
pub(super) async fn forward<R, W>(reader: &mut R, writer: &mut W, context: DirectionContext<'_>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, queued) = mpsc::channel(QUEUE_CHUNKS);
    let budget = Arc::new(Semaphore::new(context.bounds.queue_bytes));
    let read_side = read_chunks(reader, queue, budget, &context);
    let write_side = write_chunks(writer, queued, &context);
    let ((), ()) = tokio::join!(read_side, write_side);
}

async fn read_chunks<R: AsyncRead + Unpin>(
    reader: &mut R,
    queue: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
    context: &DirectionContext<'_>,
) {
    loop {
        let mut buffer = BytesMut::with_capacity(context.bounds.chunk_bytes);
        match reader.read_buf(&mut buffer).await {
            // End of stream: dropping `queue` tells the writer.
            Ok(0) => return,
            Ok(len) => {
                let read_at = Instant::now();
                // `len` ≤ `chunk_bytes` ≤ `queue_bytes` (see `RelayConfig::bounds`),
                // so the budget can always grant it; closed never.
                let Ok(permit) = budget.clone().acquire_many_owned(len as u32).await else {
                    return;
                };
                if queue
                    .send((read_at, buffer.freeze(), permit))
                    .await
                    .is_err()
                {
                    // The writer ended the connection.
                    return;
                }
            }
            Err(error) => {
                context.end_connection(Ending::Failed(format!(
                    "reading {}: {error}",
                    context.way.label()
                )));
                return;
            }
        }
    }
}

/// Where a direction stands against its faults.
struct WriteState {
    forwarded_bytes: u64,
    stall_done: bool,
    next_send_at: Instant,
}

async fn write_chunks<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut queued: mpsc::Receiver<Queued>,
    context: &DirectionContext<'_>,
) {
    let faults = context.faults;
    let limit = faults
        .cut_after_bytes
        .map(|bytes| (bytes, Ending::Cut))
        .or(faults.rst_after_bytes.map(|bytes| (bytes, Ending::Reset)));
    let mut state = WriteState {
        forwarded_bytes: 0,
        stall_done: false,
        next_send_at: Instant::now(),
    };
    // The permit returns the chunk's bytes to the budget once it is written.
    while let Some((read_at, mut chunk, _permit)) = queued.recv().await {
        if let Some(latency) = faults.latency {
            tokio::time::sleep_until(read_at + latency).await;
        }
        while !chunk.is_empty() {
            stall_if_due(&mut state, context).await;
            if let Some((limit_bytes, ending)) = &limit {
                if state.forwarded_bytes >= *limit_bytes {
                    fire_limit(ending.clone(), &state, context);
                    return;
                }
            }
            let take = piece_len(chunk.len(), &state, faults, limit.as_ref().map(|l| l.0));
            if let Some(bps) = faults.throttle_bps {
                tokio::time::sleep_until(state.next_send_at).await;
                let send_time = Duration::from_nanos(
                    u64::try_from(take as u128 * 1_000_000_000 / u128::from(bps))
                        .unwrap_or(u64::MAX),
                );
                state.next_send_at = state.next_send_at.max(Instant::now()) + send_time;
            }
            if let Err(error) = writer.write_all(&chunk[..take]).await {
                context.end_connection(Ending::Failed(format!(
                    "writing {}: {error}",
                    context.way.label()
                )));
                return;
            }
            state.forwarded_bytes += take as u64;
            context.direction_counters().add_bytes(take as u64);
            chunk.advance(take);
            if let Some((limit_bytes, ending)) = &limit {
                if state.forwarded_bytes >= *limit_bytes {
                    let _ = writer.flush().await;
                    fire_limit(ending.clone(), &state, context);
                    return;
                }
            }
        }
    }
    // The reader reached the end of its stream: pass the half-close on.
    let _ = tokio::time::timeout(SHUTDOWN_BOUND, writer.shutdown()).await;
}

/// How much of a `chunk_len`-byte chunk may go in one write: up to a byte-count
/// stall or limit, and one throttle step's worth.
fn piece_len(
    chunk_len: usize,
    state: &WriteState,
    faults: DirectionFaults,
    limit_bytes: Option<u64>,
) -> usize {
    let mut take = chunk_len as u64;
    if let Some(stall) = faults.stall.filter(|_| !state.stall_done) {
        if let StallStart::AfterBytes(at) = stall.start {
            take = take.min(at.saturating_sub(state.forwarded_bytes).max(1));
        }
    }
    if let Some(limit) = limit_bytes {
        take = take.min(limit.saturating_sub(state.forwarded_bytes).max(1));
    }
    if let Some(bps) = faults.throttle_bps {
        let step_bytes = u128::from(bps) * THROTTLE_STEP.as_millis() / 1000;
        take = take.min(u64::try_from(step_bytes).unwrap_or(u64::MAX).max(1));
    }
    // `take` ≤ `chunk_len`, which is a usize.
    usize::try_from(take).unwrap_or(chunk_len)
}

async fn stall_if_due(state: &mut WriteState, context: &DirectionContext<'_>) {
    let Some(stall) = context.faults.stall.filter(|_| !state.stall_done) else {
        return;
    };
    let now = Instant::now();
    let resume_at = match stall.start {
        StallStart::AfterBytes(at) if state.forwarded_bytes >= at => now + stall.duration,
        StallStart::After(after) if now >= context.accepted_at + after => {
            context.accepted_at + after + stall.duration
        }
        _ => return,
    };
    state.stall_done = true;
    if resume_at <= now {
        // The stall's window passed while nothing was waiting to be forwarded.
        return;
    }
    context.counters.faults.stall.add(1);
    tracing::info!(
        connection = context.connection,
        direction = context.way.label(),
        forwarded_bytes = state.forwarded_bytes,
        stall_for = ?stall.duration,
        "relay fault: stall"
    );
    tokio::time::sleep_until(resume_at).await;
    tracing::info!(
        connection = context.connection,
        direction = context.way.label(),
        "relay fault: stall over, forwarding again"
    );
}

fn fire_limit(ending: Ending, state: &WriteState, context: &DirectionContext<'_>) {
    let counter = match ending {
        Ending::Reset => &context.counters.faults.rst,
        _ => &context.counters.faults.cut,
    };
    counter.add(1);
    tracing::info!(
        connection = context.connection,
        direction = context.way.label(),
        forwarded_bytes = state.forwarded_bytes,
        fault = ending.label(),
        "relay fault: closing the connection"
    );
    context.end_connection(ending);
}
