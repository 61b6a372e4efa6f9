//! The engine's answer to a session request: the JSON envelope
//! `{"response": {…}, "error": …}` of `/ace/getstream?format=json` and
//! `/ace/manifest.m3u8?format=json`.

use serde::Deserialize;

use super::SessionError;

/// A session as the engine described it, before its URLs are checked and re-pointed
/// at the engine's configured address (which the driver does: it owns URL handling).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAnswer {
    /// Where the media is read (for HLS, the playlist), as the engine wrote it.
    pub playback_url: String,
    /// Where the engine reports statistics, as the engine wrote it.
    pub stat_url: String,
    /// Where the session is commanded, as the engine wrote it.
    pub command_url: String,
    /// The engine's id for the playback session.
    pub playback_session_id: String,
    /// Whether the content is live: `true` unless the engine says `false` or `0`.
    pub is_live: bool,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Response {
    playback_url: String,
    stat_url: String,
    command_url: String,
    playback_session_id: String,
    #[serde(default)]
    is_live: Option<serde_json::Value>,
}

impl SessionAnswer {
    /// Decodes an engine's answer. A non-empty `error` is a refusal whatever else the
    /// envelope holds; a body that is not the envelope is a failure.
    pub fn decode(body: &[u8]) -> Result<SessionAnswer, SessionError> {
        let envelope: Envelope = serde_json::from_slice(body)
            .map_err(|error| SessionError::Failed(format!("invalid engine answer: {error}")))?;
        let response = match (envelope.response, envelope.error) {
            (_, Some(error)) if !error.is_empty() => return Err(SessionError::Refused(error)),
            (Some(response), _) => response,
            (None, _) => {
                return Err(SessionError::Refused(
                    "engine answered with neither a session nor an error".into(),
                ))
            }
        };
        let is_live = match response.is_live {
            Some(serde_json::Value::Bool(live)) => live,
            Some(serde_json::Value::Number(n)) => n.as_i64() != Some(0),
            _ => true,
        };
        Ok(SessionAnswer {
            playback_url: response.playback_url,
            stat_url: response.stat_url,
            command_url: response.command_url,
            playback_session_id: response.playback_session_id,
            is_live,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_read_with_its_urls_as_written() {
        let body = br#"{"response": {"playback_url": "http://127.0.0.1:6878/ace/r/abc/1", "stat_url": "http://evil.example/ace/stat/abc", "command_url": "/ace/cmd/abc?x=1", "playback_session_id": "abc", "is_live": 0, "infohash": "ff"}, "error": null}"#;
        let answer = SessionAnswer::decode(body).expect("a session");
        assert_eq!(answer.playback_url, "http://127.0.0.1:6878/ace/r/abc/1");
        assert_eq!(answer.stat_url, "http://evil.example/ace/stat/abc");
        assert_eq!(answer.command_url, "/ace/cmd/abc?x=1");
        assert_eq!(answer.playback_session_id, "abc");
        assert!(!answer.is_live);
    }

    #[test]
    fn liveness_defaults_to_live() {
        let answer = |is_live: &str| {
            let body = format!(
                r#"{{"response": {{"playback_url": "/p", "stat_url": "/s", "command_url": "/c", "playback_session_id": "a"{is_live}}}}}"#
            );
            SessionAnswer::decode(body.as_bytes()).map(|answer| answer.is_live)
        };
        assert_eq!(answer(""), Ok(true));
        assert_eq!(answer(r#", "is_live": null"#), Ok(true));
        assert_eq!(answer(r#", "is_live": "no""#), Ok(true));
        assert_eq!(answer(r#", "is_live": 1"#), Ok(true));
        assert_eq!(answer(r#", "is_live": false"#), Ok(false));
    }

    #[test]
    fn engine_errors_are_refusals_and_nonsense_is_a_failure() {
        let refused = SessionAnswer::decode(br#"{"response": null, "error": "unknown content"}"#);
        assert_eq!(
            refused,
            Err(SessionError::Refused("unknown content".into()))
        );
        let empty = SessionAnswer::decode(br#"{"response": null, "error": ""}"#);
        assert!(matches!(empty, Err(SessionError::Refused(_))));
        for garbage in [
            &b"<html>"[..],
            b"",
            b"null",
            br#"{"response": {"playback_url": 1}}"#,
        ] {
            let failed = SessionAnswer::decode(garbage);
            assert!(matches!(failed, Err(SessionError::Failed(_))), "{failed:?}");
        }
    }
}
