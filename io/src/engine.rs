//! The engine side of a channel: the AceStream HTTP API as a client.
//!
//! Only URLs built from configured engine addresses are ever fetched: the playback and
//! command URLs an engine returns are re-pointed at that engine's own address, so
//! neither a client nor an engine can make acemux fetch somewhere else.

use std::time::Duration;

use acemux_core::channel::{EngineSession, EngineStats, SessionAnswer, SessionError};
use acemux_core::hls::{UpstreamPlaylist, UpstreamSegment};
use acemux_core::lifecycle::{EngineAddr, KeyType, SessionInfo};
use acemux_core::playlist::{MediaPlaylist, Playlist};
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::net::{HttpClient, Net};

/// How a channel's media is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StreamFormat {
    /// One MPEG-TS body.
    Ts,
    /// A live HLS playlist and its segments.
    Hls,
}

/// Player parameters handed on to the engine's own session request (the engine acts
/// on them; acemux only checks their shape). Part of a channel's identity: different
/// values are different channels.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EngineParams {
    /// `file_indexes=`: which files of a multi-file torrent (comma-separated indexes).
    pub file_indexes: Option<String>,
    /// `live_delay=` or `seekback=` (whichever the player used), in seconds.
    pub delay: Option<(&'static str, u32)>,
}

impl EngineParams {
    /// The parameters that are set, as names and plain values, in a fixed order.
    fn pairs(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        let indexes = self
            .file_indexes
            .as_ref()
            .map(|indexes| ("file_indexes", indexes.clone()));
        let delay = self
            .delay
            .map(|(name, seconds)| (name, seconds.to_string()));
        indexes.into_iter().chain(delay)
    }

    /// The parameters as query pairs, each starting with `&`.
    pub fn query(&self) -> String {
        self.pairs()
            .map(|(name, value)| format!("&{name}={}", percent_encode(&value)))
            .collect()
    }

    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.file_indexes.is_none() && self.delay.is_none()
    }
}

impl std::fmt::Display for EngineParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .pairs()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// Largest session answer read from an engine.
const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Largest playlist read from an engine.
pub(crate) const MAX_PLAYLIST_BYTES: usize = 1024 * 1024;

pub use acemux_core::channel::FetchError;

/// An HTTP client for AceStream engines.
#[derive(Clone)]
pub struct EngineClient<N: Net> {
    client: HttpClient<N>,
    request_timeout: Duration,
}

impl<N: Net> EngineClient<N> {
    /// A client whose session and stop requests are bounded by `request_timeout`.
    pub fn new(client: HttpClient<N>, request_timeout: Duration) -> Self {
        EngineClient {
            client,
            request_timeout,
        }
    }

    /// Asks `engine` for a playback session of `key` with player id `pid`: MPEG-TS
    /// (`/ace/getstream`) or HLS (`/ace/manifest.m3u8`, whose playback URL is the playlist).
    /// Bounded by the request timeout.
    pub async fn request_session(
        &self,
        engine: &EngineAddr,
        format: StreamFormat,
        key_type: KeyType,
        key: &str,
        params: &EngineParams,
        pid: &str,
    ) -> Result<EngineSession, SessionError> {
        tokio::time::timeout(
            self.request_timeout,
            self.session_request(engine, format, key_type, key, params, pid),
        )
        .await
        .map_err(|_| SessionError::Timeout)?
    }

    /// [`request_session`](Self::request_session) without its time bound, owning all it
    /// needs: a caller that stops waiting can hand the request on instead of dropping
    /// it, since an engine that answers late has still opened the session.
    pub fn session_request(
        &self,
        engine: &EngineAddr,
        format: StreamFormat,
        key_type: KeyType,
        key: &str,
        params: &EngineParams,
        pid: &str,
    ) -> impl std::future::Future<Output = Result<EngineSession, SessionError>> + Send + 'static
    {
        let route = match format {
            StreamFormat::Ts => "getstream",
            StreamFormat::Hls => "manifest.m3u8",
        };
        let param = match key_type {
            KeyType::ContentId => "id",
            KeyType::Infohash => "infohash",
            KeyType::Url => "url",
            KeyType::Magnet => "magnet",
        };
        let url = format!(
            "http://{engine}/ace/{route}?{param}={}{}&format=json&pid={}",
            percent_encode(key),
            params.query(),
            percent_encode(pid)
        );
        let client = self.clone();
        let engine = engine.clone();
        async move {
            let body = client.get_body(&url).await.map_err(SessionError::Failed)?;
            parse_session(&engine, &body)
        }
    }

    async fn get_body(&self, url: &str) -> Result<Bytes, String> {
        let response = self.get(url).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ENVELOPE_BYTES)
            .collect()
            .await
            .map_err(|error| format!("reading the engine's answer: {error}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "engine answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        Ok(body)
    }

    async fn get(&self, url: &str) -> Result<http::Response<Incoming>, String> {
        self.get_with(url, None).await
    }

    /// A GET with one more `header` (a relayed playback's peer mark).
    async fn get_with(
        &self,
        url: &str,
        header: Option<(&'static str, String)>,
    ) -> Result<http::Response<Incoming>, String> {
        let uri: Uri = url.parse().map_err(|_| format!("invalid URL {url:?}"))?;
        let mut request = Request::get(uri).header(
            http::header::USER_AGENT,
            concat!("acemux/", env!("CARGO_PKG_VERSION")),
        );
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|error| error.to_string())?;
        self.client
            .request(request)
            .await
            .map_err(|error| format!("engine unreachable: {error}"))
    }

    /// Probes `engine`'s version API (`/webui/api/service?method=get_version`), as
    /// engines and orchestrators check an engine: up when it answers 2xx with a
    /// `result` and no `error`. Bounded by the request timeout.
    pub async fn probe_version(&self, engine: &EngineAddr) -> Result<(), String> {
        let url = format!("http://{engine}/webui/api/service?method=get_version&format=json");
        let body = self.get_body_in_time(&url).await?;
        let answer: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|error| format!("the version answer is not JSON: {error}"))?;
        match (&answer["result"], &answer["error"]) {
            (serde_json::Value::Null, _) => {
                Err(format!("the version answer has no result: {answer}"))
            }
            (_, serde_json::Value::Null) => Ok(()),
            (_, error) => Err(format!("the engine reports an error: {error}")),
        }
    }

    /// GETs `url` whole (at most `max_bytes`), bounded by the request timeout; any
    /// status but 2xx, or an empty body, is an error, and each failure says which.
    pub async fn fetch_bounded(&self, url: &str, max_bytes: usize) -> Result<Bytes, FetchError> {
        self.fetch_bounded_with(url, max_bytes, None).await
    }

    /// [`fetch_bounded`](Self::fetch_bounded) with one more `header` (a relayed HLS
    /// request's peer mark).
    pub async fn fetch_bounded_with(
        &self,
        url: &str,
        max_bytes: usize,
        header: Option<(&'static str, String)>,
    ) -> Result<Bytes, FetchError> {
        let exchange = async {
            let response = self
                .get_with(url, header)
                .await
                .map_err(FetchError::Unreachable)?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: status.as_u16(),
                });
            }
            http_body_util::Limited::new(response.into_body(), max_bytes)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge {
                            url: url.to_owned(),
                            limit: max_bytes,
                        }
                    } else {
                        FetchError::Unreachable(format!("reading {url}: {error}"))
                    }
                })
        };
        let body = tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout {
                url: url.to_owned(),
            })??;
        if body.is_empty() {
            return Err(FetchError::Empty {
                url: url.to_owned(),
            });
        }
        Ok(body)
    }

    /// Fetches and parses the media playlist at `url`, following a master playlist to
    /// its variant once; every URI is resolved against its playlist and kept on the
    /// engine's own address.
    pub async fn fetch_playlist(&self, url: &str) -> Result<UpstreamPlaylist, FetchError> {
        let unsupported = || FetchError::Invalid("unsupported playlist kind".into());
        match self.fetch_parsed(url).await? {
            Playlist::Media(media) => upstream_playlist(url, &media),
            Playlist::Master(master) => {
                let variant = master.pick_variant().ok_or_else(|| {
                    FetchError::Invalid("master playlist without variants".into())
                })?;
                let variant_url = same_origin(url, &variant.uri).map_err(FetchError::Invalid)?;
                match self.fetch_parsed(&variant_url).await? {
                    Playlist::Media(media) => upstream_playlist(&variant_url, &media),
                    Playlist::Master(_) => Err(FetchError::Invalid(
                        "master playlist points at another master playlist".into(),
                    )),
                    _ => Err(unsupported()),
                }
            }
            _ => Err(unsupported()),
        }
    }

    /// GETs and parses a playlist, its URIs resolved against `url`.
    async fn fetch_parsed(&self, url: &str) -> Result<Playlist, FetchError> {
        let body = self.fetch_bounded(url, MAX_PLAYLIST_BYTES).await?;
        let mut playlist = Playlist::parse(&body)
            .map_err(|error| FetchError::Invalid(format!("invalid playlist: {error}")))?;
        playlist
            .resolve_uris(url)
            .map_err(|error| FetchError::Invalid(format!("invalid playlist URI: {error}")))?;
        Ok(playlist)
    }

    /// Opens a playback URL; the body streams the media. Bounded by the request timeout
    /// up to the response head.
    pub async fn open_playback(
        &self,
        url: &str,
        header: Option<(&'static str, String)>,
    ) -> Result<Incoming, String> {
        let response = tokio::time::timeout(self.request_timeout, self.get_with(url, header))
            .await
            .map_err(|_| format!("no answer within {:?}", self.request_timeout))??;
        match response.status() {
            status if status.is_success() => Ok(response.into_body()),
            StatusCode::NOT_FOUND => Err("playback session is gone (404)".into()),
            status => Err(format!("playback answered {status}")),
        }
    }

    /// Reads a session's stats from its stat URL (already pointed at its engine),
    /// bounded by the request timeout.
    pub async fn stats(&self, stat_url: &str) -> Result<EngineStats, String> {
        let body = self.get_body_in_time(stat_url).await?;
        EngineStats::decode(&body)
    }

    /// Stops a session through its command URL.
    pub async fn stop(&self, command_url: &str) -> Result<(), String> {
        let url = if command_url.contains("method=") {
            command_url.to_owned()
        } else if command_url.contains('?') {
            format!("{command_url}&method=stop")
        } else {
            format!("{command_url}?method=stop")
        };
        self.get_body_in_time(&url).await.map(drop)
    }

    /// [`get_body`](Self::get_body) bounded by the request timeout.
    async fn get_body_in_time(&self, url: &str) -> Result<Bytes, String> {
        tokio::time::timeout(self.request_timeout, self.get_body(url))
            .await
            .map_err(|_| format!("no answer within {:?}", self.request_timeout))?
    }
}

/// What the HLS session needs of a media playlist fetched from `url`.
fn upstream_playlist(url: &str, media: &MediaPlaylist) -> Result<UpstreamPlaylist, FetchError> {
    let longest_us = media
        .segments
        .iter()
        .map(|segment| segment.duration_us)
        .max()
        .unwrap_or(0);
    let segments = media
        .segments
        .iter()
        .map(|segment| {
            Ok(UpstreamSegment {
                duration_us: segment.duration_us,
                uri: same_origin(url, &segment.uri).map_err(FetchError::Invalid)?,
                discontinuity: segment.discontinuity,
            })
        })
        .collect::<Result<Vec<_>, FetchError>>()?;
    Ok(UpstreamPlaylist {
        target_duration_s: media
            .target_duration_s
            .unwrap_or_else(|| longest_us.div_ceil(1_000_000).max(1)),
        media_sequence: media.media_sequence,
        segments,
        ended: media.ended,
    })
}

/// Decodes a session envelope from `engine`.
pub fn parse_session(engine: &EngineAddr, body: &[u8]) -> Result<EngineSession, SessionError> {
    let answer = SessionAnswer::decode(body)?;
    let session = SessionInfo {
        playback_session_id: answer.playback_session_id,
        stat_url: on_engine(engine, &answer.stat_url)?,
        command_url: on_engine(engine, &answer.command_url)?,
        is_live: answer.is_live,
    };
    Ok(EngineSession {
        engine: engine.clone(),
        playback_url: on_engine(engine, &answer.playback_url)?,
        session,
    })
}

/// `url`'s path and query on `engine`'s address (engines often report an address
/// only they can reach; and nothing else is ever fetched).
pub fn on_engine(engine: &EngineAddr, url: &str) -> Result<String, SessionError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| SessionError::Failed(format!("engine returned an invalid URL {url:?}")))?;
    let path = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    if !path.starts_with('/') {
        return Err(SessionError::Failed(format!(
            "engine returned a relative URL {url:?}"
        )));
    }
    Ok(format!("http://{engine}{path}"))
}

/// `uri`'s path and query on `base`'s scheme and address: URIs found in an engine's
/// playlist are only ever fetched from that engine.
pub fn same_origin(base: &str, uri: &str) -> Result<String, String> {
    let base: Uri = base.parse().map_err(|_| format!("invalid URL {base:?}"))?;
    let authority = base
        .authority()
        .ok_or_else(|| format!("URL without an address: {base}"))?;
    let reference: Uri = uri.parse().map_err(|_| format!("invalid URI {uri:?}"))?;
    if reference.scheme().is_none() {
        return Err(format!("URI {uri:?} is not absolute (resolve it first)"));
    }
    let path = reference
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    if !path.starts_with('/') {
        return Err(format!("unusable URI {uri:?}"));
    }
    Ok(format!("http://{authority}{path}"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> EngineAddr {
        EngineAddr {
            host: "gluetun".into(),
            port: 19000,
        }
    }

    #[test]
    fn session_urls_are_pointed_at_the_configured_engine() {
        let body = br#"{"response": {"playback_url": "http://127.0.0.1:6878/ace/r/abc/1", "stat_url": "http://evil.example/ace/stat/abc", "command_url": "http://127.0.0.1:6878/ace/cmd/abc?x=1", "playback_session_id": "abc", "is_live": 1, "infohash": "ff"}, "error": null}"#;
        let session = parse_session(&engine(), body).expect("a session");
        assert_eq!(session.playback_url, "http://gluetun:19000/ace/r/abc/1");
        assert_eq!(
            session.session.stat_url,
            "http://gluetun:19000/ace/stat/abc"
        );
        assert_eq!(
            session.session.command_url,
            "http://gluetun:19000/ace/cmd/abc?x=1"
        );
        assert!(session.session.is_live);
    }

    #[test]
    fn engine_errors_are_refusals() {
        let refused = parse_session(
            &engine(),
            br#"{"response": null, "error": "unknown content"}"#,
        );
        assert_eq!(
            refused,
            Err(SessionError::Refused("unknown content".into()))
        );
        let empty = parse_session(&engine(), br#"{"response": null}"#);
        assert!(matches!(empty, Err(SessionError::Refused(_))));
        let garbage = parse_session(&engine(), b"<html>");
        assert!(matches!(garbage, Err(SessionError::Failed(_))));
        let bad_url = parse_session(
            &engine(),
            br#"{"response": {"playback_url": "::", "stat_url": "/s", "command_url": "/c", "playback_session_id": "a"}}"#,
        );
        assert!(matches!(bad_url, Err(SessionError::Failed(_))));
    }

    #[test]
    fn playlist_uris_stay_on_the_engine() {
        assert_eq!(
            same_origin(
                "http://gluetun:19000/ace/m/a.m3u8",
                "http://evil.example/x/1.ts?k=v"
            ),
            Ok("http://gluetun:19000/x/1.ts?k=v".to_owned())
        );
        assert!(same_origin("http://gluetun:19000/a.m3u8", "1.ts").is_err());
    }

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(percent_encode("0123abcXYZ-._~"), "0123abcXYZ-._~");
    }
}
