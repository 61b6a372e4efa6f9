//! `GET /`: the status page. Server-rendered HTML from the same JSON the API serves
//! (`/channels`, `/streams/{id}/viewers`, `/engines`, `/events`, `/webhooks`, built by
//! the same view functions), so it reads without JavaScript; a little plain
//! JavaScript, served inline, refreshes it (by fetching the page again) and performs
//! the operator's actions (stopping a stream) through the API. With `--api-key` set,
//! viewer details, webhooks and actions need the key: the page asks for it once and
//! keeps it in the browser's session storage (nothing is stored server-side), or it can
//! be given as `?key=` for reading without JavaScript.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, Uri};
use serde_json::Value;

use super::events::authorize;
use super::{views, AppState};
use crate::store::EventQuery;

/// Recent lifecycle events shown.
const RECENT_EVENTS: u64 = 20;

const STYLE: &str = include_str!("page/status.css");
const SCRIPT: &str = include_str!("page/status.js");

/// Text made safe for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as cell text: strings as they are, null as a dash.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "–".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Bytes for people: B, KB, MB, GB (powers of 1000).
fn bytes(value: &Value) -> String {
    let Some(n) = value.as_u64() else {
        return "–".to_owned();
    };
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut size = n as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < units.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{size:.1} {}", units[unit])
    }
}

/// A rate in bytes per second, in bits per second for people.
fn rate(value: &Value) -> String {
    let Some(n) = value.as_u64() else {
        return "–".to_owned();
    };
    let bits = n as f64 * 8.0;
    if bits >= 1e6 {
        format!("{:.2} Mbit/s", bits / 1e6)
    } else {
        format!("{:.0} kbit/s", bits / 1e3)
    }
}

/// Seconds as `1h 02m 03s`.
fn duration(value: &Value) -> String {
    let Some(secs) = value.as_u64() else {
        return "–".to_owned();
    };
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}m {s:02}s"),
    }
}

/// An engine address object as `host:port`.
fn address(value: &Value) -> String {
    match (&value["host"], &value["port"]) {
        (Value::String(host), Value::Number(port)) => format!("{host}:{port}"),
        _ => "–".to_owned(),
    }
}

/// A table: a header row, then one row per item; each cell is already HTML.
fn table(out: &mut String, id: &str, headers: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        let _ = write!(out, "<p class=\"empty\" id=\"{id}\">{}</p>", escape(empty));
        return;
    }
    let _ = write!(out, "<div class=\"scroll\"><table id=\"{id}\"><thead><tr>");
    for header in headers {
        let _ = write!(out, "<th>{}</th>", escape(header));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
}

/// `GET /`.
pub async fn status_page(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let key_required = app.api_key.is_some();
    // Viewer details, webhooks and actions: open without a key, else with it.
    let authorized = authorize(&app, &headers, &uri).is_ok();
    let now = app.lifecycle.clock().now();
    let channels: Vec<Value> = app
        .streams
        .as_ref()
        .map(|streams| {
            streams
                .channel_summaries()
                .iter()
                .map(|channel| {
                    let mut row = views::channel(channel, now);
                    if authorized {
                        row["viewer_list"] = channel.viewers.iter().map(views::viewer).collect();
                    }
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    let pool = app.streams.as_ref().map(|streams| streams.engine_pool());
    let engines = views::engines(pool.as_ref(), &app.lifecycle.engines(), now);
    let (_, last_seq, _) = app.lifecycle.health();
    let events = app
        .store
        .events(EventQuery {
            after: last_seq.saturating_sub(RECENT_EVENTS),
            limit: RECENT_EVENTS as usize,
            stream_id: None,
        })
        .await;

    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    out.push_str("<title>acemux</title><style>");
    out.push_str(STYLE);
    let _ = write!(
        out,
        "</style></head><body data-key-required=\"{key_required}\"><header><h1>acemux</h1>\
         <span class=\"version\">{}</span><span id=\"refreshed\"></span>\
         <form id=\"key-form\" hidden><input id=\"key\" type=\"password\" \
         placeholder=\"API key\" autocomplete=\"off\"><button type=\"submit\">Use key</button>\
         <button type=\"button\" id=\"forget-key\">Forget key</button></form></header><main id=\"main\">",
        escape(concat!("v", env!("CARGO_PKG_VERSION")))
    );

    // Channels.
    let _ = write!(
        out,
        "<section><h2>Channels <span class=\"count\" id=\"channel-count\">{}</span></h2>",
        channels.len()
    );
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|channel| {
            let error = match &channel["last_error"] {
                Value::Null => "–".to_owned(),
                error => format!(
                    "<span class=\"error\" title=\"{}\">{}</span>",
                    escape(&text(&error["at"])),
                    escape(&text(&error["message"]))
                ),
            };
            let action = match &channel["stream_id"] {
                Value::String(id) => format!(
                    "<button class=\"stop\" data-stream-id=\"{}\">Stop</button>",
                    escape(id)
                ),
                _ => String::new(),
            };
            vec![
                format!(
                    "<span class=\"channel\" data-channel=\"{0}\">{0}</span>",
                    escape(&text(&channel["channel"]))
                ),
                escape(&text(&channel["format"])),
                format!(
                    "<span class=\"state {0}\">{0}</span>",
                    escape(&text(&channel["state"]))
                ),
                escape(&address(&channel["engine"])),
                escape(&duration(&channel["uptime_s"])),
                format!(
                    "<span class=\"viewers\">{}</span>",
                    escape(&text(&channel["viewers"]))
                ),
                format!(
                    "{} <small>{}</small>",
                    escape(&bytes(&channel["bytes_in"])),
                    escape(&rate(&channel["rate_in"]))
                ),
                format!(
                    "{} <small>{}</small>",
                    escape(&bytes(&channel["bytes_out"])),
                    escape(&rate(&channel["rate_out"]))
                ),
                error,
                action,
            ]
        })
        .collect();
    table(
        &mut out,
        "channels",
        &[
            "Channel",
            "Format",
            "State",
            "Engine",
            "Uptime",
            "Viewers",
            "In",
            "Out",
            "Last error",
            "",
        ],
        &rows,
        "No channels are playing.",
    );
    out.push_str("</section>");

    // Viewers, per channel.
    out.push_str("<section><h2>Viewers</h2>");
    if !authorized {
        out.push_str(
            "<p class=\"locked\" id=\"viewers-locked\">Viewer addresses and user agents need \
             the API key.</p>",
        );
    } else if channels.iter().all(|channel| channel["viewers"] == 0) {
        out.push_str("<p class=\"empty\">Nobody is watching.</p>");
    } else {
        for channel in &channels {
            let list = channel["viewer_list"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if list.is_empty() {
                continue;
            }
            let _ = write!(out, "<h3>{}</h3>", escape(&text(&channel["channel"])));
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|viewer| {
                    vec![
                        escape(&text(&viewer["ip"])),
                        escape(&text(&viewer["user_agent"])),
                        escape(&text(&viewer["kind"])),
                        escape(&text(&viewer["connected_at"])),
                        escape(&bytes(&viewer["bytes_sent"])),
                        escape(&rate(&viewer["rate"])),
                        escape(&text(&viewer["token"])),
                    ]
                })
                .collect();
            table(
                &mut out,
                &format!("viewers-{}", escape(&text(&channel["id"]))),
                &[
                    "Address",
                    "User agent",
                    "Kind",
                    "Since",
                    "Sent",
                    "Rate",
                    "Player token",
                ],
                &rows,
                "",
            );
        }
    }
    out.push_str("</section>");

    // Engines.
    let engines = engines.as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = engines
        .iter()
        .map(|engine| {
            let load = match (&engine["sessions"], &engine["cap"]) {
                (Value::Number(sessions), Value::Number(cap)) => format!("{sessions}/{cap}"),
                (sessions, _) => text(sessions),
            };
            vec![
                format!(
                    "<span class=\"engine\">{}:{}</span>",
                    escape(&text(&engine["host"])),
                    escape(&text(&engine["port"]))
                ),
                escape(&text(&engine["source"])),
                format!(
                    "<span class=\"health {0}\">{0}</span>",
                    escape(&text(&engine["health"]))
                ),
                escape(&load),
                escape(&text(&engine["last_check"])),
            ]
        })
        .collect();
    out.push_str("<section><h2>Engines</h2>");
    table(
        &mut out,
        "engines",
        &["Engine", "Source", "Health", "Load", "Last check"],
        &rows,
        "No engines are known.",
    );
    out.push_str("</section>");

    // Recent events, newest first.
    out.push_str("<section><h2>Recent events</h2>");
    match events {
        Ok(events) => {
            let rows: Vec<Vec<String>> = events
                .iter()
                .rev()
                .map(|event| {
                    let event = views::event(event);
                    vec![
                        escape(&text(&event["seq"])),
                        escape(&text(&event["at"])),
                        escape(&text(&event["type"])),
                        escape(&text(&event["stream_id"])),
                        escape(&text(&event["stream"]["end_reason"])),
                    ]
                })
                .collect();
            table(
                &mut out,
                "events",
                &["#", "At", "Event", "Stream", "Reason"],
                &rows,
                "No events yet.",
            );
        }
        Err(error) => {
            let _ = write!(
                out,
                "<p class=\"error\">The event log cannot be read: {}</p>",
                escape(&error.to_string())
            );
        }
    }
    out.push_str("</section>");

    // Webhooks.
    out.push_str("<section><h2>Webhooks</h2>");
    if !authorized {
        out.push_str("<p class=\"locked\">Webhook state needs the API key.</p>");
    } else {
        let rows: Vec<Vec<String>> = super::status::webhook_rows(&app)
            .iter()
            .map(|hook| {
                vec![
                    escape(&text(&hook["url"])),
                    escape(&text(&hook["pending"])),
                    escape(&text(&hook["delivered"])),
                    escape(&text(&hook["last_delivered_at"])),
                    escape(&text(&hook["last_error"]["message"])),
                ]
            })
            .collect();
        table(
            &mut out,
            "webhooks",
            &[
                "Webhook",
                "Pending",
                "Delivered",
                "Last delivery",
                "Last error",
            ],
            &rows,
            "No webhooks are configured.",
        );
    }
    out.push_str("</section></main><script>");
    out.push_str(SCRIPT);
    out.push_str("</script></body></html>");

    let mut response = Html(out).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Only the page's own inline script and style; nothing from elsewhere.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; \
             frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped_and_figures_read_for_people() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(bytes(&Value::from(999)), "999 B");
        assert_eq!(bytes(&Value::from(1_500_000)), "1.5 MB");
        assert_eq!(rate(&Value::from(125_000)), "1.00 Mbit/s");
        assert_eq!(rate(&Value::from(1_000)), "8 kbit/s");
        assert_eq!(duration(&Value::from(3723)), "1h 02m 03s");
        assert_eq!(duration(&Value::from(61)), "1m 01s");
        assert_eq!(text(&Value::Null), "–");
    }
}
