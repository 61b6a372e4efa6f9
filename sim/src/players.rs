//! Players: TS readers, viewers that stop reading, HLS pollers, and health probes.
//! Each records every request and what came back in the [`Observer`].

use std::time::Duration;

use acemux::net::{http_client, HttpClient};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::Request;

use crate::media_index::{MediaIndex, SliceTracker};
use crate::net::TurmoilNet;
use crate::observe::{sim_now, Observer};

/// acemux's address in a world of one instance (the default target of players).
pub const ACEMUX: &str = "acemux:6880";

/// What one player does.
#[derive(Clone, Debug)]
pub enum Plan {
    /// Reads `/ace/getstream?id=` for `watch`, then leaves; on an error answer tries
    /// again after a pause while `watch` lasts.
    TsReader {
        /// The content id.
        content_id: String,
        /// How long it watches.
        watch: Duration,
    },
    /// Reads for `read_for`, then stops reading (holding the connection) and expects
    /// acemux to drop it after the viewer stall timeout.
    TsStaller {
        /// The content id.
        content_id: String,
        /// How long it reads before stalling.
        read_for: Duration,
        /// By when, after it stops reading, acemux must have dropped it.
        drop_within: Duration,
    },
    /// Polls `/ace/manifest.m3u8?id=` every `poll`, fetching every new segment, for
    /// `watch`.
    HlsPoller {
        /// The content id.
        content_id: String,
        /// How long it watches.
        watch: Duration,
        /// Time between polls.
        poll: Duration,
        /// Most segments a served playlist may list.
        window_segments: usize,
    },
    /// An operator: at each of `moments` it lists the started streams and deletes one
    /// of a channel in `channels` (`DELETE /streams/{id}`), waiting for one to exist.
    Operator {
        /// When it stops a stream, from the simulation's start, in order.
        moments: Vec<Duration>,
        /// The channels it may stop.
        channels: Vec<String>,
        /// After this it gives up waiting for a stream to stop.
        until: Duration,
    },
    /// Asks `/health` every `every` for `watch`.
    HealthProbe {
        /// How long it probes.
        watch: Duration,
        /// Time between probes.
        every: Duration,
    },
}

/// One player: a name, a start time, a plan, and the bound on each answer.
#[derive(Clone, Debug)]
pub struct Player {
    /// Unique name (also its HLS token).
    pub name: String,
    /// Viewer id for TS records.
    pub id: u64,
    /// When it starts, from the simulation's start.
    pub start_at: Duration,
    /// What it does.
    pub plan: Plan,
    /// Every request must have its status within this.
    pub bound: Duration,
    /// The acemux instance it asks (`host:port`): [`ACEMUX`] unless a cluster world
    /// spreads players over its instances.
    pub target: String,
}

/// Runs `player` to its end.
pub async fn run_player(player: Player, observer: Observer) {
    if let Some(wait) = player.start_at.checked_sub(sim_now()) {
        tokio::time::sleep(wait).await;
    }
    let client = http_client(TurmoilNet);
    match player.plan.clone() {
        Plan::TsReader { content_id, watch } => {
            ts_reader(&player, &client, &observer, &content_id, watch).await;
        }
        Plan::TsStaller {
            content_id,
            read_for,
            drop_within,
        } => {
            ts_staller(
                &player,
                &client,
                &observer,
                &content_id,
                read_for,
                drop_within,
            )
            .await
        }
        Plan::HlsPoller {
            content_id,
            watch,
            poll,
            window_segments,
        } => {
            hls_poller(
                &player,
                &client,
                &observer,
                &content_id,
                watch,
                poll,
                window_segments,
            )
            .await;
        }
        Plan::Operator {
            moments,
            channels,
            until,
        } => {
            let operator = Operator {
                player: &player,
                client: &client,
                observer: &observer,
            };
            operator.run(&moments, &channels, until).await;
        }
        Plan::HealthProbe { watch, every } => {
            let until = sim_now() + watch;
            while sim_now() < until {
                let _ = get(&player, &client, &observer, "/health").await;
                tokio::time::sleep(every).await;
            }
        }
    }
}

/// Sends `GET path` to acemux and records it; the status and body when one came. The
/// player waits twice the bound, so a late answer is seen by the invariants first.
async fn get(
    player: &Player,
    client: &HttpClient<TurmoilNet>,
    observer: &Observer,
    path: &str,
) -> Option<(u16, Incoming)> {
    let request = Request::get(format!("http://{}{path}", player.target))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    send(player, client, observer, request).await
}

/// Sends `request` to acemux and records it, as [`get`] does.
async fn send(
    player: &Player,
    client: &HttpClient<TurmoilNet>,
    observer: &Observer,
    request: Request<Full<Bytes>>,
) -> Option<(u16, Incoming)> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str());
    let what = format!("{} {path}", request.method());
    let id = observer.request_sent(&player.name, &what, player.bound);
    match tokio::time::timeout(player.bound * 2, client.request(request)).await {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            observer.request_answered(id, status);
            Some((status, response.into_body()))
        }
        Ok(Err(error)) => {
            observer.request_failed(id, format!("transport error: {error}"));
            None
        }
        Err(_) => {
            observer.request_failed(id, "no answer".into());
            None
        }
    }
}

/// The operator's requests and the checks on their answers.
struct Operator<'a> {
    player: &'a Player,
    client: &'a HttpClient<TurmoilNet>,
    observer: &'a Observer,
}

impl Operator<'_> {
    async fn run(&self, moments: &[Duration], channels: &[String], until: Duration) {
        for moment in moments {
            if let Some(wait) = moment.checked_sub(sim_now()) {
                tokio::time::sleep(wait).await;
            }
            // Wait (bounded) for a stream of one of its channels to be running.
            while sim_now() < until {
                if let Some(stream_id) = self.started_stream(channels).await {
                    self.delete(&stream_id).await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// The first started stream of one of `channels`, from `GET /streams?status=started`.
    async fn started_stream(&self, channels: &[String]) -> Option<String> {
        let path = "/streams?status=started";
        let (status, body) = get(self.player, self.client, self.observer, path).await?;
        if status != 200 {
            check_error_body(self.player, self.observer, status, body).await;
            return None;
        }
        let json = self.json_body(status, body).await?;
        let Some(streams) = json.as_array() else {
            self.violation(format!("GET {path} answered {json} instead of a list"));
            return None;
        };
        streams
            .iter()
            .filter(|stream| {
                stream["key"]
                    .as_str()
                    .is_some_and(|key| channels.iter().any(|channel| channel == key))
            })
            .find_map(|stream| stream["id"].as_str().map(str::to_owned))
    }

    /// Deletes `stream_id`: 200 `{updated, stream}` with the stream ended (by this
    /// DELETE when `updated`, else by an idle end that raced it), or 404
    /// `unknown_stream`. Records the streams it ended.
    async fn delete(&self, stream_id: &str) {
        // The simulated acemux serves without an API key (the world sets none).
        let request = Request::delete(format!(
            "http://{}/streams/{}",
            self.player.target,
            percent_encode(stream_id)
        ))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
        let Some((status, body)) = send(self.player, self.client, self.observer, request).await
        else {
            return;
        };
        let Some(json) = self.json_body(status, body).await else {
            return;
        };
        match status {
            200 => {
                let stream = &json["stream"];
                let Some(updated) = json["updated"].as_bool() else {
                    self.violation(format!("DELETE {stream_id}: no `updated` in {json}"));
                    return;
                };
                if stream["id"].as_str() != Some(stream_id) || stream["status"] != "ended" {
                    self.violation(format!(
                        "DELETE {stream_id}: the answer's stream is not it, ended: {json}"
                    ));
                    return;
                }
                let reason = stream["end_reason"].as_str();
                if updated && reason != Some(DELETE_REASON) {
                    self.violation(format!(
                        "DELETE {stream_id} ended it with reason {reason:?}, not {DELETE_REASON:?}"
                    ));
                    return;
                }
                tracing::debug!(stream_id, updated, "operator deleted");
                let mut record = self.observer.lock();
                record
                    .trace
                    .add_text(&format!("deleted {stream_id} {updated}"));
                if updated {
                    record.deleted_streams.push(stream_id.to_owned());
                }
            }
            404 if json["error"] == "unknown_stream" => {}
            _ => self.violation(format!("DELETE {stream_id} answered {status} {json}")),
        }
    }

    async fn json_body(&self, status: u16, body: Incoming) -> Option<serde_json::Value> {
        let text = read_all(
            body,
            self.player,
            self.observer,
            &format!("answer {status}"),
        )
        .await?;
        match serde_json::from_slice(&text) {
            Ok(json) => Some(json),
            Err(_) => {
                self.violation(format!(
                    "answer {status} is not JSON: {:?}",
                    String::from_utf8_lossy(&text)
                ));
                None
            }
        }
    }

    fn violation(&self, text: String) {
        self.observer
            .violation(format!("{}: {text}", self.player.name));
    }
}

/// The end reason acemux records for `DELETE /streams/{id}`.
pub const DELETE_REASON: &str = "deleted";

/// `text` with every byte but unreserved URI characters percent-encoded, for a path
/// segment (stream ids hold `|`).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Reads a whole (small) body within `bound`.
/// Reads a whole body within `player`'s bound; when it cannot (cut, or too slow), the
/// observer records it for the checker, which excuses it only where a fault explains
/// it.
async fn read_all(
    body: Incoming,
    player: &Player,
    observer: &Observer,
    what: &str,
) -> Option<Bytes> {
    let started = sim_now();
    match tokio::time::timeout(player.bound, body.collect()).await {
        Ok(Ok(collected)) => Some(collected.to_bytes()),
        Ok(Err(error)) => {
            observer.body_not_read(&player.name, format!("{what}: {error}"), started);
            None
        }
        Err(_) => {
            observer.body_not_read(
                &player.name,
                format!("{what}: not read within {:?}", player.bound),
                started,
            );
            None
        }
    }
}

/// An error answer must be JSON `{error, message}`.
async fn check_error_body(player: &Player, observer: &Observer, status: u16, body: Incoming) {
    let Some(text) = read_all(body, player, observer, &format!("answer {status}")).await else {
        return;
    };
    let json: Option<serde_json::Value> = serde_json::from_slice(&text).ok();
    let clear = json
        .as_ref()
        .is_some_and(|json| json.get("error").is_some() && json.get("message").is_some());
    if !clear {
        observer.violation(format!(
            "{}: answer {status} without a JSON error: {:?}",
            player.name,
            String::from_utf8_lossy(&text)
        ));
    }
}

async fn ts_reader(
    player: &Player,
    client: &HttpClient<TurmoilNet>,
    observer: &Observer,
    content_id: &str,
    watch: Duration,
) {
    let until = sim_now() + watch;
    let mut attempt = 0u64;
    while sim_now() < until {
        let path = format!("/ace/getstream?id={content_id}");
        match get(player, client, observer, &path).await {
            Some((200, mut body)) => {
                let id = player.id * 1000 + attempt;
                observer.ts_viewer_started(id, &player.name, content_id);
                if read_ts_until(observer, id, &mut body, until).await {
                    observer.ts_ended(id);
                }
                observer.ts_stopped(id);
            }
            Some((status, body)) => check_error_body(player, observer, status, body).await,
            None => {}
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn ts_staller(
    player: &Player,
    client: &HttpClient<TurmoilNet>,
    observer: &Observer,
    content_id: &str,
    read_for: Duration,
    drop_within: Duration,
) {
    let path = format!("/ace/getstream?id={content_id}");
    let Some((status, mut body)) = get(player, client, observer, &path).await else {
        return;
    };
    if status != 200 {
        check_error_body(player, observer, status, body).await;
        return;
    }
    let id = player.id * 1000;
    observer.ts_viewer_started(id, &player.name, content_id);
    if read_ts_until(observer, id, &mut body, sim_now() + read_for).await {
        observer.violation(format!("{}: dropped while still reading", player.name));
        return;
    }
    // Stop reading: the connection's buffers fill, acemux's writes stop progressing.
    // acemux must drop the viewer (the scenario checks its drop counter by the
    // deadline: a FIN queued behind a full receive buffer reaches a turmoil socket
    // only when another segment arrives, so the body's end is not always seen here).
    tracing::debug!(player = %player.name, "stops reading");
    observer.ts_stopped(id);
    observer
        .lock()
        .stopped_reading
        .push((player.name.clone(), sim_now() + drop_within));
    tokio::time::sleep(drop_within).await;
    if read_ts_until(observer, id, &mut body, sim_now() + Duration::from_secs(2)).await {
        observer.ts_ended(id);
    }
}

/// Records viewer `id`'s bytes from `body` until the simulated time `until`; true when
/// the body ended (or failed) first.
async fn read_ts_until(observer: &Observer, id: u64, body: &mut Incoming, until: Duration) -> bool {
    while sim_now() < until {
        let left = until.saturating_sub(sim_now());
        match tokio::time::timeout(left, body.frame()).await {
            Err(_) => return false,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    observer.ts_bytes(id, &data);
                }
            }
            Ok(None) | Ok(Some(Err(_))) => return true,
        }
    }
    false
}

#[allow(clippy::too_many_arguments)]
async fn hls_poller(
    player: &Player,
    client: &HttpClient<TurmoilNet>,
    observer: &Observer,
    content_id: &str,
    watch: Duration,
    poll: Duration,
    window_segments: usize,
) {
    let until = sim_now() + watch;
    let mut last_media_sequence = 0u64;
    let mut last_discontinuity_sequence = 0u64;
    let mut fetched_up_to: Option<u64> = None;
    // The last segment fetched and where it left off in the engine stream: the next
    // one must continue it unless a discontinuity separates them.
    let mut previous: Option<(u64, SliceTracker)> = None;
    while sim_now() < until {
        let path = format!("/ace/manifest.m3u8?id={content_id}&t={}", player.name);
        match get(player, client, observer, &path).await {
            Some((200, body)) => {
                let Some(text) = read_all(body, player, observer, "playlist").await else {
                    continue;
                };
                let text = String::from_utf8_lossy(&text).into_owned();
                observer.lock().trace.add_text(&text);
                let playlist = parse_playlist(&text);
                let name = &player.name;
                // A channel started again (acemux restarted, or its engine stopped
                // while this player stalled) numbers on above the old one: the
                // sequences never go back for one URL.
                if let Some(&(newest, _, _)) = playlist.segments.last() {
                    observer.hls_newest(&player.name, content_id, newest);
                }
                if playlist.media_sequence < last_media_sequence {
                    observer.violation(format!(
                        "{name}: media sequence went back from {last_media_sequence} to {}",
                        playlist.media_sequence
                    ));
                }
                if playlist.discontinuity_sequence < last_discontinuity_sequence {
                    observer.violation(format!(
                        "{name}: discontinuity sequence went back from {last_discontinuity_sequence} to {}",
                        playlist.discontinuity_sequence
                    ));
                }
                if playlist.segments.len() > window_segments {
                    observer.violation(format!(
                        "{name}: playlist lists {} segments, more than the window of {window_segments}",
                        playlist.segments.len()
                    ));
                }
                last_media_sequence = playlist.media_sequence;
                last_discontinuity_sequence = playlist.discontinuity_sequence;
                {
                    let mut record = observer.lock();
                    record.hls_playlists += 1;
                    let seen = playlist.discontinuity_sequence + playlist.discontinuities;
                    let most = record.hls_discontinuities.entry(name.clone()).or_default();
                    *most = (*most).max(seen);
                }
                for (seq, uri, discontinuity) in playlist.segments {
                    if fetched_up_to.is_some_and(|done| seq <= done) {
                        continue;
                    }
                    fetched_up_to = Some(seq);
                    let Some(bytes) = fetch_segment(player, client, observer, seq, &uri).await
                    else {
                        previous = None;
                        continue;
                    };
                    if let Some((_, mut tracker)) = previous
                        .take()
                        .filter(|(last, _)| *last + 1 == seq && !discontinuity)
                    {
                        // Tables a segmenter repeats at a segment's start aside.
                        if !tracker.continues_into(MediaIndex::simulated(), &bytes) {
                            observer.violation(format!(
                                "{name}: segment {seq} does not continue segment {} and no discontinuity separates them",
                                seq - 1
                            ));
                        }
                    }
                    let mut tracker = SliceTracker::default();
                    tracker.feed(MediaIndex::simulated(), &bytes);
                    previous = Some((seq, tracker));
                }
            }
            Some((status, body)) => check_error_body(player, observer, status, body).await,
            None => {}
        }
        tokio::time::sleep(poll).await;
    }
    observer.hls_stopped(&player.name);
}

/// Fetches and checks one segment; its bytes when it was served.
async fn fetch_segment(
    player: &Player,
    client: &HttpClient<TurmoilNet>,
    observer: &Observer,
    seq: u64,
    uri: &str,
) -> Option<Bytes> {
    let path = uri
        .strip_prefix(&format!("http://{}", player.target))
        .unwrap_or(uri);
    let (status, body) = get(player, client, observer, path).await?;
    if status != 200 {
        // A segment that slid out of the window between playlist and fetch is a 404.
        check_error_body(player, observer, status, body).await;
        return None;
    }
    let bytes = read_all(body, player, observer, &format!("segment {seq}")).await?;
    let mut tracker = SliceTracker::default();
    tracker.feed(MediaIndex::simulated(), &bytes);
    let check = &tracker.check;
    let problem = if let Some(violation) = &check.violation {
        Some(violation.clone())
    } else if check.resyncs > 0 {
        Some(format!("{} jumps inside one segment", check.resyncs))
    } else if check.packets == 0 || tracker.partial_bytes() != 0 {
        Some(format!("{} bytes, not whole packets of media", bytes.len()))
    } else {
        None
    };
    let mut record = observer.lock();
    record.trace.add_bytes(&bytes);
    record.hls_segments += 1;
    drop(record);
    if let Some(problem) = problem {
        observer.violation(format!(
            "{}: segment {seq} is not a segment the engine produced: {problem}",
            player.name
        ));
    }
    Some(bytes)
}

/// The parts of a served playlist the invariants need.
#[derive(Debug, Default)]
struct ServedPlaylist {
    media_sequence: u64,
    discontinuity_sequence: u64,
    /// `#EXT-X-DISCONTINUITY` tags listed.
    discontinuities: u64,
    /// Sequence number, URI, and whether a discontinuity precedes it.
    segments: Vec<(u64, String, bool)>,
}

fn parse_playlist(text: &str) -> ServedPlaylist {
    let mut playlist = ServedPlaylist::default();
    let number =
        |line: &str, tag: &str| -> Option<u64> { line.strip_prefix(tag)?.trim().parse().ok() };
    let mut discontinuity = false;
    for line in text.lines() {
        if line.trim() == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
            playlist.discontinuities += 1;
        } else if let Some(value) = number(line, "#EXT-X-MEDIA-SEQUENCE:") {
            playlist.media_sequence = value;
        } else if let Some(value) = number(line, "#EXT-X-DISCONTINUITY-SEQUENCE:") {
            playlist.discontinuity_sequence = value;
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let seq = playlist.media_sequence + playlist.segments.len() as u64;
            playlist.segments.push((
                seq,
                line.trim().to_owned(),
                std::mem::take(&mut discontinuity),
            ));
        }
    }
    playlist
}
