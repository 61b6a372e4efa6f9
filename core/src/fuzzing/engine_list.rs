//! An orchestrator's engine list under arbitrary bytes.

use crate::channel::{parse_engine_list, ListSource};

/// Parses `data` as an engine list. A list that parses names each engine once, in
/// order, with a usable host and port, and says the same when written back in the
/// Python orchestrator's shape; a list source fed it uses it exactly when it parses,
/// and keeps its last good list otherwise.
pub fn engine_list(data: &[u8]) {
    let good = br#"[{"host": "gluetun", "port": 19000}]"#;
    let mut source = ListSource::default();
    let first = source.observe(Ok(good));
    assert!(first.apply.is_some(), "a good list is used");
    let parsed = parse_engine_list(data);
    let observed = source.observe(Ok(data));
    assert_eq!(observed.apply, parsed.clone().ok());
    assert_eq!(source.is_failing(), parsed.is_err());
    let Ok(engines) = parsed else {
        return;
    };
    for pair in engines.windows(2) {
        assert!(pair[0].engine < pair[1].engine, "sorted, each engine once");
    }
    for listed in &engines {
        assert_ne!(listed.engine.port, 0);
        assert!(!listed.engine.host.is_empty());
        assert!(!listed.engine.host.chars().any(char::is_whitespace));
    }
    let written: Vec<serde_json::Value> = engines
        .iter()
        .map(|listed| {
            serde_json::json!({
                "host": listed.engine.host,
                "port": listed.engine.port,
                "container_id": listed.container_id,
                "draining": listed.draining,
            })
        })
        .collect();
    let bytes = serde_json::to_vec(&written).expect("a value encodes");
    assert_eq!(parse_engine_list(&bytes), Ok(engines));
}
