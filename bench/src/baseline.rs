//! The baseline: a plain sender that writes the same media bytes, at the same pacing,
//! straight to its clients: no engine session, no ring, no per-viewer state beyond the
//! socket. What acemux is measured against, in the same run, on the same machine.
//!
//! - `GET /ts/<bit/s>`: the emulator's media paced at that rate, in the emulator's
//!   pieces every [`PACING_INTERVAL`]; a joining client gets the newest piece at once.
//!   One source per rate, shared by all its clients (a broadcast of [`Bytes`]).
//!   With `?start=entry`, a joining client gets at once what acemux sends a joining
//!   player instead: the media from the last place a player can start decoding (the
//!   PAT before the newest keyframe, [`MediaLoop::entry_point`]) up to the live edge,
//!   read from the media loop (no ring, no per-client state either).
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
    /// Each piece with its stream offset.
    pieces: broadcast::Sender<(u64, Bytes)>,
    live: Mutex<Live>,
}

/// The newest piece a source sent, and the stream offset after it (the live edge).
#[derive(Default)]
struct Live {
    newest: Bytes,
    edge: u64,
}

/// Where a joining client of a paced stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// At the newest piece.
    Newest,
    /// At the last entry point before the live edge (what acemux sends a joiner).
    Entry,
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
        let (path, query) = path.split_once('?').unwrap_or((&path, ""));
        let start = if query.split('&').any(|pair| pair == "start=entry") {
            Start::Entry
        } else {
            Start::Newest
        };
        let path = path.to_owned();
        let answered = if let Some(rate) = path.strip_prefix("/ts/") {
            match rate.parse::<u64>() {
                Ok(rate) if (1_000..=1_000_000_000).contains(&rate) => {
                    paced(&state, rate, start, &mut stream).await;
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

async fn paced(state: &Arc<State>, rate_bps: u64, start: Start, stream: &mut TcpStream) {
    let (source, mut pieces) = source(state, rate_bps);
    let (first, edge) = {
        let live = source.live.lock().unwrap_or_else(PoisonError::into_inner);
        let first = match start {
            Start::Newest => live.newest.clone(),
            Start::Entry => {
                let from = state.media.entry_point(live.edge);
                state
                    .media
                    .read(from, usize::try_from(live.edge - from).unwrap_or(0))
            }
        };
        (first, live.edge)
    };
    if stream.write_all(STREAM_HEAD).await.is_err() {
        return;
    }
    if !first.is_empty() && write_chunk(stream, &first).await.is_err() {
        return;
    }
    // Lagged (fell behind the queue) or closed: the client is done.
    while let Ok((offset, piece)) = pieces.recv().await {
        // Sent between the subscription and the first write: already written.
        if offset < edge {
            continue;
        }
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
fn source(state: &Arc<State>, rate_bps: u64) -> (Arc<Source>, broadcast::Receiver<(u64, Bytes)>) {
    let mut sources = state.sources.lock().unwrap_or_else(PoisonError::into_inner);
    let source = sources
        .entry(rate_bps)
        .or_insert_with(|| {
            let (pieces, _) = broadcast::channel(SOURCE_QUEUE);
            let source = Arc::new(Source {
                pieces,
                live: Mutex::new(Live::default()),
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
            let offset = sent;
            sent += len;
            {
                let mut live = source.live.lock().unwrap_or_else(PoisonError::into_inner);
                live.newest = piece.clone();
                live.edge = sent;
            }
            // No receivers is fine: the source keeps time for the next client.
            let _ = source.pieces.send((offset, piece));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use acemux_core::ts::packets;
    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::load::Chunked;

    /// The first `want` payload bytes of a paced stream at `path`.
    async fn first_bytes(addr: std::net::SocketAddr, path: &str, want: usize) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .expect("request");
        let mut wire = BytesMut::new();
        let head_end = loop {
            assert!(stream.read_buf(&mut wire).await.expect("read") > 0);
            if let Some(at) = wire.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        assert!(wire.starts_with(b"HTTP/1.1 200"), "{wire:?}");
        let mut chunked = Chunked::default();
        let mut payload = Vec::new();
        chunked
            .feed(&wire[head_end..], |bytes| payload.extend_from_slice(bytes))
            .expect("chunked framing");
        let mut buffer = vec![0u8; 64 * 1024];
        while payload.len() < want {
            let read = stream.read(&mut buffer).await.expect("read");
            assert!(read > 0, "the stream ended");
            chunked
                .feed(&buffer[..read], |bytes| payload.extend_from_slice(bytes))
                .expect("chunked framing");
        }
        payload
    }

    #[tokio::test]
    async fn a_joiner_starting_at_an_entry_point_gets_a_pat_then_a_keyframe() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(super::serve(listener));
        // A first client starts the source; the joiner comes a second later.
        let holder = tokio::spawn(first_bytes(addr, "/ts/1000000", 200_000));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let burst = first_bytes(addr, "/ts/1000000?start=entry", 64 * 1024).await;
        let packets: Vec<_> = packets(&burst).collect();
        // The media's entry points: a PAT before a keyframe, or its very start, where
        // only tables (SDT, PAT, PMT) precede the first keyframe.
        assert!(
            packets[0].pid() < 0x20,
            "an entry point starts with tables, not pid {:#x}",
            packets[0].pid()
        );
        let pat = packets.iter().position(|packet| packet.starts_pat());
        let keyframe = packets
            .iter()
            .position(|packet| packet.starts_video_keyframe());
        assert!(
            matches!((pat, keyframe), (Some(pat), Some(keyframe)) if pat < keyframe),
            "a PAT, then a keyframe, in what is sent at once: {pat:?}, {keyframe:?}"
        );
        holder.abort();
    }
}
