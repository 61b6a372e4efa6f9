//! The engine's session envelope under arbitrary bytes.

use crate::channel::{SessionAnswer, SessionError};
use crate::lifecycle::{EngineAddr, KeyType, SessionInfo, StreamKey, StreamStarted};

/// Decodes `data` as an engine's answer to a session request. A decoded session must
/// say exactly what a canonical envelope of it says, a refusal carries the engine's
/// non-empty message, and the session, registered as a stream, is accepted or refused
/// by validation without panicking.
pub fn engine_envelope(data: &[u8]) {
    match SessionAnswer::decode(data) {
        Ok(answer) => {
            let canonical = serde_json::json!({
                "response": {
                    "playback_url": answer.playback_url,
                    "stat_url": answer.stat_url,
                    "command_url": answer.command_url,
                    "playback_session_id": answer.playback_session_id,
                    "is_live": answer.is_live,
                },
                "error": null,
            });
            let bytes = serde_json::to_vec(&canonical).expect("a value encodes");
            assert_eq!(SessionAnswer::decode(&bytes), Ok(answer.clone()));
            let started = StreamStarted {
                container_id: None,
                engine: EngineAddr {
                    host: "engine".into(),
                    port: 6878,
                },
                stream: StreamKey {
                    key_type: KeyType::ContentId,
                    key: "k".into(),
                },
                session: SessionInfo {
                    playback_session_id: answer.playback_session_id,
                    stat_url: answer.stat_url,
                    command_url: answer.command_url,
                    is_live: answer.is_live,
                },
                labels: Default::default(),
            };
            if started.validate().is_ok() {
                assert!(started
                    .stream_id()
                    .ends_with(&started.session.playback_session_id));
            }
        }
        Err(SessionError::Refused(message)) => assert!(!message.is_empty()),
        Err(SessionError::Failed(message)) => assert!(!message.is_empty()),
        Err(SessionError::Timeout) => panic!("decoding cannot time out"),
    }
}
