//! Engines an orchestrator lists: its answer parsed (both orchestrators' shapes), and
//! what one list source's answers mean for the pool. A good list replaces that
//! source's engines; a bad one (unreachable, malformed) keeps the last good list, so a
//! glitch moves nobody, and each change between good and bad is reported once.

use serde_json::Value;

use crate::lifecycle::EngineAddr;

/// Most engines taken from one list.
pub const MAX_LISTED_ENGINES: usize = 1024;
/// Longest host name or container id taken from a list.
const MAX_FIELD_BYTES: usize = 255;

/// One engine as a list names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedEngine {
    /// Where its HTTP API is.
    pub engine: EngineAddr,
    /// The orchestrator's id of its container (`container_id`, else `id`).
    pub container_id: Option<String>,
    /// Marked draining (the Go orchestrator): no new sessions.
    pub draining: bool,
}

impl From<EngineAddr> for ListedEngine {
    /// An engine named without a container or a draining mark (the command line, DNS).
    fn from(engine: EngineAddr) -> Self {
        ListedEngine {
            engine,
            container_id: None,
            draining: false,
        }
    }
}

/// Parses an orchestrator's engine list: the Python orchestrator's `GET /engines` (a
/// JSON list of `{container_id, host, port, …}`) or the Go orchestrator's
/// `GET /api/v1/engines` (`{id | container_id, host, port, draining, …}`, as a list or
/// under `engines`, `items` or `data`). Every entry needs `host` and `port`; an entry
/// without them is an error, not skipped, so a changed format is noticed.
pub fn parse_engine_list(body: &[u8]) -> Result<Vec<ListedEngine>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|error| format!("not JSON: {error}"))?;
    let entries = match &value {
        Value::Array(entries) => entries,
        Value::Object(object) => ["engines", "items", "data"]
            .iter()
            .find_map(|name| object.get(*name).and_then(Value::as_array))
            .ok_or("an object without an engines, items or data list")?,
        _ => return Err("neither a list nor an object".into()),
    };
    if entries.len() > MAX_LISTED_ENGINES {
        return Err(format!(
            "{} engines listed, more than {MAX_LISTED_ENGINES}",
            entries.len()
        ));
    }
    let mut engines: Vec<ListedEngine> = entries
        .iter()
        .enumerate()
        .map(|(at, entry)| listed(entry).map_err(|error| format!("engine {at}: {error}")))
        .collect::<Result<_, _>>()?;
    engines.sort();
    engines.dedup_by(|a, b| a.engine == b.engine);
    Ok(engines)
}

fn listed(entry: &Value) -> Result<ListedEngine, String> {
    let text = |name: &str| -> Result<Option<String>, String> {
        match entry.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if !text.is_empty() && text.len() <= MAX_FIELD_BYTES => {
                Ok(Some(text.clone()))
            }
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(format!("{name} is not a usable string: {other}")),
        }
    };
    let host = text("host")?.ok_or("no host")?;
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(c))
    {
        return Err(format!("host {host:?} is not a host name or address"));
    }
    let port = match entry.get("port") {
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        _ => None,
    }
    .and_then(|port| u16::try_from(port).ok())
    .filter(|port| *port != 0)
    .ok_or("no port from 1 to 65535")?;
    let container_id = match text("container_id")? {
        Some(id) => Some(id),
        None => text("id")?,
    };
    let draining = match entry.get("draining") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(draining)) => *draining,
        Some(other) => return Err(format!("draining is not true or false: {other}")),
    };
    Ok(ListedEngine {
        engine: EngineAddr { host, port },
        container_id,
        draining,
    })
}

/// What one list source's latest answer means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The engines to use from this source now; `None` keeps what it listed before.
    pub apply: Option<Vec<ListedEngine>>,
    /// A line worth logging: the source turned bad (or bad in another way) or good
    /// again. Repeated failures of the same kind say nothing more.
    pub report: Option<SourceReport>,
}

/// A change of a list source's state, logged once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceReport {
    /// The list cannot be used (first failure, or a different one): the last good
    /// list stays.
    Failing {
        /// Why.
        error: String,
        /// Engines of the last good list, still used.
        kept: usize,
    },
    /// A good list again after failures.
    Recovered {
        /// Engines it names.
        engines: usize,
    },
    /// The set of listed engines changed.
    Changed {
        /// Engines it names now and did not before.
        added: Vec<EngineAddr>,
        /// Engines it named before and does not now.
        removed: Vec<EngineAddr>,
    },
}

/// The state of one list source (`--engines-from URL`).
#[derive(Clone, Debug, Default)]
pub struct ListSource {
    last_good: Option<Vec<ListedEngine>>,
    failing: Option<String>,
}

impl ListSource {
    /// Takes one poll's result: a fetched body, or why none was fetched.
    pub fn observe(&mut self, result: Result<&[u8], String>) -> Observed {
        match result.and_then(parse_engine_list) {
            Ok(engines) => {
                let report = if self.failing.take().is_some() {
                    Some(SourceReport::Recovered {
                        engines: engines.len(),
                    })
                } else {
                    changes(self.last_good.as_deref().unwrap_or_default(), &engines)
                };
                self.last_good = Some(engines.clone());
                Observed {
                    apply: Some(engines),
                    report,
                }
            }
            Err(error) => {
                // Only the kind of failure counts as a change, not its details.
                let kind = error.split(':').next().unwrap_or_default().to_owned();
                let known = self
                    .failing
                    .as_deref()
                    .is_some_and(|failing| failing.split(':').next() == Some(kind.as_str()));
                self.failing = Some(error.clone());
                Observed {
                    apply: None,
                    report: (!known).then(|| SourceReport::Failing {
                        error,
                        kept: self.last_good.as_ref().map_or(0, Vec::len),
                    }),
                }
            }
        }
    }

    /// Whether the latest poll failed.
    pub fn is_failing(&self) -> bool {
        self.failing.is_some()
    }
}

fn changes(before: &[ListedEngine], after: &[ListedEngine]) -> Option<SourceReport> {
    let addrs = |list: &[ListedEngine]| -> std::collections::BTreeSet<EngineAddr> {
        list.iter().map(|listed| listed.engine.clone()).collect()
    };
    let (before, after) = (addrs(before), addrs(after));
    let added: Vec<EngineAddr> = after.difference(&before).cloned().collect();
    let removed: Vec<EngineAddr> = before.difference(&after).cloned().collect();
    (!added.is_empty() || !removed.is_empty()).then_some(SourceReport::Changed { added, removed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> EngineAddr {
        EngineAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn the_python_orchestrators_list_is_read() {
        let body = br#"[
            {"container_id": "c2", "host": "gluetun", "port": 19001, "labels": {}, "streams": []},
            {"container_id": "c1", "host": "gluetun", "port": 19000, "health_status": "healthy"}
        ]"#;
        let engines = parse_engine_list(body).expect("valid");
        assert_eq!(
            engines,
            vec![
                ListedEngine {
                    engine: addr("gluetun", 19000),
                    container_id: Some("c1".into()),
                    draining: false
                },
                ListedEngine {
                    engine: addr("gluetun", 19001),
                    container_id: Some("c2".into()),
                    draining: false
                },
            ]
        );
    }

    #[test]
    fn the_go_orchestrators_list_is_read_bare_or_wrapped() {
        let entries = r#"[
            {"id": "e1", "host": "10.0.0.5", "port": "6878", "draining": true},
            {"id": "e2", "container_id": "c9", "host": "10.0.0.6", "port": 6878, "draining": false}
        ]"#;
        for body in [
            entries.to_owned(),
            format!(r#"{{"engines": {entries}}}"#),
            format!(r#"{{"items": {entries}, "total": 2}}"#),
            format!(r#"{{"data": {entries}}}"#),
        ] {
            let engines = parse_engine_list(body.as_bytes()).expect("valid");
            assert_eq!(engines.len(), 2, "{body}");
            assert_eq!(engines[0].engine, addr("10.0.0.5", 6878));
            assert_eq!(engines[0].container_id.as_deref(), Some("e1"));
            assert!(engines[0].draining);
            assert_eq!(engines[1].container_id.as_deref(), Some("c9"));
            assert!(!engines[1].draining);
        }
    }

    #[test]
    fn malformed_lists_are_errors_that_say_why() {
        for (body, why) in [
            (&b"<html>"[..], "not JSON"),
            (b"{\"engines\": 3}", "without an engines"),
            (b"\"x\"", "neither"),
            (b"[{\"port\": 1}]", "engine 0: no host"),
            (b"[{\"host\": \"a\"}]", "no port"),
            (b"[{\"host\": \"a\", \"port\": 70000}]", "no port"),
            (b"[{\"host\": \"a b\", \"port\": 1}]", "not a host"),
            (
                b"[{\"host\": \"a\", \"port\": 1, \"draining\": \"yes\"}]",
                "draining",
            ),
        ] {
            let error = parse_engine_list(body).expect_err("malformed");
            assert!(error.contains(why), "{error:?} should say {why:?}");
        }
        let many = format!("[{}]", vec![r#"{"host":"a","port":1}"#; 1025].join(","));
        assert!(parse_engine_list(many.as_bytes()).is_err());
        // The same address twice is one engine.
        let twice = br#"[{"host":"a","port":1},{"host":"a","port":1}]"#;
        assert_eq!(parse_engine_list(twice).expect("valid").len(), 1);
    }

    #[test]
    fn a_bad_answer_keeps_the_last_good_list_and_is_reported_once() {
        let mut source = ListSource::default();
        let one = br#"[{"host":"a","port":1}]"#;
        let two = br#"[{"host":"a","port":1},{"host":"b","port":2}]"#;
        let first = source.observe(Ok(one));
        assert_eq!(first.apply.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            first.report,
            Some(SourceReport::Changed {
                added: vec![addr("a", 1)],
                removed: vec![]
            })
        );
        // The same list again: nothing to say.
        assert_eq!(source.observe(Ok(one)).report, None);
        let down = source.observe(Err("unreachable: connection refused".into()));
        assert_eq!(down.apply, None);
        assert!(matches!(
            down.report,
            Some(SourceReport::Failing { kept: 1, .. })
        ));
        assert!(source.is_failing());
        // The same kind of failure again, in other words: silent.
        let again = source.observe(Err("unreachable: timed out".into()));
        assert_eq!((again.apply, again.report), (None, None));
        // Another kind: reported.
        let garbled = source.observe(Ok(b"<html>"));
        assert!(matches!(garbled.report, Some(SourceReport::Failing { .. })));
        let back = source.observe(Ok(two));
        assert_eq!(back.report, Some(SourceReport::Recovered { engines: 2 }));
        assert_eq!(back.apply.as_ref().map(Vec::len), Some(2));
        let shrunk = source.observe(Ok(br#"[{"host":"b","port":2}]"#));
        assert_eq!(
            shrunk.report,
            Some(SourceReport::Changed {
                added: vec![],
                removed: vec![addr("a", 1)]
            })
        );
    }
}
