//! The status page in a real browser: acemux with the engine emulator, two channels
//! and three viewers; headless Chromium loads `/`, and the page shows the channels,
//! their viewer counts and the engine, hides viewer details until the API key is given
//! in its form, then lists the viewers with their user agents; its stop button ends a
//! channel, which the page stops listing (and acemux records as deleted). A screenshot
//! is kept in `target/tmp/status_page/`. Without JavaScript the page reads the same:
//! its HTML, fetched plainly, already holds the tables.

use std::time::Duration;

use acemux::ServeOptions;
use acemux_tests::browser::{output_dir, require_browser_tools, run_driver};
use acemux_tests::proxy::{patient_proxy, ProxyRig};
use acemux_tests::raw::{exchange, ts_viewer};
use acemux_tests::{eventually, Client};
use hyper::StatusCode;

const KEY: &str = "page-key";

async fn rig() -> ProxyRig {
    let options = ServeOptions {
        api_key: Some(KEY.into()),
        proxy: patient_proxy(),
        ..ServeOptions::default()
    };
    ProxyRig::start_options(vec![Default::default()], options).await
}

async fn viewers_on(rig: &ProxyRig, counts: &[(&str, u64)]) {
    let all = eventually(Duration::from_secs(15), || async {
        let (_, channels) = Client::new()
            .get(&rig.url("/channels"))
            .await
            .expect("channels");
        counts.iter().all(|(name, count)| {
            channels.as_array().is_some_and(|list| {
                list.iter()
                    .any(|c| c["channel"] == *name && c["viewers"] == *count)
            })
        })
    })
    .await;
    assert!(all, "viewers never joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_channels_viewers_and_engines_and_stops_a_stream() {
    require_browser_tools().await;
    let rig = rig().await;
    let addr = rig.acemux.local_addr();
    let viewers = [
        ts_viewer(addr, "news", "VLC/3.0.18 LibVLC/3.0.18").await,
        ts_viewer(addr, "news", "Kodi/20.2").await,
        ts_viewer(addr, "sport", "Lavf/59.27.100").await,
    ];
    viewers_on(&rig, &[("content_id:news", 2), ("content_id:sport", 1)]).await;

    let out = output_dir("status_page");
    let screenshot = out.join("screenshot.png");
    let _ = std::fs::remove_file(&screenshot);
    let run = run_driver(
        "status.mjs",
        &[
            &rig.url("/"),
            KEY,
            "content_id:sport",
            &screenshot.to_string_lossy(),
        ],
        Duration::from_secs(90),
    )
    .await;
    let result = &run.result;
    std::fs::write(out.join("result.json"), format!("{result:#}")).expect("write result");
    println!("screenshot {}", screenshot.display());
    let context = format!("{result:#}\nstderr:\n{}", run.stderr);
    assert!(run.success && result["ok"] == true, "{context}");
    assert_eq!(result["channels"]["content_id:news"], 2, "{context}");
    assert_eq!(result["channels"]["content_id:sport"], 1, "{context}");
    let engine = format!("127.0.0.1:{}", rig.engines[0].local_addr().port());
    assert_eq!(result["engines"], serde_json::json!([engine]), "{context}");
    assert_eq!(
        result["lockedBeforeKey"], true,
        "details hidden without the key"
    );
    let mut agents: Vec<&str> = result["viewerAgents"]
        .as_object()
        .expect("viewer tables")
        .values()
        .flat_map(|rows| rows.as_array().expect("rows").iter())
        .map(|agent| agent.as_str().expect("agent"))
        .collect();
    agents.sort_unstable();
    assert_eq!(
        agents,
        ["Kodi/20.2", "Lavf/59.27.100", "VLC/3.0.18 LibVLC/3.0.18"],
        "{context}"
    );
    assert_eq!(
        result["channelsAfterStop"],
        serde_json::json!(["content_id:news"]),
        "{context}"
    );
    assert!(
        result["pageErrors"].as_array().is_some_and(Vec::is_empty),
        "{context}"
    );
    assert!(screenshot.exists());

    // acemux ended the stopped stream as deleted.
    let (_, ended) = Client::new()
        .get(&rig.url("/streams?status=ended"))
        .await
        .expect("streams");
    assert!(
        ended.as_array().is_some_and(|list| list
            .iter()
            .any(|s| s["key"] == "sport" && s["end_reason"] == "deleted")),
        "{ended}"
    );
    for viewer in viewers {
        viewer.abort();
    }
    rig.shutdown().await;
}

#[tokio::test]
async fn without_javascript_the_html_holds_the_tables_and_hides_viewers_without_the_key() {
    let rig = rig().await;
    let addr = rig.acemux.local_addr();
    let viewer = ts_viewer(addr, "news", "VLC/3.0.18 <b>bold</b>").await;
    viewers_on(&rig, &[("content_id:news", 1)]).await;
    let page = |target: &str| {
        let request = format!("GET {target} HTTP/1.1\r\nhost: acemux\r\n\r\n");
        async move { exchange(addr, request.as_bytes(), Duration::from_secs(10)).await }
    };
    let plain = page("/").await;
    assert_eq!(plain.status, 200, "{}", plain.head);
    let html = String::from_utf8_lossy(&plain.body).into_owned();
    assert!(plain
        .head
        .to_ascii_lowercase()
        .contains("content-type: text/html"));
    assert!(plain
        .head
        .to_ascii_lowercase()
        .contains("content-security-policy"));
    assert!(html.contains("data-channel=\"content_id:news\""), "{html}");
    assert!(html.contains("<span class=\"viewers\">1</span>"), "{html}");
    assert!(
        html.contains("viewers-locked"),
        "viewer details need the key"
    );
    assert!(
        !html.contains("VLC/3.0.18"),
        "no user agent without the key"
    );
    // With the key (as a query, for reading without JavaScript), the viewers show,
    // their user agent escaped.
    let keyed = page(&format!("/?key={KEY}")).await;
    let html = String::from_utf8_lossy(&keyed.body).into_owned();
    assert!(
        html.contains("VLC/3.0.18 &lt;b&gt;bold&lt;/b&gt;"),
        "{html}"
    );
    assert!(!html.contains("<b>bold</b>"));
    // A wrong key reads like no key.
    let wrong = page("/?key=nope").await;
    assert_eq!(wrong.status, 200);
    assert!(String::from_utf8_lossy(&wrong.body).contains("viewers-locked"));
    assert_eq!(
        Client::new().get(&rig.url("/")).await.expect("page").0,
        StatusCode::OK
    );
    viewer.abort();
    rig.shutdown().await;
}
