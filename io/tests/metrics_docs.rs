//! The metrics reference (`docs/metrics.md`) and the example dashboard
//! (`docs/grafana-dashboard.json`) agree with what `GET /metrics` exposes: every metric
//! is documented, with its type and labels, and neither names a metric that does not
//! exist.

#![expect(
    clippy::disallowed_methods,
    reason = "a test, outside the server: it reads the documents from disk"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use acemux::metrics::{
    ChannelLabels, CutLabels, DropLabels, EngineListLabels, EventLabels, HttpLabels, Metrics,
    WebhookLabels,
};
use acemux_core::channel::EngineStats;

/// A metric family as the exposition shows it.
#[derive(Debug, Default)]
struct Family {
    /// `counter`, `gauge` or `histogram`.
    kind: String,
    /// The names of its series.
    samples: BTreeSet<String>,
    /// The labels its series carry (`le` of histogram buckets left out).
    labels: BTreeSet<String>,
}

/// What `/metrics` exposes, by the name a query uses: a counter's `_total` name, a
/// gauge's or histogram's own name.
#[derive(Debug)]
struct Exposed {
    families: BTreeMap<String, Family>,
}

impl Exposed {
    /// Every name a PromQL expression can select.
    fn series_names(&self) -> BTreeSet<&str> {
        self.families
            .values()
            .flat_map(|family| family.samples.iter().map(String::as_str))
            .collect()
    }

    /// Every name the reference may mention: the queried names and the series names.
    fn known_names(&self) -> BTreeSet<&str> {
        let mut names = self.series_names();
        names.extend(self.families.keys().map(String::as_str));
        names
    }
}

fn repo_file(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Metrics with one series in every family, so that each shows its series names and
/// labels.
fn sampled() -> Metrics {
    let metrics = Metrics::new();
    let channel = ChannelLabels::new(&"content_id:0123456789abcdef0123456789abcdef01234567");
    let webhook = WebhookLabels {
        webhook: "http://receiver:8000".to_owned(),
    };
    let list = EngineListLabels {
        source: "http://orchestrator:8000/engines".to_owned(),
    };
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route: "/health".to_owned(),
            status: 200,
        })
        .inc();
    metrics.http_connections.inc();
    metrics.http_connections_rejected.inc();
    metrics.active_streams.inc();
    metrics
        .events
        .get_or_create(&EventLabels {
            r#type: "stream_started".to_owned(),
        })
        .inc();
    metrics.idempotent_replays.inc();
    metrics.webhook_delivered.get_or_create(&webhook).inc();
    metrics.webhook_retried.get_or_create(&webhook).inc();
    metrics.webhook_rejected.get_or_create(&webhook).inc();
    metrics.webhook_pending.get_or_create(&webhook).set(1);
    metrics.webhook_given_up.get_or_create(&webhook).inc();
    metrics.engine_list_engines.get_or_create(&list).set(2);
    metrics.engine_list_failures.get_or_create(&list).inc();
    metrics.store_commit_errors.inc();
    metrics.cluster_leases.set(1);
    metrics
        .cluster_lease_events
        .get_or_create(&acemux::metrics::LeaseEventLabels {
            event: "acquired".to_owned(),
        })
        .inc();
    metrics
        .cluster_redis_failures
        .get_or_create(&acemux::metrics::RedisCallLabels {
            call: "renew".to_owned(),
        })
        .inc();
    metrics.cluster_relays.inc();
    metrics
        .cluster_hls_relay_fetches
        .get_or_create(&acemux::metrics::HlsRelayFetchLabels {
            kind: "segment",
            result: "ok",
        })
        .inc();
    metrics
        .cluster_slot_events
        .get_or_create(&acemux::metrics::SlotEventLabels {
            event: "reserved".to_owned(),
        })
        .inc();
    metrics
        .cluster_directory_reads
        .get_or_create(&acemux::metrics::DirectoryReadLabels {
            result: "ok".to_owned(),
        })
        .inc();
    metrics.channels.inc();
    metrics.channel_viewers.get_or_create(&channel).set(1);
    metrics.channel_bytes_in.get_or_create(&channel).inc_by(188);
    metrics
        .channel_bytes_out
        .get_or_create(&channel)
        .inc_by(188);
    metrics
        .channel_upstream_stalls
        .get_or_create(&channel)
        .inc();
    metrics.channel_reconnects.get_or_create(&channel).inc();
    metrics.session_stats.set(
        &channel,
        &EngineStats {
            peers: 3,
            speed_down: 400,
            speed_up: 20,
            downloaded: 1 << 20,
            uploaded: 1 << 10,
            ..EngineStats::default()
        },
    );
    metrics.channel_stat_failures.get_or_create(&channel).inc();
    metrics.channel_no_peers.get_or_create(&channel).inc();
    metrics
        .viewer_drops
        .get_or_create(&DropLabels {
            channel: channel.channel.clone(),
            reason: "fell_behind".to_owned(),
        })
        .inc();
    metrics.engine_stops.inc();
    metrics.engine_late_session(&"127.0.0.1:6878");
    metrics.time_to_first_byte.observe(0.2);
    metrics.limit_hit("connections");
    metrics.ts_discarded_bytes.get_or_create(&channel).inc_by(4);
    metrics.hls_playlist_errors.get_or_create(&channel).inc();
    metrics
        .hls_cut_segments
        .get_or_create(&CutLabels {
            channel: channel.channel.clone(),
            start: "keyframe".to_owned(),
        })
        .inc();
    metrics
}

/// The `# TYPE` lines of an exposition: family name (as the descriptor names it) and
/// type.
fn descriptors(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("malformed TYPE line: {rest}"));
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// The suffixes a family's series add to its descriptor name.
fn series_suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total"],
        "gauge" => &[""],
        "histogram" => &["_bucket", "_sum", "_count"],
        other => panic!("unexpected metric type {other}"),
    }
}

/// Reads an exposition whose families all have series.
fn exposed(text: &str) -> Exposed {
    let descriptors = descriptors(text);
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    // Series name → the queried name of its family.
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (name, kind) in &descriptors {
        let queried = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.clone()
        };
        for suffix in series_suffixes(kind) {
            owners.insert(format!("{name}{suffix}"), queried.clone());
        }
        families.insert(
            queried,
            Family {
                kind: kind.clone(),
                ..Family::default()
            },
        );
    }
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        if line.trim().is_empty() {
            continue;
        }
        let end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("malformed series line: {line}"));
        let series = &line[..end];
        let queried = owners
            .get(series)
            .unwrap_or_else(|| panic!("series {series} belongs to no # TYPE line of /metrics"));
        let family = families.get_mut(queried).expect("every owner has a family");
        family.samples.insert(series.to_owned());
        if let Some(labels) = line[end..]
            .strip_prefix('{')
            .and_then(|rest| rest.split_once('}'))
            .map(|(labels, _)| labels)
        {
            for label in split_labels(labels) {
                if label != "le" {
                    family.labels.insert(label);
                }
            }
        }
    }
    for (name, family) in &families {
        assert!(
            !family.samples.is_empty(),
            "{name} has no series in the sampled metrics: give it one in sampled() so that \
             its series names and labels are checked"
        );
    }
    Exposed { families }
}

/// The label names of `a="x",b="y"` (values may hold commas and escaped quotes).
fn split_labels(labels: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = labels;
    while let Some((name, after)) = rest.split_once("=\"") {
        names.push(name.trim_start_matches(',').to_owned());
        let mut escaped = false;
        let close = after
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map(|(at, _)| at)
            .unwrap_or_else(|| panic!("unterminated label value in {{{labels}}}"));
        rest = &after[close + 1..];
    }
    names
}

/// Every `acemux_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("acemux_") {
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// A metric row of the reference's tables: name, type, labels.
#[derive(Debug)]
struct Documented {
    kind: String,
    labels: BTreeSet<String>,
}

/// The rows of the reference's tables whose first cell names a metric.
fn documented(doc: &str) -> (BTreeMap<String, Documented>, Vec<String>) {
    let mut rows = BTreeMap::new();
    let mut problems = Vec::new();
    for line in doc.lines() {
        let Some(row) = line.strip_prefix("| `acemux_") else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").map(str::trim).collect();
        let Some(name) = cells[0].strip_suffix('`') else {
            problems.push(format!("metrics.md: malformed metric row: {line}"));
            continue;
        };
        let name = format!("acemux_{name}");
        if cells.len() < 4 {
            problems.push(format!(
                "metrics.md: the row of {name} needs the columns metric | type | labels | meaning"
            ));
            continue;
        }
        let labels = if cells[2] == "—" {
            BTreeSet::new()
        } else {
            cells[2]
                .split(',')
                .map(|label| label.trim().trim_matches('`').to_owned())
                .collect()
        };
        let row = Documented {
            kind: cells[1].to_owned(),
            labels,
        };
        if rows.insert(name.clone(), row).is_some() {
            problems.push(format!("metrics.md: {name} has more than one row"));
        }
    }
    (rows, problems)
}

/// Where the reference disagrees with the exposition.
fn reference_problems(doc: &str, exposed: &Exposed) -> Vec<String> {
    let (rows, mut problems) = documented(doc);
    for (name, family) in &exposed.families {
        match rows.get(name) {
            None => problems.push(format!(
                "{name} ({}) is exposed at /metrics but has no row in docs/metrics.md",
                family.kind
            )),
            Some(row) => {
                if row.kind != family.kind {
                    problems.push(format!(
                        "{name} is a {} but docs/metrics.md says {}",
                        family.kind, row.kind
                    ));
                }
                if row.labels != family.labels {
                    problems.push(format!(
                        "{name} has the labels {:?} but docs/metrics.md says {:?}",
                        family.labels, row.labels
                    ));
                }
            }
        }
    }
    for name in rows.keys() {
        if !exposed.families.contains_key(name) {
            problems.push(format!(
                "docs/metrics.md has a row for {name}, which /metrics does not expose"
            ));
        }
    }
    let known = exposed.known_names();
    for name in metric_names(doc) {
        if !known.contains(name.as_str()) {
            problems.push(format!(
                "docs/metrics.md names {name}, which /metrics does not expose"
            ));
        }
    }
    problems
}

/// Every string of `value` with the path to it, e.g. `panels[3].targets[0].expr`.
fn strings<'a>(value: &'a serde_json::Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        serde_json::Value::String(text) => out.push((path, text)),
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                strings(item, format!("{path}[{index}]"), out);
            }
        }
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                strings(item, path, out);
            }
        }
        _ => {}
    }
}

/// Where the dashboard disagrees with the exposition, or is not a dashboard.
fn dashboard_problems(json: &str, exposed: &Exposed) -> Vec<String> {
    let dashboard: serde_json::Value = match serde_json::from_str(json) {
        Ok(dashboard) => dashboard,
        Err(error) => return vec![format!("grafana-dashboard.json does not parse: {error}")],
    };
    let mut problems = Vec::new();
    let mut texts = Vec::new();
    strings(&dashboard, String::new(), &mut texts);
    // A query can only select series; elsewhere (descriptions) a documented name will do.
    let series = exposed.series_names();
    let known = exposed.known_names();
    let mut exprs = 0;
    for (path, text) in &texts {
        let templated = path.ends_with(".query") || path.ends_with(".definition");
        let is_query = path.ends_with(".expr") || (path.starts_with("templating.") && templated);
        exprs += usize::from(path.ends_with(".expr"));
        for name in metric_names(text) {
            let exists = if is_query {
                series.contains(name.as_str())
            } else {
                known.contains(name.as_str())
            };
            if !exists {
                problems.push(format!(
                    "grafana-dashboard.json {path} uses {name}, which /metrics does not expose"
                ));
            }
        }
    }
    if exprs == 0 {
        problems.push("grafana-dashboard.json has no query (no expr field)".to_owned());
    }
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        if let Some(id) = panel["id"].as_u64() {
            if !ids.insert(id) {
                problems.push(format!(
                    "grafana-dashboard.json: panel id {id} ({title}) is used twice"
                ));
            }
        } else {
            problems.push(format!("grafana-dashboard.json: panel {title} has no id"));
        }
        if panel["type"] != "row" {
            let queries = panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|target| target["expr"].as_str().is_some_and(|expr| !expr.is_empty()))
                .count();
            if queries == 0 {
                problems.push(format!(
                    "grafana-dashboard.json: panel {title} has no query"
                ));
            }
        }
    }
    problems
}

fn assert_none(problems: Vec<String>) {
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn every_family_shows_its_descriptor_before_it_has_series() {
    let fresh = descriptors(&Metrics::new().render());
    let sampled = descriptors(&sampled().render());
    assert!(!fresh.is_empty(), "a fresh /metrics shows no # TYPE line");
    assert_eq!(
        fresh.keys().collect::<Vec<_>>(),
        sampled.keys().collect::<Vec<_>>(),
        "a fresh /metrics and one with series show different families"
    );
    let fresh = Metrics::new().render();
    for name in sampled.keys() {
        assert!(
            fresh.contains(&format!("# HELP {name} ")),
            "a fresh /metrics has no # HELP line for {name}"
        );
    }
}

#[test]
fn the_reference_documents_exactly_what_metrics_exposes() {
    let exposed = exposed(&sampled().render());
    assert_none(reference_problems(&repo_file("docs/metrics.md"), &exposed));
}

#[test]
fn the_dashboard_parses_and_queries_only_exposed_series() {
    let exposed = exposed(&sampled().render());
    assert_none(dashboard_problems(
        &repo_file("docs/grafana-dashboard.json"),
        &exposed,
    ));
}

#[test]
fn counters_are_queried_by_their_total_name() {
    let exposed = exposed(&sampled().render());
    let requests = &exposed.families["acemux_http_requests_total"];
    assert_eq!(requests.kind, "counter");
    assert_eq!(
        requests.labels,
        BTreeSet::from(["route".to_owned(), "status".to_owned()])
    );
    let ttfb = &exposed.families["acemux_time_to_first_byte_seconds"];
    assert_eq!(
        ttfb.samples,
        BTreeSet::from(
            ["_bucket", "_count", "_sum"]
                .map(|suffix| format!("acemux_time_to_first_byte_seconds{suffix}"))
        )
    );
    assert!(!exposed.families.contains_key("acemux_http_requests"));
}

#[test]
fn a_reference_that_disagrees_is_reported_by_name() {
    let exposed = exposed(&sampled().render());
    let doc = repo_file("docs/metrics.md");
    let without_viewers: String = doc
        .lines()
        .filter(|line| !line.starts_with("| `acemux_channel_viewers`"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(
        without_viewers.len() < doc.len(),
        "metrics.md has the row of acemux_channel_viewers"
    );
    let retyped = without_viewers.replace(
        "| `acemux_channels` | gauge | — |",
        "| `acemux_channels` | counter | `channel` |",
    );
    assert_ne!(
        retyped, without_viewers,
        "metrics.md has the row of acemux_channels"
    );
    let doctored = retyped + "\nSee also `acemux_channel_watchers` and `acemux_http_requests`.\n";
    let problems = reference_problems(&doctored, &exposed).join("\n");
    for expected in [
        "acemux_channel_viewers (gauge) is exposed at /metrics but has no row",
        "acemux_channels is a gauge but docs/metrics.md says counter",
        "acemux_channels has the labels {} but docs/metrics.md says {\"channel\"}",
        "docs/metrics.md names acemux_channel_watchers",
        "docs/metrics.md names acemux_http_requests,",
    ] {
        assert!(
            problems.contains(expected),
            "expected a problem with {expected:?} among:\n{problems}"
        );
    }
}

#[test]
fn a_dashboard_that_disagrees_is_reported_by_name() {
    let exposed = exposed(&sampled().render());
    let dashboard = repo_file("docs/grafana-dashboard.json");
    let renamed = dashboard.replacen(
        "acemux_channel_bytes_in_total",
        "acemux_channel_bytes_received_total",
        1,
    );
    assert_ne!(
        renamed, dashboard,
        "the dashboard queries acemux_channel_bytes_in_total"
    );
    let problems = dashboard_problems(&renamed, &exposed).join("\n");
    assert!(
        problems
            .contains("uses acemux_channel_bytes_received_total, which /metrics does not expose"),
        "{problems}"
    );
    // A histogram is queried through its series, never by its own name.
    let bare = dashboard.replacen(
        "acemux_time_to_first_byte_seconds_bucket",
        "acemux_time_to_first_byte_seconds",
        1,
    );
    assert_ne!(
        bare, dashboard,
        "the dashboard queries the time-to-first-byte buckets"
    );
    let problems = dashboard_problems(&bare, &exposed).join("\n");
    assert!(
        problems.contains("uses acemux_time_to_first_byte_seconds,"),
        "{problems}"
    );
    let problems = dashboard_problems("{\"panels\": [", &exposed).join("\n");
    assert!(problems.contains("does not parse"), "{problems}");
}
