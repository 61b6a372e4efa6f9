//! A web player on another origin, for real: headless Chromium opens a page served from
//! `http://localhost:<port>` whose hls.js plays acemux's HLS from
//! `http://127.0.0.1:<acemux port>` (another host and port, so every playlist and
//! segment is a cross-origin fetch that only acemux's CORS headers let the page read),
//! and the `<video>` plays on: its time advances at least 3 s past where it started.
//!
//! Needs Debian's `chromium`, node and the node modules of `tests/browser/`
//! (puppeteer-core, hls.js); `scripts/test.sh` installs them. Without them the test
//! fails and says so. The driver is `tests/browser/play.mjs`, the page
//! `tests/browser/player.html`; the last run's screenshot and result are kept in
//! `target/tmp/browser_hls/`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use acemux_tests::browser::{
    browser_dir, output_dir, require_browser_tools, run_driver, DriverRun,
};
use acemux_tests::proxy::{patient_proxy, ProxyRig};
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

/// Seconds of playback the video must show past its first playing position.
const ADVANCE_SECONDS: f64 = 3.0;
/// Video frames the page must have decoded by then: 2 s of the emulator's 25 fps (the
/// audio clock alone would move the time on, decoded or not).
const MIN_FRAMES: u64 = 50;
/// Bound on the driver: the browser's start, the page, and its own 40 s wait.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(90);

/// The page's own origin: a static server of `player.html` and `hls.min.js` on a
/// loopback port of its own. Returns its address and the task serving it.
async fn serve_page(dir: &Path) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let page = std::fs::read_to_string(dir.join("player.html")).expect("read player.html");
    let hls = std::fs::read_to_string(dir.join("node_modules/hls.js/dist/hls.min.js"))
        .expect("read hls.min.js");
    let app = Router::new()
        .route(
            "/player.html",
            get(move || async move { ([(CONTENT_TYPE, "text/html; charset=utf-8")], page) }),
        )
        .route(
            "/hls.min.js",
            get(move || async move { ([(CONTENT_TYPE, "text/javascript")], hls) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the page server");
    let addr = listener.local_addr().expect("page server address");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("page server");
    });
    (addr, task)
}

/// `%`-encodes everything of `text` but unreserved characters, for a query value.
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_in_chromium_on_another_origin_plays_the_proxied_hls() {
    let dir = browser_dir();
    require_browser_tools().await;
    let out = output_dir("browser_hls");
    let screenshot = out.join("screenshot.png");
    let _ = std::fs::remove_file(&screenshot);

    let rig = ProxyRig::start(patient_proxy()).await;
    let (page_addr, page_server) = serve_page(&dir).await;
    // Another host name and another port than acemux's: another origin.
    let page_origin = format!("http://localhost:{}", page_addr.port());
    let media_origin = format!("http://{}", rig.acemux.local_addr());
    let manifest = format!("{media_origin}/ace/manifest.m3u8?id=browser");
    let page_url = format!("{page_origin}/player.html?src={}", query_value(&manifest));

    let started = Instant::now();
    let screenshot_arg = screenshot.to_string_lossy().into_owned();
    let DriverRun {
        result,
        success,
        stderr,
    } = run_driver("play.mjs", &[&page_url, &screenshot_arg], DRIVER_TIMEOUT).await;
    std::fs::write(out.join("result.json"), format!("{result:#}")).expect("write result");
    println!(
        "browser run: {:.1} s, {} {}, hls.js {}; screenshot {}, result {}",
        started.elapsed().as_secs_f64(),
        result["browserVersion"],
        result["pageOrigin"],
        result["hlsVersion"],
        screenshot.display(),
        out.join("result.json").display()
    );
    let context = format!("{result:#}\nstderr:\n{stderr}");

    assert!(
        success && result["ok"] == true,
        "the video did not play on: {}\n{context}",
        result["reason"]
    );
    let advanced = result["advanced"].as_f64().expect("advanced");
    assert!(
        advanced >= ADVANCE_SECONDS,
        "advanced {advanced} s\n{context}"
    );
    let frames = result["framesDecoded"].as_u64().expect("framesDecoded");
    assert!(frames >= MIN_FRAMES, "{frames} video frames\n{context}");
    assert_eq!(result["fatal"], Value::Null, "{context}");
    let fatal_errors: Vec<&Value> = result["hlsErrors"]
        .as_array()
        .expect("hlsErrors")
        .iter()
        .filter(|error| error["fatal"] == true)
        .collect();
    assert!(fatal_errors.is_empty(), "{context}");
    // The page ran on its own origin and fetched the media from acemux's.
    assert_eq!(result["pageOrigin"], page_origin.as_str(), "{context}");
    assert_eq!(result["mediaOrigin"], media_origin.as_str(), "{context}");
    assert_eq!(result["crossOrigin"], true, "{context}");
    let blocked: Vec<&Value> = result["consoleErrors"]
        .as_array()
        .expect("consoleErrors")
        .iter()
        .filter(|error| error.as_str().is_some_and(|text| text.contains("CORS")))
        .collect();
    assert!(blocked.is_empty(), "{context}");
    assert!(
        result["mediaAnswersWithCors"].as_u64().unwrap_or(0) >= 2,
        "a playlist and a segment at least, each with Access-Control-Allow-Origin\n{context}"
    );
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );

    // acemux served the playlist and segments to the page.
    let manifests =
        rig.metric("acemux_http_requests_total{route=\"/ace/manifest.m3u8\",status=\"200\"}");
    let segments = rig.metric(
        "acemux_http_requests_total{route=\"/ace/hls/{key_type}/{key}/{segment}\",status=\"200\"}",
    );
    assert!(
        manifests >= 1.0 && segments >= 2.0,
        "playlists {manifests}, segments {segments}:\n{}",
        rig.acemux.metrics().render()
    );

    page_server.abort();
    rig.shutdown().await;
}
