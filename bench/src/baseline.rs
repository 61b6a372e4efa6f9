//! The baseline: a plain sender that writes the same media bytes, at the same pacing,
//! straight to its clients: no engine session, no ring, no per-viewer state beyond the
//! socket. What acemux is measured against, in the same run, on the same machine.
//!
//! - `GET /ts/<bit/s>`: the emulator's media paced at that rate, in the emulator's
//!   pieces every [`PACING_INTERVAL`]; a joining client gets the newest piece at once.
//!   One source per rate, shared by all its clients (a broadcast of [`Bytes`]).
//! - `GET /ts-unpaced`: the media, as fast as the client reads it.
//! - `GET /hls/playlist.m3u8` and `GET /hls/seg/<n>.ts`: a live playlist of 2 s
//!   segments and their bytes, from memory.
//! - `GET /health`: a small JSON answer.
//!
//! Responses are HTTP/1.1 with the framing acemux uses (chunked streams, sized
//! answers), written with one vectored write per piece.

use std::collections::BTreeMap;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use acemux_core::ts::PACKET_LEN;
use acemux_testkit::emulator::MediaLoop;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// How often a paced source sends, as the emulator does.
const PACING_INTERVAL: Duration = Duration::from_millis(50);
/// Largest piece sent at once, as the emulator does.
const MAX_PIECE_BYTES: u64 = 348 * PACKET_LEN as u64;
/// Pieces a paced source holds for slow clients; one that falls further behind is
/// closed, as acemux drops a viewer that falls out of its ring.
const SOURCE_QUEUE: usize = 1024;
/// Piece size of an unpaced stream (acemux's largest delivery).
const UNPACED_PIECE_BYTES: usize = 256 * 1024;
/// Segments in the served playlist, as acemux's default window.
const WINDOW_SEGMENTS: u64 = 6;
/// Duration of one HLS segment.
const SEGMENT: Duration = Duration::from_secs(2);
/// A paced source without clients for this long stops.
const SOURCE_IDLE: Duration = Duration::from_secs(2);
/// Largest request head.
const MAX_REQUEST_BYTES: usize = 8 * 1024;

struct Source {
    pieces: broadcast::Sender<Bytes>,
    newest: Mutex<Bytes>,
}

struct State {
    media: MediaLoop,
    sources: Mutex<BTreeMap<u64, Arc<Source>>>,
    /// One loop of the media, sent again and again by unpaced streams.
    unpaced: Bytes,
    segment: Bytes,
    started: Instant,
}

/// Serves until the listener fails.
pub async fn serve(listener: TcpListener) {
    let media = MediaLoop::builtin();
    let segment_len = bytes_in(media.bitrate_bps(), SEGMENT);
    let segment_len = segment_len - segment_len % PACKET_LEN as u64;
    let state = Arc::new(State {
        unpaced: media.read(0, usize::try_from(media.loop_len_bytes()).unwrap_or(0)),
        segment: media.read(0, usize::try_from(segment_len).unwrap_or(0)),
        media,
        sources: Mutex::new(BTreeMap::new()),
        started: Instant::now(),
    });
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(state.clone(), stream));
    }
}

fn bytes_in(rate_bps: u64, duration: Duration) -> u64 {
    u64::try_from(u128::from(rate_bps) * duration.as_micros() / 8_000_000).unwrap_or(u64::MAX)
}

async fn connection(state: Arc<State>, mut stream: TcpStream) {
    let mut buffer = BytesMut::with_capacity(1024);
    loop {
        let path = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = buffer.split_to(end + 4);
                let line = head[..].split(|&b| b == b'\r').next().unwrap_or_default();
                let line = String::from_utf8_lossy(line).into_owned();
                break line.split(' ').nth(1).unwrap_or("/").to_owned();
            }
            if buffer.len() > MAX_REQUEST_BYTES {
                return;
            }
            match stream.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let path = path.split('?').next().unwrap_or_default().to_owned();
        let answered = if let Some(rate) = path.strip_prefix("/ts/") {
            match rate.parse::<u64>() {
                Ok(rate) if (1_000..=1_000_000_000).contains(&rate) => {
                    paced(&state, rate, &mut stream).await;
                    return;
                }
                _ => {
                    sized(
                        &mut stream,
                        400,
                        "application/json",
                        b"{\"error\":\"bad rate\"}",
                    )
                    .await
                }
            }
        } else if path == "/ts-unpaced" {
            unpaced(&state, &mut stream).await;
            return;
        } else if path == "/hls/playlist.m3u8" {
            let text = playlist(&state);
            sized(
                &mut stream,
                200,
                "application/vnd.apple.mpegurl",
                text.as_bytes(),
            )
            .await
        } else if path.starts_with("/hls/seg/") {
            sized(&mut stream, 200, "video/mp2t", &state.segment).await
        } else if path == "/health" {
            sized(&mut stream, 200, "application/json", b"{\"status\":\"ok\"}").await
        } else {
            sized(
                &mut stream,
                404,
                "application/json",
                b"{\"error\":\"not_found\"}",
            )
            .await
        };
        if !answered {
            return;
        }
    }
}

fn playlist(state: &State) -> String {
    let elapsed = state.started.elapsed();
    let newest = elapsed.as_secs() / SEGMENT.as_secs() + WINDOW_SEGMENTS;
    let first = newest + 1 - WINDOW_SEGMENTS;
    let mut text = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{first}\n",
        SEGMENT.as_secs()
    );
    for seq in first..=newest {
        text.push_str(&format!(
            "#EXTINF:{:.6},\n/hls/seg/{seq}.ts\n",
            SEGMENT.as_secs_f64()
        ));
    }
    text
}

async fn sized(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) -> bool {
    let reason = if status == 200 { "OK" } else { "Error" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut slices = [IoSlice::new(head.as_bytes()), IoSlice::new(body)];
    write_all_vectored(stream, &mut slices).await.is_ok()
}

const STREAM_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ntransfer-encoding: chunked\r\n\r\n";

/// Writes one chunk of a chunked body in one vectored write.
async fn write_chunk(stream: &mut TcpStream, piece: &[u8]) -> std::io::Result<()> {
    let size = format!("{:x}\r\n", piece.len());
    let mut slices = [
        IoSlice::new(size.as_bytes()),
        IoSlice::new(piece),
        IoSlice::new(b"\r\n"),
    ];
    write_all_vectored(stream, &mut slices).await
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    stream: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    while !slices.is_empty() {
        let written = stream.write_vectored(slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

async fn paced(state: &Arc<State>, rate_bps: u64, stream: &mut TcpStream) {
    let (source, mut pieces) = source(state, rate_bps);
    let newest = source
        .newest
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if stream.write_all(STREAM_HEAD).await.is_err() {
        return;
    }
    if !newest.is_empty() && write_chunk(stream, &newest).await.is_err() {
        return;
    }
    // Lagged (fell behind the queue) or closed: the client is done.
    while let Ok(piece) = pieces.recv().await {
        if write_chunk(stream, &piece).await.is_err() {
            return;
        }
    }
}

async fn unpaced(state: &State, stream: &mut TcpStream) {
    if stream.write_all(STREAM_HEAD).await.is_err() {
        return;
    }
    loop {
        for piece in state.unpaced.chunks(UNPACED_PIECE_BYTES) {
            if write_chunk(stream, piece).await.is_err() {
                return;
            }
        }
    }
}

/// The paced source of `rate_bps` (started on first use) and a subscription to it.
fn source(state: &Arc<State>, rate_bps: u64) -> (Arc<Source>, broadcast::Receiver<Bytes>) {
    let mut sources = state.sources.lock().unwrap_or_else(PoisonError::into_inner);
    let source = sources
        .entry(rate_bps)
        .or_insert_with(|| {
            let (pieces, _) = broadcast::channel(SOURCE_QUEUE);
            let source = Arc::new(Source {
                pieces,
                newest: Mutex::new(Bytes::new()),
            });
            tokio::spawn(pace(state.clone(), rate_bps, source.clone()));
            source
        })
        .clone();
    // Under the lock: a source without subscribers is removed under it too.
    let pieces = source.pieces.subscribe();
    (source, pieces)
}

/// Sends the media at `rate_bps`, as the emulator paces a playback: what is due by
/// now, in whole packets, every pacing interval. A source nobody has listened to for
/// [`SOURCE_IDLE`] ends.
async fn pace(state: Arc<State>, rate_bps: u64, source: Arc<Source>) {
    let started = Instant::now();
    let mut sent = 0u64;
    let mut ticks = tokio::time::interval(PACING_INTERVAL);
    let mut heard = Instant::now();
    loop {
        ticks.tick().await;
        if source.pieces.receiver_count() > 0 {
            heard = Instant::now();
        } else if heard.elapsed() >= SOURCE_IDLE {
            let mut sources = state.sources.lock().unwrap_or_else(PoisonError::into_inner);
            if source.pieces.receiver_count() == 0 {
                sources.remove(&rate_bps);
                return;
            }
        }
        let due = bytes_in(rate_bps, started.elapsed());
        let due = due - due % PACKET_LEN as u64;
        while sent < due {
            let len = (due - sent).min(MAX_PIECE_BYTES);
            let piece = state.media.read(sent, usize::try_from(len).unwrap_or(0));
            sent += len;
            *source.newest.lock().unwrap_or_else(PoisonError::into_inner) = piece.clone();
            // No receivers is fine: the source keeps time for the next client.
            let _ = source.pieces.send(piece);
        }
    }
}
