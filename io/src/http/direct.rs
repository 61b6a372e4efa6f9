//! `GET /ace/getstream` as a connection's first request, answered by acemux itself.
//!
//! A TS viewer is a long response on a connection that carries nothing else, and a
//! crowd is thousands of them. hyper keeps two 8 KiB buffers per connection for its
//! whole life (one to read request heads into, one to write response heads from), more
//! than everything else a viewer costs. So the accept loop reads each connection's first
//! request head itself ([`sniff`], parsed by `httparse`, the parser hyper uses): a
//! complete `GET /ace/getstream` head is served here, writing the response with one
//! vectored write per batch of media (one chunk per batch); anything else (any other
//! route, a malformed or oversized head, a request with a body) goes to hyper along
//! with the bytes already read, and is answered exactly as before. The answers are the
//! same either way: the same query rules, the same JSON errors, the same metrics.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use http::{StatusCode, Uri};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::error::ApiError;
use super::player::channel_key;
use super::query::Params;
use super::stream::proxy;
use super::AppState;
use crate::engine::StreamFormat;
use crate::proxy::{Client, ViewerStream};

/// The route served here, as the request metrics name it.
const ROUTE: &str = "/ace/getstream";
/// What a request line must start with to be served here.
const PREFIX: &[u8] = b"GET /ace/getstream";
/// Headers a player's request may have (more goes to hyper, which answers 431).
const MAX_HEADERS: usize = 64;

/// A `GET /ace/getstream` request head, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    /// The request target (path and query).
    pub target: String,
    /// An HTTP/1.0 client: the body is delimited by the close, not chunked.
    pub http10: bool,
    /// The `Origin` header of a web page's request (for the cross-origin headers).
    pub origin: Option<String>,
    /// The `User-Agent` header (for the viewer list).
    pub user_agent: Option<String>,
    /// The peer mark of an instance's relay (`x-acemux-peer`).
    pub peer: Option<String>,
}

/// What the start of a connection is.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    /// Too short to tell.
    Undecided,
    /// A whole `GET /ace/getstream` head, served here.
    Stream(StreamRequest),
    /// Anything else: hyper's.
    Other,
}

/// Tells what the bytes a connection sent first are.
pub fn sniff(buffer: &[u8]) -> Sniff {
    let seen = buffer.len().min(PREFIX.len());
    if buffer[..seen] != PREFIX[..seen] {
        return Sniff::Other;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer) {
        Ok(httparse::Status::Partial) => Sniff::Undecided,
        Ok(httparse::Status::Complete(_)) => {
            let target = request.path.unwrap_or_default();
            let path = target.split('?').next().unwrap_or_default();
            let has_body = request.headers.iter().any(|header| {
                header.name.eq_ignore_ascii_case("transfer-encoding")
                    || (header.name.eq_ignore_ascii_case("content-length")
                        && header.value.iter().any(|&byte| byte != b'0'))
            });
            if path != ROUTE || has_body {
                return Sniff::Other;
            }
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|header| header.name.eq_ignore_ascii_case(name))
                    .and_then(|header| std::str::from_utf8(header.value).ok())
                    .map(str::to_owned)
            };
            Sniff::Stream(StreamRequest {
                target: target.to_owned(),
                http10: request.version == Some(0),
                origin: header("origin"),
                user_agent: header("user-agent"),
                peer: header(crate::cluster::PEER_HEADER),
            })
        }
        // Malformed or too many headers: hyper answers it.
        Err(_) => Sniff::Other,
    }
}

/// What serving a TS viewer directly needs.
#[derive(Clone)]
pub struct DirectStreams {
    app: AppState,
    /// Bound on writes after the stream ended (its final chunk).
    end_write_timeout: Duration,
}

impl std::fmt::Debug for DirectStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectStreams").finish_non_exhaustive()
    }
}

impl DirectStreams {
    /// Serves TS viewers for `app`; the final chunk of an ended stream gets
    /// `end_write_timeout` (the viewer stall timeout) to be written.
    pub fn new(app: AppState, end_write_timeout: Duration) -> Arc<Self> {
        Arc::new(DirectStreams {
            app,
            end_write_timeout,
        })
    }

    /// Answers `request` on `stream`: the channel's MPEG-TS once media is in hand, else
    /// a JSON error. The connection is closed afterwards.
    pub async fn serve<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        request: StreamRequest,
        peer: std::net::SocketAddr,
    ) {
        let viewer = match self.join(&request, peer).await {
            Ok(viewer) => viewer,
            Err(error) => {
                self.count(error.status, error.limit);
                let cors = self.app.player.cors.header_lines(request.origin.as_deref());
                let answer = error_answer(&error, request.http10, &cors);
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
                return;
            }
        };
        self.count(StatusCode::OK, None);
        let http10 = request.http10;
        let head = stream_head(
            http10,
            &self.app.player.cors.header_lines(request.origin.as_deref()),
        );
        // Only the framing is needed from here on: the request's strings are not kept
        // for the stream's life.
        drop(request);
        if let Err(error) = self.write_stream(stream, viewer, head, http10).await {
            tracing::debug!(%error, "viewer connection ended");
        }
        let _ = stream.shutdown().await;
    }

    async fn join(
        &self,
        request: &StreamRequest,
        peer: std::net::SocketAddr,
    ) -> Result<ViewerStream, ApiError> {
        let uri: Uri = request.target.parse().map_err(|_| {
            ApiError::bad_request("invalid_query", "the request target is not a URI")
        })?;
        let Params(params) = Params::from_uri(&uri)?;
        let key = channel_key(&params, StreamFormat::Ts, &self.app.player)?;
        let streams = proxy(&self.app)?;
        super::stream::check_peer(&self.app, request.peer.as_deref(), &key)?;
        let client = Client::new(Some(peer.ip()), request.user_agent.as_deref());
        Ok(streams.join(key, None, client).await?)
    }

    fn count(&self, status: StatusCode, limit: Option<&'static str>) {
        super::count_answer(&self.app.metrics, ROUTE.to_owned(), status, limit);
    }

    /// Writes the response head and then each batch, until the stream ends; a viewer its
    /// channel drops is cut off at once, even in the middle of a write.
    async fn write_stream<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        mut viewer: ViewerStream,
        stream_head: Vec<u8>,
        http10: bool,
    ) -> io::Result<()> {
        // Goes out with the first batch, and is freed then.
        let mut head = Some(stream_head);
        while let Some(batch) = viewer.next_batch().await {
            let write = write_batch(stream, head.as_deref(), &batch, !http10);
            tokio::select! {
                biased;
                () = viewer.dropped() => return Ok(()),
                written = write => written?,
            }
            head = None;
        }
        if viewer.was_dropped() {
            return Ok(());
        }
        // Ended before any media: an empty stream.
        let end = match head {
            Some(head) if http10 => head,
            Some(head) => [&head[..], LAST_CHUNK].concat(),
            None if http10 => return Ok(()),
            None => LAST_CHUNK.to_vec(),
        };
        tokio::time::timeout(self.end_write_timeout, stream.write_all(&end))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "final chunk not taken"))?
    }
}

/// The end of a chunked body.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The head of a stream answer, with the `extra` header lines (each ending in CRLF):
/// the same content type and caching as the router's `/ace/getstream`
/// ([`super::stream::TS_CONTENT_TYPE`], [`super::stream::TS_CACHE_CONTROL`]); HTTP/1.0
/// gets a body delimited by the close, HTTP/1.1 a chunked one.
fn stream_head(http10: bool, extra: &str) -> Vec<u8> {
    let (version, framing) = if http10 {
        ("1.0", "connection: close")
    } else {
        ("1.1", "transfer-encoding: chunked")
    };
    format!(
        "HTTP/{version} 200 OK\r\ncontent-type: {}\r\ncache-control: {}\r\n{extra}{framing}\r\n\r\n",
        super::stream::TS_CONTENT_TYPE,
        super::stream::TS_CACHE_CONTROL,
    )
    .into_bytes()
}

/// The JSON error answer for `error` with the `extra` header lines, closing the
/// connection; a 503 says when to retry, as the router's answers do.
fn error_answer(error: &ApiError, http10: bool, extra: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": error.code, "message": error.message }).to_string();
    let retry = error
        .retry_after_secs()
        .map(|secs| format!("retry-after: {secs}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.{} {} {}\r\ncontent-type: application/json\r\n{retry}{extra}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        if http10 { 0 } else { 1 },
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or("Error"),
        body.len(),
    )
    .into_bytes()
}

/// Slices a write puts together without allocating (a batch is one or a few chunks).
const STACK_SLICES: usize = 16;

/// Writes `head` (if any) and `batch`, as one chunk when `chunked`. One write per batch
/// per viewer: nothing is allocated for the common batch of a few chunks.
async fn write_batch<S: AsyncWrite + Unpin>(
    stream: &mut S,
    head: Option<&[u8]>,
    batch: &[bytes::Bytes],
    chunked: bool,
) -> io::Result<()> {
    let total: usize = batch.iter().map(bytes::Bytes::len).sum();
    // At most 16 hex digits and CRLF.
    let mut size_buffer = [0u8; 18];
    let size_line = {
        use std::io::Write as _;
        let mut cursor = io::Cursor::new(&mut size_buffer[..]);
        write!(cursor, "{total:x}\r\n")?;
        let len = usize::try_from(cursor.position()).unwrap_or(0);
        &size_buffer[..len]
    };
    let framed = chunked && total > 0;
    let parts = head
        .into_iter()
        .chain(framed.then_some(size_line))
        .chain(batch.iter().map(|chunk| &chunk[..]))
        .chain(framed.then_some(&b"\r\n"[..]));
    let count = usize::from(head.is_some()) + batch.len() + if framed { 2 } else { 0 };
    if count <= STACK_SLICES {
        let mut slices = [IoSlice::new(&[]); STACK_SLICES];
        for (slot, part) in slices.iter_mut().zip(parts) {
            *slot = IoSlice::new(part);
        }
        write_all_vectored(stream, &mut slices[..count]).await
    } else {
        let mut slices: Vec<IoSlice<'_>> = parts.map(IoSlice::new).collect();
        write_all_vectored(stream, &mut slices).await
    }
}

async fn write_all_vectored<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let written = stream.write_vectored(slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_getstream_heads_are_taken() {
        let head = b"GET /ace/getstream?id=abc HTTP/1.1\r\nhost: x\r\nuser-agent: VLC\r\n\r\n";
        assert_eq!(
            sniff(head),
            Sniff::Stream(StreamRequest {
                target: "/ace/getstream?id=abc".into(),
                http10: false,
                origin: None,
                user_agent: Some("VLC".into()),
                peer: None,
            })
        );
        let relay = b"GET /ace/getstream?id=abc HTTP/1.1\r\nX-Acemux-Peer: s3cret\r\n\r\n";
        assert!(matches!(
            sniff(relay),
            Sniff::Stream(StreamRequest { peer: Some(peer), .. }) if peer == "s3cret"
        ));
        let web = b"GET /ace/getstream?id=abc HTTP/1.1\r\nOrigin: https://tv.example\r\n\r\n";
        assert!(matches!(
            sniff(web),
            Sniff::Stream(StreamRequest { origin: Some(origin), .. }) if origin == "https://tv.example"
        ));
        for cut in [1, 5, 18, 30, head.len() - 1] {
            assert_eq!(sniff(&head[..cut]), Sniff::Undecided, "cut at {cut}");
        }
        let old = b"GET /ace/getstream?id=abc HTTP/1.0\r\n\r\n";
        assert!(matches!(
            sniff(old),
            Sniff::Stream(StreamRequest { http10: true, .. })
        ));
    }

    #[test]
    fn everything_else_is_left_to_hyper() {
        for other in [
            &b"GET /health HTTP/1.1\r\n\r\n"[..],
            b"POST /ace/getstream?id=a HTTP/1.1\r\n\r\n",
            b"HEAD /ace/getstream?id=a HTTP/1.1\r\n\r\n",
            b"GET /ace/getstreamx?id=a HTTP/1.1\r\n\r\n",
            b"GET /ace/getstream/x HTTP/1.1\r\n\r\n",
            b"GET /ace/getstream?id=a HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello",
            b"GET /ace/getstream?id=a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET /ace/getstream?id=a HTTP/1.1\r\nbad header\r\n\r\n",
            b"G",
        ] {
            let expected = if other == b"G" {
                Sniff::Undecided
            } else {
                Sniff::Other
            };
            assert_eq!(sniff(other), expected, "{}", String::from_utf8_lossy(other));
        }
        let crowded: String = (0..MAX_HEADERS + 1)
            .map(|n| format!("x{n}: y\r\n"))
            .collect();
        let crowded = format!("GET /ace/getstream?id=a HTTP/1.1\r\n{crowded}\r\n");
        assert_eq!(sniff(crowded.as_bytes()), Sniff::Other);
    }

    #[test]
    fn errors_are_json_and_close_the_connection() {
        let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "capacity", "full");
        let cors = "access-control-allow-origin: *\r\n";
        let answer = String::from_utf8(error_answer(&error, false, cors)).expect("ASCII");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains("\r\nretry-after: 1\r\n"));
        assert!(head.contains("\r\naccess-control-allow-origin: *\r\n"));
        let bad = ApiError::bad_request("invalid_query", "no id");
        let answer = String::from_utf8(error_answer(&bad, true, "")).expect("ASCII");
        assert!(answer.starts_with("HTTP/1.0 400 Bad Request\r\n"));
        assert!(!answer.contains("retry-after"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(body["error"], "capacity");
    }

    #[test]
    fn stream_heads_frame_the_body_by_version() {
        let head = String::from_utf8(stream_head(false, "x-a: b\r\n")).expect("ASCII");
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ncontent-type: video/mp2t\r\ncache-control: no-store\r\nx-a: b\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let old = String::from_utf8(stream_head(true, "")).expect("ASCII");
        assert_eq!(
            old,
            "HTTP/1.0 200 OK\r\ncontent-type: video/mp2t\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_batch_is_one_chunk_after_the_head() {
        let mut out = Vec::new();
        let batch = [
            bytes::Bytes::from_static(b"abc"),
            bytes::Bytes::from_static(b"defg"),
        ];
        write_batch(&mut out, Some(b"HEAD\r\n\r\n"), &batch, true)
            .await
            .expect("written");
        assert_eq!(out, b"HEAD\r\n\r\n7\r\nabcdefg\r\n");
        let mut plain = Vec::new();
        write_batch(&mut plain, None, &batch, false)
            .await
            .expect("written");
        assert_eq!(plain, b"abcdefg");
    }

    #[tokio::test]
    async fn a_batch_of_many_chunks_is_still_one_chunk() {
        let batch: Vec<bytes::Bytes> = (0..40u8)
            .map(|n| bytes::Bytes::from(vec![b'a' + n % 26; 300]))
            .collect();
        let mut out = Vec::new();
        write_batch(&mut out, Some(b"H\r\n\r\n"), &batch, true)
            .await
            .expect("written");
        let mut expected = b"H\r\n\r\n2ee0\r\n".to_vec();
        batch
            .iter()
            .for_each(|chunk| expected.extend_from_slice(chunk));
        expected.extend_from_slice(b"\r\n");
        assert_eq!(out, expected);
        let mut none = Vec::new();
        write_batch(&mut none, None, &[], true)
            .await
            .expect("written");
        assert!(
            none.is_empty(),
            "an empty batch writes no chunk (it would end the body)"
        );
    }
}
