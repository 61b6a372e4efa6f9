//! Figures, tables and the JSON every scenario reports, and `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Map, Value};

/// The value at quantile `q` (0..=1) of `values` (nearest rank); NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// p50, p99 and max of latencies in ms, as JSON.
pub fn latency_json(values_ms: &[f64]) -> Value {
    json!({
        "count": values_ms.len(),
        "p50_ms": finite(quantile(values_ms, 0.5)),
        "p99_ms": finite(quantile(values_ms, 0.99)),
        "max_ms": finite(quantile(values_ms, 1.0)),
    })
}

/// `value` as JSON, `null` when not finite.
pub fn finite(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        Value::Null
    }
}

/// `acemux / baseline`, NaN when undefined.
pub fn ratio(acemux: f64, baseline: f64) -> f64 {
    if baseline > 0.0 && acemux.is_finite() && baseline.is_finite() {
        acemux / baseline
    } else {
        f64::NAN
    }
}

pub fn mbit(bits_per_second: f64) -> String {
    if bits_per_second >= 1e9 {
        format!("{:.2} Gbit/s", bits_per_second / 1e9)
    } else {
        format!("{:.2} Mbit/s", bits_per_second / 1e6)
    }
}

pub fn ms(value: f64) -> String {
    if !value.is_finite() {
        "–".to_owned()
    } else if value < 10.0 {
        format!("{value:.2} ms")
    } else {
        format!("{value:.0} ms")
    }
}

pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

pub fn kib(bytes: f64) -> String {
    format!("{:.1} KiB", bytes / 1024.0)
}

pub fn times(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}×")
    } else {
        "–".to_owned()
    }
}

/// One line of a scenario's table.
#[derive(Clone, Debug)]
pub struct Row {
    pub measure: String,
    pub acemux: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    /// Whether the target is met; `None` for figures without a target.
    pub met: Option<bool>,
}

impl Row {
    /// A figure of acemux with a baseline and their ratio.
    pub fn compared(measure: &str, acemux: String, baseline: String, ratio: f64) -> Row {
        Row {
            measure: measure.to_owned(),
            acemux,
            baseline,
            ratio: times(ratio),
            target: String::new(),
            met: None,
        }
    }

    /// A figure of acemux alone.
    pub fn alone(measure: &str, acemux: String) -> Row {
        Row {
            measure: measure.to_owned(),
            acemux,
            baseline: "–".to_owned(),
            ratio: "–".to_owned(),
            target: String::new(),
            met: None,
        }
    }

    /// Adds a target and whether it is met.
    pub fn target(mut self, target: &str, met: bool) -> Row {
        self.target = target.to_owned();
        self.met = Some(met);
        self
    }

    /// [`target`](Self::target) where the scenario has one, else the row as it is.
    pub fn target_if(self, applies: bool, target: &str, met: bool) -> Row {
        if applies {
            self.target(target, met)
        } else {
            self
        }
    }
}

/// What one scenario reports.
#[derive(Debug)]
pub struct ScenarioReport {
    pub name: &'static str,
    /// What was run, in one sentence.
    pub setup: String,
    pub rows: Vec<Row>,
    /// Every figure, machine-readable.
    pub json: Value,
}

impl ScenarioReport {
    /// The JSON of the scenario with its targets.
    pub fn to_json(&self) -> Value {
        let mut object = match &self.json {
            Value::Object(object) => object.clone(),
            other => {
                let mut object = Map::new();
                object.insert("figures".into(), other.clone());
                object
            }
        };
        object.insert("scenario".into(), json!(self.name));
        object.insert("setup".into(), json!(self.setup));
        let targets: Vec<Value> = self
            .rows
            .iter()
            .filter_map(|row| {
                row.met.map(|met| {
                    json!({
                        "measure": row.measure,
                        "target": row.target,
                        "acemux": row.acemux,
                        "met": met,
                    })
                })
            })
            .collect();
        object.insert("targets".into(), json!(targets));
        Value::Object(object)
    }

    /// The scenario as a Markdown section.
    pub fn markdown(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "### `{}`\n\n{}\n", self.name, self.setup);
        text.push_str("| measure | acemux | baseline | acemux ÷ baseline | target | |\n");
        text.push_str("|---|---|---|---|---|---|\n");
        for row in &self.rows {
            let verdict = match row.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} | {} |",
                row.measure, row.acemux, row.baseline, row.ratio, row.target, verdict
            );
        }
        text
    }
}

/// The machine the figures come from: cores and CPU model.
pub fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    json!({ "cores": cores, "cpu": model })
}

/// The 1-minute load average of the machine (NaN when unknown).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    // Civil-from-days (H. Hinnant), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Writes `docs/benchmarks.md` from a run of every scenario.
pub fn write_docs(path: &Path, reports: &[ScenarioReport], all: &Value) -> std::io::Result<()> {
    let machine = &all["machine"];
    let mut text = String::new();
    text.push_str("# Benchmarks\n\n");
    text.push_str(
        "Written by `cargo run --release -p acemux-bench -- all`; do not edit by hand.\n\n",
    );
    let _ = writeln!(
        text,
        "Run on {} with {} cores ({}).\n",
        all["date"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("unknown CPU"),
    );
    text.push_str(
        "Everything runs on loopback on this one machine: the engine emulator, acemux (its \
         own process, 2 runtime worker threads), the baseline and the load generator (one \
         thread, raw HTTP, one small task per viewer). The **baseline** is a plain sender, \
         measured in the same run: it writes the same media bytes at the same pacing \
         straight to its clients, with no proxy, ring or engine session in between; it is \
         what the machine does with nothing in the way. Absolute figures on a shared \
         machine are noise; the ratio to the baseline is the figure to read. For latencies, \
         CPU and memory a ratio above 1× means acemux needs more than the plain sender; for \
         rates and egress a ratio below 1× means it delivers less. CPU is user + system \
         time of the server process per second of wall time (1.0 = one core busy); memory \
         is its resident set (`/proc/<pid>/status`). The sides run one after the other, so \
         on a busy machine their tail latencies can differ by the load of the moment: the \
         load average below says how busy the machine was.\n\n",
    );
    let _ = writeln!(
        text,
        "Load average (1 min) at the start and the end of the run: {} → {}.\n",
        all["load_average"]["start"].as_f64().unwrap_or(f64::NAN),
        all["load_average"]["end"].as_f64().unwrap_or(f64::NAN),
    );
    for report in reports {
        text.push_str(&report.markdown());
        text.push('\n');
    }
    text.push_str("## Raw figures\n\n```json\n");
    text.push_str(&serde_json::to_string_pretty(all).unwrap_or_default());
    text.push_str("\n```\n");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 51.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn dates_are_civil() {
        let date = today();
        assert_eq!(date.len(), 10);
        assert!(date.starts_with("20"));
    }
}
