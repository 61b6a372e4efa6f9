//! What the registry takes in: each field's validation, and the JSON bodies of the
//! event API.

use super::unit::{ended, refuse_end, refuse_start, registry, started};
use super::*;
use crate::lifecycle::{MAX_ID_BYTES, MAX_LABELS, MAX_TEXT_BYTES};

// ---------------------------------------------------------------- validation

const EMPTY: &str = "must not be empty";
const CONTROL: &str = "contains control characters";
const LONG_ID: &str = "longer than 512 bytes";
const LONG_TEXT: &str = "longer than 2048 bytes";

#[test]
fn invalid_starts_are_refused_naming_the_field() {
    fn label(name: &'static str, value: &str) -> impl Fn(&mut StreamStarted) {
        let value = value.to_owned();
        move |s| drop(s.labels.insert(name.into(), value.clone()))
    }
    let long_id = "x".repeat(MAX_ID_BYTES + 1);
    let long_url = "x".repeat(MAX_TEXT_BYTES + 1);
    let mut registry = registry();
    started(&mut registry, secs(1), start("def", "p0", Some("c1")));
    drain(&mut registry);
    let base = start("abc", "p1", Some("c1"));
    let mut refuse = |field, reason, edit: &dyn Fn(&mut StreamStarted)| {
        let mut invalid = base.clone();
        edit(&mut invalid);
        let error = LifecycleError::Invalid { field, reason };
        refuse_start(&mut registry, secs(2), invalid, error);
    };
    refuse("stream.key", EMPTY, &|s| s.stream.key.clear());
    refuse("stream.key", CONTROL, &|s| s.stream.key.push('\n'));
    refuse("stream.key", LONG_ID, &|s| {
        s.stream.key.clone_from(&long_id)
    });
    let session_id = "session.playback_session_id";
    refuse(session_id, EMPTY, &|s| {
        s.session.playback_session_id.clear()
    });
    let container = |id: &str| Some(id.to_owned());
    refuse("container_id", CONTROL, &|s| {
        s.container_id = container("c\u{7f}")
    });
    refuse("container_id", LONG_ID, &|s| {
        s.container_id = container(&long_id)
    });
    refuse("container_id", EMPTY, &|s| s.container_id = container(""));
    refuse("engine.port", "must be 1..=65535", &|s| s.engine.port = 0);
    refuse("engine.host", EMPTY, &|s| s.engine.host.clear());
    let stat_url = "session.stat_url";
    refuse(stat_url, LONG_TEXT, &|s| {
        s.session.stat_url.clone_from(&long_url)
    });
    let command_url = "session.command_url";
    refuse(command_url, CONTROL, &|s| s.session.command_url.push('\0'));
    let too_many = (0..=MAX_LABELS).map(|n| (n.to_string(), String::new()));
    let too_many: BTreeMap<String, String> = too_many.collect();
    refuse("labels", "too many labels", &|s| {
        s.labels.clone_from(&too_many)
    });
    refuse("labels value", CONTROL, &label("note", "a\tb"));
    refuse("labels.stream_id", EMPTY, &label("stream_id", ""));
    refuse("labels.stream_id", LONG_ID, &label("stream_id", &long_id));
    // The derived id "{key}|{session}" is a stream id too, and must fit in an end.
    refuse("stream_id", LONG_ID, &|s| {
        s.stream.key = "k".repeat(300);
        s.session.playback_session_id = "p".repeat(300);
    });

    // Refusals leave no gap in the numbering.
    started(&mut registry, secs(3), base);
    assert_eq!(drain(&mut registry)[0].seq, 2);
}

#[test]
fn invalid_ends_are_refused_naming_the_field() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    drain(&mut registry);
    let mut refuse = |end, field, reason| {
        let error = LifecycleError::Invalid { field, reason };
        refuse_end(&mut registry, secs(2), end, error);
    };
    refuse(end_id("", None), "stream_id", EMPTY);
    refuse(
        end_id(&"x".repeat(MAX_ID_BYTES + 1), None),
        "stream_id",
        LONG_ID,
    );
    refuse(end_id("abc|p1", Some("c\t1")), "container_id", CONTROL);
    refuse(end_container(""), "container_id", EMPTY);
    let reason = Some("r".repeat(MAX_TEXT_BYTES + 1).into());
    refuse(
        StreamEnded {
            reason,
            ..end_id("abc|p1", None)
        },
        "reason",
        LONG_TEXT,
    );
}

#[test]
fn fields_at_their_limits_are_accepted() {
    let mut registry = registry();
    let session = "p1";
    // The derived id is exactly MAX_ID_BYTES long.
    let key = "k".repeat(MAX_ID_BYTES - 1 - session.len());
    let mut start = start(&key, session, Some(&"c".repeat(MAX_ID_BYTES)));
    start.session.stat_url = "u".repeat(MAX_TEXT_BYTES);
    start.labels = (0..MAX_LABELS)
        .map(|n| (n.to_string(), "v".into()))
        .collect();
    let id = started(&mut registry, secs(1), start).id;
    assert_eq!(id.len(), MAX_ID_BYTES);
    // ... and the stream can be ended by that id.
    assert_eq!(ended(&mut registry, secs(2), end_id(&id, None)).id, id);
}

// ---------------------------------------------------------------------- JSON

const ORCHESTRATOR_START: &str = r#"{"container_id":"c1","engine":{"host":"gluetun","port":19000},"stream":{"key_type":"content_id","key":"abc"},"session":{"playback_session_id":"p1","stat_url":"http://x/stat","command_url":"http://x/cmd","is_live":1},"labels":{},"extra_unknown_field":true}"#;

#[test]
fn orchestrator_start_body_deserializes_ignoring_unknown_fields() {
    let start: StreamStarted = serde_json::from_str(ORCHESTRATOR_START).unwrap();
    let expected = StreamStarted {
        container_id: Some("c1".into()),
        engine: EngineAddr {
            host: "gluetun".into(),
            port: 19000,
        },
        stream: StreamKey {
            key_type: KeyType::ContentId,
            key: "abc".into(),
        },
        session: SessionInfo {
            playback_session_id: "p1".into(),
            stat_url: "http://x/stat".into(),
            command_url: "http://x/cmd".into(),
            is_live: true,
        },
        labels: BTreeMap::new(),
    };
    assert_eq!(start, expected);
    assert_eq!(started(&mut registry(), secs(1), start).id, "abc|p1");
}

fn with_is_live(value: &str) -> Result<StreamStarted, serde_json::Error> {
    serde_json::from_str(
        &ORCHESTRATOR_START.replace(r#""is_live":1"#, &format!(r#""is_live":{value}"#)),
    )
}

#[test]
fn is_live_accepts_zero_one_true_and_false() {
    for (value, expected) in [("0", false), ("1", true), ("false", false), ("true", true)] {
        assert_eq!(
            with_is_live(value).unwrap().session.is_live,
            expected,
            "is_live {value}"
        );
    }
}

#[test]
fn is_live_rejects_other_values() {
    for value in ["2", "-1", r#""1""#, "null"] {
        assert!(with_is_live(value).is_err(), "is_live {value} was accepted");
    }
}

#[test]
fn start_body_without_engine_is_rejected() {
    let body = ORCHESTRATOR_START.replace(r#""engine":{"host":"gluetun","port":19000},"#, "");
    let error = serde_json::from_str::<StreamStarted>(&body).unwrap_err();
    assert!(error.to_string().contains("engine"), "{error}");
}

#[test]
fn end_body_fields_are_all_optional() {
    let empty: StreamEnded = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, StreamEnded::default());
    let body = r#"{"stream_id":"abc|p1","container_id":"c1","reason":"eof","extra":[1]}"#;
    let full: StreamEnded = serde_json::from_str(body).unwrap();
    let expected = StreamEnded {
        container_id: Some("c1".into()),
        stream_id: Some("abc|p1".into()),
        reason: Some("eof".into()),
    };
    assert_eq!(full, expected);
    let only_container: StreamEnded = serde_json::from_str(r#"{"container_id":"c1"}"#).unwrap();
    assert_eq!(only_container, end_container("c1"));
}
