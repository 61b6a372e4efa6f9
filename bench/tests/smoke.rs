//! Runs every scenario of `acemux-bench` tiny (a handful of viewers, about two
//! seconds) and checks that its JSON holds sane figures, so that the command keeps
//! working without running the full benchmark. Speed is not judged here.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `acemux-bench <args>` writing JSON to a temp file; the scenario's JSON.
fn run(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("out.json");
    let output = Command::new(env!("CARGO_BIN_EXE_acemux-bench"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the benchmark runs");
    assert!(
        output.status.success(),
        "acemux-bench {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("| measure |"),
        "no table printed:\n{stdout}"
    );
    let all: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&json)).expect("JSON written"))
            .expect("valid JSON");
    assert!(all["machine"]["cores"].as_u64().unwrap_or(0) >= 1, "{all}");
    assert_eq!(all["date"].as_str().map(str::len), Some(10), "{all}");
    let scenario = all["scenarios"][0].clone();
    assert!(
        scenario["targets"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "every scenario reports against its targets: {scenario}"
    );
    scenario
}

fn number(value: &Value, pointer: &str) -> f64 {
    value
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is not a number in {value}"))
}

fn positive(value: &Value, pointer: &str) {
    let number = number(value, pointer);
    assert!(
        number.is_finite() && number > 0.0,
        "{pointer} = {number} in {value}"
    );
}

#[test]
fn fanout_reports_rates_cpu_and_memory() {
    let out = run(&["fanout", "--viewers", "5", "--seconds", "2"]);
    for side in ["acemux", "baseline"] {
        positive(&out, &format!("/{side}/rate_bps_p1"));
        positive(&out, &format!("/{side}/egress_bps"));
        positive(&out, &format!("/{side}/rss_bytes"));
        assert!(number(&out, &format!("/{side}/cpu_cores")) >= 0.0);
        assert!(number(&out, &format!("/{side}/rss_bytes_per_viewer")) >= 0.0);
    }
    positive(&out, "/ratios/egress");
}

#[test]
fn fanout_max_finds_a_sustained_rate_on_both_sides() {
    let out = run(&[
        "fanout-max",
        "--viewers",
        "4",
        "--seconds",
        "1",
        "--trials",
        "1",
    ]);
    positive(&out, "/baseline/unpaced_egress_bps");
    assert!(out["acemux"]["search"]
        .as_array()
        .is_some_and(|s| s.len() == 1));
    assert!(out["baseline"]["search"]
        .as_array()
        .is_some_and(|s| s.len() == 1));
}

#[test]
fn join_reports_first_byte_times() {
    let out = run(&["join", "--viewers", "5", "--trials", "2"]);
    positive(&out, "/acemux/join_ttfb/p99_ms");
    positive(&out, "/baseline/join_ttfb/p99_ms");
    positive(&out, "/acemux/first_viewer_ttfb/p50_ms");
    positive(&out, "/baseline/engine_direct_first_byte/p50_ms");
    assert!(number(&out, "/acemux/first_viewer_added_ms_p50").is_finite());
    positive(&out, "/ratios/join_ttfb_p99");
}

#[test]
fn join_storm_reports_every_crowd() {
    let out = run(&["join-storm", "--viewers", "20"]);
    for side in ["acemux", "baseline", "baseline_newest_piece"] {
        assert_eq!(out[side]["served"].as_u64(), Some(20), "{side}: {out}");
        positive(&out, &format!("/{side}/join_ttfb/p99_ms"));
    }
    assert_eq!(out["baseline"]["start"], "entry", "{out}");
    positive(&out, "/ratios/join_ttfb_p99");
    positive(&out, "/ratios/join_ttfb_p99_against_newest_piece");
}

#[test]
fn hls_reports_playlist_and_segment_latency() {
    let out = run(&["hls", "--viewers", "5", "--seconds", "2", "--rate", "50"]);
    // Once per HLS source: the engine's own, and the segments cut from TS.
    for source in ["engine", "ts"] {
        for side in ["acemux", "baseline"] {
            positive(
                &out,
                &format!("/sources/{source}/{side}/requests/playlist/p99_ms"),
            );
            positive(
                &out,
                &format!("/sources/{source}/{side}/requests/segment/p50_ms"),
            );
        }
        positive(&out, &format!("/sources/{source}/acemux/first_playlist_ms"));
        positive(&out, &format!("/sources/{source}/ratios/playlist_p99"));
    }
}

#[test]
fn isolation_reports_unrelated_latency_during_a_slow_start() {
    let out = run(&["isolation", "--seconds", "2", "--rate", "50"]);
    positive(&out, "/acemux/all/p99_ms");
    positive(&out, "/baseline/all/p99_ms");
    positive(&out, "/ratios/p99");
    assert!(out["acemux"]["slow_players"]
        .as_array()
        .is_some_and(|p| p.len() == 10));
}
