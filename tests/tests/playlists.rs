//! Playlists for media servers over real processes: `acemux serve --channels` (M3U and
//! TOML) with an engine emulator process, `GET /playlist.m3u` read as a media server
//! reads it and its entries opened by ffprobe; `POST /playlist/rewrite` and the
//! `acemux m3u rewrite` binary, which rewrite source lines and keep every other byte.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use acemux_core::channel_list::{parse_m3u, Channel, Limits};
use acemux_tests::raw::{connect, exchange, RawAnswer};
use acemux_tests::{acemux_bin, eventually, free_port, probe_codecs, Acemux};
use tokio::io::AsyncWriteExt;

const PROMPT: Duration = Duration::from_secs(10);
const SPORT: &str = "0123456789abcdef0123456789abcdef01234567";
const NEWS: &str = "89abcdef0123456789abcdef0123456789abcdef";
const MOVIE: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// An M3U channel list as AceStream lists are written: `acestream://` links and an
/// engine URL (with the engine's own `pid`), CRLF line ends, comments.
fn m3u_list(engine_port: u16) -> String {
    format!(
        "#EXTM3U url-tvg=\"http://epg.example/guide.xml\"\r\n\
         # Sport first\r\n\
         #EXTINF:-1 tvg-id=\"sport.1\" tvg-logo=\"http://logo.example/sport.png\" group-title=\"Sport\",Sport 1\r\n\
         acestream://{SPORT}\r\n\
         #EXTINF:-1 tvg-logo=\"http://logo.example/news.png\" group-title=\"News\",News, 24h\r\n\
         http://127.0.0.1:{engine_port}/ace/getstream?id={NEWS}&pid=99\r\n\
         #EXTGRP:Movies\r\n\
         #EXTINF:-1,Movie\r\n\
         ace://{MOVIE}\r\n"
    )
}

const TOML_LIST: &str = "# Channels for the living room\n\
[[channel]]\n\
name = \"Sport 1\"\n\
id = \"0123456789abcdef0123456789abcdef01234567\"\n\
group = \"Sport\"\n\
logo = \"http://logo.example/sport.png\"\n\
tvg_id = \"sport.1\"\n\
\n\
[[channel]]\n\
name = \"News, 24h\"\n\
id = \"89abcdef0123456789abcdef0123456789abcdef\"\n\
group = \"News\"\n\
logo = \"http://logo.example/news.png\"\n\
\n\
[[channel]]\n\
name = \"Movie\"\n\
infohash = \"fedcba9876543210fedcba9876543210fedcba98\"\n\
group = \"Movies\"\n";

/// An engine emulator process and `acemux serve` using it with `args`.
struct Setup {
    _engine: Acemux,
    acemux: Acemux,
    _dir: tempfile::TempDir,
}

async fn setup(dir: tempfile::TempDir, engine_port: u16, args: &[&str]) -> Setup {
    let engine = Acemux::emulate_engine(engine_port, &[], &dir.path().join("engine.log")).await;
    let engine_arg = format!("127.0.0.1:{engine_port}");
    let db = dir.path().join("events.db");
    let mut all = vec![
        "--engine",
        &engine_arg,
        "--db",
        db.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    let acemux = Acemux::serve(free_port(), &all, &dir.path().join("acemux.log")).await;
    Setup {
        _engine: engine,
        acemux,
        _dir: dir,
    }
}

/// `GET target` on a raw connection with the given head lines (no `Host` unless given).
async fn get(acemux: &Acemux, target: &str, head: &str) -> RawAnswer {
    let request = format!("GET {target} HTTP/1.1\r\n{head}connection: close\r\n\r\n");
    exchange(acemux.addr, request.as_bytes(), PROMPT).await
}

/// `POST target` with `body` and a `Host`.
async fn post(acemux: &Acemux, target: &str, body: &[u8]) -> RawAnswer {
    let mut request = format!(
        "POST {target} HTTP/1.1\r\nhost: acemux.lan:6880\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    exchange(acemux.addr, &request, PROMPT).await
}

fn header<'a>(answer: &'a RawAnswer, name: &str) -> Option<&'a str> {
    answer.head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The channels a playlist answer lists, read as acemux reads channel lists, and its
/// URL lines.
fn listed(answer: &RawAnswer) -> (Vec<Channel>, Vec<String>) {
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(header(answer, "content-type"), Some("audio/x-mpegurl"));
    let channels = parse_m3u(&answer.body, &Limits::default()).expect("a channel list");
    let text = String::from_utf8(answer.body.clone()).expect("utf-8");
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    let urls = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    (channels, urls)
}

/// The names, groups, logos and ids of the channels both lists define.
fn expected_channels(channels: &[Channel]) {
    let summary: Vec<_> = channels
        .iter()
        .map(|channel| {
            (
                channel.name.as_str(),
                channel.group.as_deref(),
                channel.logo.as_deref(),
                channel.source.key.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "Sport 1",
                Some("Sport"),
                Some("http://logo.example/sport.png"),
                SPORT
            ),
            (
                "News, 24h",
                Some("News"),
                Some("http://logo.example/news.png"),
                NEWS
            ),
            ("Movie", Some("Movies"), None, MOVIE),
        ]
    );
    assert_eq!(channels[0].tvg_id.as_deref(), Some("sport.1"));
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the channel list");
    path.to_str().expect("utf-8 path").to_owned()
}

#[tokio::test]
async fn an_m3u_channel_list_is_served_with_host_based_urls_whose_ts_and_hls_entries_play() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine_port = free_port();
    let list = write(dir.path(), "channels.m3u", &m3u_list(engine_port));
    let setup = setup(dir, engine_port, &["--channels", &list]).await;
    let acemux = &setup.acemux;
    let base = format!("http://{}", acemux.addr);

    let ts = get(
        acemux,
        "/playlist.m3u",
        &format!("host: {}\r\n", acemux.addr),
    )
    .await;
    let (channels, urls) = listed(&ts);
    // Web players on other origins may read it, as they may the player routes.
    assert_eq!(header(&ts, "access-control-allow-origin"), Some("*"));
    expected_channels(&channels);
    assert_eq!(
        urls,
        vec![
            format!("{base}/ace/getstream?id={SPORT}"),
            format!("{base}/ace/getstream?id={NEWS}"),
            format!("{base}/ace/getstream?id={MOVIE}"),
        ],
        "the engine's own pid is not handed on"
    );
    let hls = get(
        acemux,
        "/playlist.m3u?format=hls",
        &format!("host: {}\r\n", acemux.addr),
    )
    .await;
    let (hls_channels, hls_urls) = listed(&hls);
    assert_eq!(hls_channels, channels);
    assert_eq!(hls_urls[0], format!("{base}/ace/manifest.m3u8?id={SPORT}"));

    // A media server on another address names it in its Host.
    let elsewhere = get(acemux, "/playlist.m3u", "host: tv.lan:8080\r\n").await;
    assert_eq!(
        listed(&elsewhere).1[1],
        format!("http://tv.lan:8080/ace/getstream?id={NEWS}")
    );

    // Entries play: a TS one and an HLS one.
    let codecs = probe_codecs(&urls[0]).await;
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "TS entry codecs: {codecs}"
    );
    let codecs = probe_codecs(&hls_urls[1]).await;
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "HLS entry codecs: {codecs}"
    );

    // Bad requests get their reason.
    let host = format!("host: {}\r\n", acemux.addr);
    for (target, head, status, code) in [
        (
            "/playlist.m3u?format=mp4",
            host.as_str(),
            400,
            "invalid_query",
        ),
        ("/playlist.m3u?format=", host.as_str(), 400, "invalid_query"),
        ("/playlist.m3u?id=1", host.as_str(), 400, "invalid_query"),
        ("/playlist.m3u", "", 400, "missing_host"),
        ("/playlist.m3u", "host: a@b\r\n", 400, "invalid_host"),
        ("/playlist.m3u", "host: a:port\r\n", 400, "invalid_host"),
    ] {
        let answer = get(acemux, target, head).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (status, code),
            "{target} with {head:?}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    let http10 = exchange(acemux.addr, b"GET /playlist.m3u HTTP/1.0\r\n\r\n", PROMPT).await;
    assert_eq!(
        (http10.status, http10.error_code().as_str()),
        (400, "missing_host")
    );
}

#[tokio::test]
async fn a_toml_channel_list_is_served_under_the_public_url_without_the_api_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine_port = free_port();
    let list = write(dir.path(), "channels.toml", TOML_LIST);
    let setup = setup(
        dir,
        engine_port,
        &[
            "--channels",
            &list,
            "--public-url",
            "https://tv.example/acemux/",
            "--api-key",
            "secret",
        ],
    )
    .await;
    let acemux = &setup.acemux;
    // The public URL wins over the Host, and a request without one is answered.
    let mut listed_urls = Vec::new();
    for head in ["host: 127.0.0.1\r\n", ""] {
        let answer = get(acemux, "/playlist.m3u", head).await;
        let (channels, urls) = listed(&answer);
        expected_channels(&channels);
        assert_eq!(
            urls,
            vec![
                format!("https://tv.example/acemux/ace/getstream?id={SPORT}"),
                format!("https://tv.example/acemux/ace/getstream?id={NEWS}"),
                format!("https://tv.example/acemux/ace/getstream?infohash={MOVIE}"),
            ]
        );
        listed_urls = urls;
    }
    let hls = get(acemux, "/playlist.m3u?format=hls", "").await;
    assert_eq!(
        listed(&hls).1[2],
        format!("https://tv.example/acemux/ace/manifest.m3u8?infohash={MOVIE}")
    );
    // The infohash entry plays (asked of acemux itself: the public URL is a proxy's).
    let url = listed_urls[2].replace("https://tv.example/acemux", &acemux.url(""));
    let codecs = probe_codecs(&url).await;
    assert!(codecs.contains("h264"), "codecs: {codecs}");
}

#[tokio::test]
async fn a_malformed_channel_list_stops_acemux_naming_the_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text, line) in [
        (
            "bad.m3u",
            "#EXTM3U\n#EXTINF:-1,One\nacestream://0123456789abcdef0123456789abcdef01234567\n#EXTINF:-1,Two\nhttp://example.com/two.ts\n",
            "line 5",
        ),
        (
            "bad.toml",
            "[[channel]]\nname = \"One\"\nid = \"0123\"\n",
            "line 3",
        ),
    ] {
        let path = write(dir.path(), name, text);
        let output = Command::new(acemux_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--db", ":memory:"])
            .args(["--channels", &path])
            .stdin(Stdio::null())
            .output()
            .expect("run acemux");
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: {log}");
        assert!(
            log.contains(name) && log.contains(line),
            "{name}: the error names the file and {line}: {log}"
        );
    }
}

/// A playlist with everything a rewrite must keep: a byte-order mark, CRLF and LF line
/// ends, comments, attributes, blank lines, lines it does not understand, bytes that
/// are not UTF-8, URLs that are not AceStream sources, no final line end.
fn odd_playlist() -> (Vec<u8>, Vec<u8>) {
    let mut input = Vec::new();
    let mut output = Vec::new();
    let mut both = |text: &[u8]| {
        input.extend_from_slice(text);
        output.extend_from_slice(text);
    };
    both(b"\xEF\xBB\xBF#EXTM3U x-tvg-url=\"http://epg.example/a.xml\"\r\n\r\n");
    both(b"# acestream://0123456789abcdef0123456789abcdef01234567 in a comment\r\n");
    both(b"#EXTINF:-1 tvg-id=\"s\" group-title=\"Caf\xe9\",Sport 1\r\n");
    input.extend_from_slice(b"  acestream://0123456789abcdef0123456789abcdef01234567 \r\n");
    output.extend_from_slice(
        b"  http://tv.example:9000/ace/getstream?id=0123456789abcdef0123456789abcdef01234567 \r\n",
    );
    let mut both = |text: &[u8]| {
        input.extend_from_slice(text);
        output.extend_from_slice(text);
    };
    both(b"#EXTVLCOPT:network-caching=1000\n#EXTINF:-1,Engine\n");
    input.extend_from_slice(
        b"http://192.168.1.5:6878/ace/manifest.m3u8?id=89abcdef0123456789abcdef0123456789abcdef&pid=3&file_indexes=0\n",
    );
    output.extend_from_slice(
        b"http://tv.example:9000/ace/manifest.m3u8?id=89abcdef0123456789abcdef0123456789abcdef&file_indexes=0\n",
    );
    let mut both = |text: &[u8]| {
        input.extend_from_slice(text);
        output.extend_from_slice(text);
    };
    both(b"#EXTINF:-1,Other\nhttp://example.com/live/other.ts\n");
    both(b"what is this line \xff\xfe\n\t\n");
    both(b"#EXTINF:-1,Url source\nhttp://192.168.1.5:6878/ace/getstream?url=http%3A%2F%2Fx%2Fa.torrent\n");
    input.extend_from_slice(b"ACE://fedcba9876543210fedcba9876543210fedcba98");
    output.extend_from_slice(
        b"http://tv.example:9000/ace/getstream?id=fedcba9876543210fedcba9876543210fedcba98",
    );
    (input, output)
}

#[tokio::test]
async fn the_rewrite_route_and_command_change_source_lines_and_keep_every_other_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("events.db");
    // An API key is set; the rewrite changes nothing on the server and needs none.
    let acemux = Acemux::serve(
        free_port(),
        &[
            "--db",
            db.to_str().expect("utf-8 path"),
            "--api-key",
            "secret",
            "--max-playlist-bytes",
            "4096",
        ],
        &dir.path().join("acemux.log"),
    )
    .await;
    let (input, expected) = odd_playlist();

    let answer = post(
        &acemux,
        "/playlist/rewrite?base=http%3A%2F%2Ftv.example%3A9000%2F",
        &input,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(header(&answer, "content-type"), Some("audio/x-mpegurl"));
    assert_eq!(header(&answer, "acemux-rewritten-lines"), Some("3"));
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(answer.body, expected, "byte for byte");

    // Without base=, the Host; format= picks one route for every source.
    let answer = post(&acemux, "/playlist/rewrite?format=hls", &input).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    let text = String::from_utf8_lossy(&answer.body);
    assert_eq!(
        text.matches("http://acemux.lan:6880/ace/manifest.m3u8?id=")
            .count(),
        3,
        "{text}"
    );

    // Refusals.
    let big = vec![b'#'; 4097];
    for (target, body, status, code) in [
        ("/playlist/rewrite", &big[..], 413, "payload_too_large"),
        (
            "/playlist/rewrite?format=dash",
            &input[..],
            400,
            "invalid_query",
        ),
        (
            "/playlist/rewrite?base=ftp%3A%2F%2Fx",
            &input[..],
            400,
            "invalid_query",
        ),
        (
            "/playlist/rewrite?base=http%3A%2F%2Fx%2F%3Fa%3D1",
            &input[..],
            400,
            "invalid_query",
        ),
        (
            "/playlist/rewrite?url=http%3A%2F%2Fx",
            &input[..],
            400,
            "invalid_query",
        ),
        ("/playlist/rewrite", b"", 400, "invalid_playlist"),
    ] {
        let answer = post(&acemux, target, body).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (status, code),
            "{target}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    // Without --channels there is no channel playlist.
    let answer = get(&acemux, "/playlist.m3u", "host: acemux\r\n").await;
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (404, "no_channels")
    );

    // Eight rewrites at once, each body still arriving: a ninth is refused at once,
    // and once they go, rewrites are taken again.
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut stream = connect(acemux.addr).await;
        let head = format!(
            "POST /playlist/rewrite HTTP/1.1\r\nhost: acemux\r\ncontent-length: {}\r\n\r\n",
            input.len()
        );
        stream.write_all(head.as_bytes()).await.expect("write head");
        stream.write_all(&input[..10]).await.expect("write part");
        slow.push(stream);
    }
    let refused = eventually(PROMPT, || async {
        let answer = post(&acemux, "/playlist/rewrite", &input).await;
        answer.status == 503 && answer.error_code() == "capacity"
    })
    .await;
    assert!(refused, "a ninth rewrite at once is refused");
    drop(slow);
    let taken = eventually(PROMPT, || async {
        post(&acemux, "/playlist/rewrite", &input).await.status == 200
    })
    .await;
    assert!(taken, "rewrites are taken again once the others went");

    // The binary does the same.
    let (ok, out, err) = rewrite_command(&["--base", "http://tv.example:9000/"], &input);
    assert!(ok, "acemux m3u rewrite failed: {err}");
    assert_eq!(out, expected, "byte for byte");
    let (ok, out, _) = rewrite_command(
        &["--base", "http://tv.example:9000", "--format", "ts"],
        &input,
    );
    assert!(ok);
    assert!(!String::from_utf8_lossy(&out).contains("manifest.m3u8"));
    for (args, input, words) in [
        (&["--base", "tv.example"][..], &input[..], "http"),
        (
            &["--base", "http://x", "--max-playlist-bytes", "10"][..],
            &input[..],
            "--max-playlist-bytes",
        ),
        (
            &["--base", "http://x", "--format", "mp4"][..],
            &input[..],
            "ts or hls",
        ),
    ] {
        let (ok, out, err) = rewrite_command(args, input);
        assert!(!ok && out.is_empty(), "{args:?} refused");
        assert!(err.contains(words), "{args:?}: {err}");
    }
}

/// Runs `acemux m3u rewrite <args>` with `input` on stdin: whether it succeeded, its
/// stdout and its stderr.
fn rewrite_command(args: &[&str], input: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(acemux_bin())
        .args(["m3u", "rewrite"])
        .args(args)
        .env_remove("ACEMUX_PUBLIC_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn acemux m3u rewrite");
    let mut stdin = child.stdin.take().expect("stdin");
    // A refusal may come before the input is read whole.
    let _ = stdin.write_all(input);
    drop(stdin);
    let output = child.wait_with_output().expect("wait");
    (
        output.status.success(),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
