//! What a player may ask for, and how: the stream key and the parameters of the player
//! routes (as the engines take them), cross-origin answers, and whether `getstream`
//! answers TS or sends players to the HLS playlist.

use std::collections::BTreeMap;

use acemux_core::lifecycle::{KeyType, MAX_ID_BYTES};
use http::StatusCode;

use super::cors::CorsPolicy;
use super::error::ApiError;
use crate::engine::{EngineParams, StreamFormat};
use crate::proxy::ChannelKey;

/// Longest `file_indexes=` value.
const MAX_FILE_INDEXES_BYTES: usize = 64;
/// Largest `live_delay=` / `seekback=`, in seconds (a day).
const MAX_DELAY_SECS: u32 = 86_400;

/// The parameters that name what to play, and the key type each names. A request
/// gives exactly one.
const SOURCES: [(&str, KeyType); 5] = [
    ("id", KeyType::ContentId),
    ("content_id", KeyType::ContentId),
    ("infohash", KeyType::Infohash),
    ("url", KeyType::Url),
    ("magnet", KeyType::Magnet),
];

/// What `/ace/getstream` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamMode {
    /// The channel's MPEG-TS.
    #[default]
    Ts,
    /// A redirect (302) to the HLS playlist of the same channel, as the orchestrator's
    /// HLS mode does.
    Hls,
}

/// The rules of the player routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlayerRules {
    /// Which web origins may read the answers.
    pub cors: CorsPolicy,
    /// Whether `url=` and `magnet=` are taken (they make the engine fetch an address).
    pub allow_url_sources: bool,
    /// What `/ace/getstream` answers.
    pub stream_mode: StreamMode,
}

/// The channel a player request names: exactly one source (`id` / `content_id`,
/// `infohash`, `url`, `magnet`), trimmed, a hash in lower case, plus the parameters
/// handed on to the engine (`file_indexes`, `live_delay` / `seekback`). Bad values get
/// 400 `invalid_query`; `url` and `magnet` without `--allow-url-sources` 403
/// `source_not_allowed`.
pub(super) fn channel_key(
    params: &BTreeMap<String, String>,
    format: StreamFormat,
    rules: &PlayerRules,
) -> Result<ChannelKey, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_query", message);
    let names = || {
        SOURCES
            .iter()
            .map(|(name, _)| format!("{name}="))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let given: Vec<(&str, KeyType, &str)> = SOURCES
        .iter()
        .filter_map(|&(name, key_type)| {
            params.get(name).map(|value| (name, key_type, value.trim()))
        })
        .collect();
    let (name, key_type, key) = match given.as_slice() {
        [one] => *one,
        [] => {
            return Err(invalid(format!(
                "missing the stream: give one of {}",
                names()
            )))
        }
        [..] => {
            let named: Vec<&str> = given.iter().map(|(name, _, _)| *name).collect();
            return Err(invalid(format!(
                "give exactly one of {}, not {}",
                names(),
                named.join(" and ")
            )));
        }
    };
    if matches!(key_type, KeyType::Url | KeyType::Magnet) && !rules.allow_url_sources {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "source_not_allowed",
            format!(
                "{name}= makes the engine fetch an address a player chose; \
                 acemux takes it only with --allow-url-sources"
            ),
        ));
    }
    if key.is_empty()
        || key.len() > MAX_ID_BYTES
        || key.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid(format!(
            "{name}= must be 1 to {MAX_ID_BYTES} bytes without spaces or control characters"
        )));
    }
    let key = match key_type {
        // Hashes name the same content in either case.
        KeyType::ContentId | KeyType::Infohash if key.bytes().all(|b| b.is_ascii_hexdigit()) => {
            key.to_ascii_lowercase()
        }
        KeyType::Url if !(key.starts_with("http://") || key.starts_with("https://")) => {
            return Err(invalid("url= must be an http:// or https:// URL".into()));
        }
        KeyType::Magnet if !key.to_ascii_lowercase().starts_with("magnet:?") => {
            return Err(invalid("magnet= must be a magnet: link".into()));
        }
        _ => key.to_owned(),
    };
    Ok(ChannelKey {
        format,
        key_type,
        key,
        params: engine_params(params)?,
    })
}

/// The parameters handed on to the engine.
fn engine_params(params: &BTreeMap<String, String>) -> Result<EngineParams, ApiError> {
    let invalid = |message: String| ApiError::bad_request("invalid_query", message);
    let file_indexes = match params.get("file_indexes").map(|value| value.trim()) {
        None => None,
        Some(indexes) => {
            let valid = !indexes.is_empty()
                && indexes.len() <= MAX_FILE_INDEXES_BYTES
                && indexes
                    .split(',')
                    .all(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()));
            if !valid {
                return Err(invalid(format!(
                    "file_indexes= must be file indexes separated by commas (e.g. 0 or 0,2), \
                     at most {MAX_FILE_INDEXES_BYTES} bytes"
                )));
            }
            Some(indexes.to_owned())
        }
    };
    let mut delay = None;
    for name in ["live_delay", "seekback"] {
        let Some(value) = params.get(name) else {
            continue;
        };
        let seconds = value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|seconds| *seconds <= MAX_DELAY_SECS)
            .ok_or_else(|| {
                invalid(format!(
                    "{name}= must be whole seconds from 0 to {MAX_DELAY_SECS}, not {value:?}"
                ))
            })?;
        if delay.is_some() {
            return Err(invalid(
                "give either live_delay= or seekback= (they are the same), not both".into(),
            ));
        }
        delay = Some((name, seconds));
    }
    Ok(EngineParams {
        file_indexes,
        delay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(query: &[(&str, &str)], rules: &PlayerRules) -> Result<ChannelKey, ApiError> {
        let params = query
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        channel_key(&params, StreamFormat::Ts, rules)
    }

    fn code(result: Result<ChannelKey, ApiError>) -> (u16, &'static str) {
        let error = result.expect_err("refused");
        (error.status.as_u16(), error.code)
    }

    #[test]
    fn one_source_names_the_channel_and_hashes_ignore_case() {
        let rules = PlayerRules::default();
        let hash = "ABCDEF0123456789abcdef0123456789ABCDEF01";
        let by_id = key(&[("id", hash)], &rules).expect("valid");
        let by_content_id = key(&[("content_id", &format!("  {hash} "))], &rules).expect("valid");
        assert_eq!(by_id, by_content_id);
        assert_eq!(by_id.key, hash.to_ascii_lowercase());
        assert_eq!(by_id.key_type, KeyType::ContentId);
        let infohash = key(&[("infohash", hash)], &rules).expect("valid");
        assert_eq!(infohash.key_type, KeyType::Infohash);
        assert_ne!(infohash, by_id);
        // Names that are not hashes keep their case.
        assert_eq!(key(&[("id", "Live")], &rules).expect("valid").key, "Live");
        assert_eq!(code(key(&[], &rules)), (400, "invalid_query"));
        assert_eq!(
            code(key(&[("id", "a"), ("infohash", "b")], &rules)),
            (400, "invalid_query")
        );
        assert_eq!(code(key(&[("id", "  ")], &rules)), (400, "invalid_query"));
        assert_eq!(code(key(&[("id", "a b")], &rules)), (400, "invalid_query"));
    }

    #[test]
    fn url_and_magnet_need_the_flag_and_their_own_shape() {
        let closed = PlayerRules::default();
        let open = PlayerRules {
            allow_url_sources: true,
            ..PlayerRules::default()
        };
        let url = [("url", "http://tracker.example/a.torrent")];
        let magnet = [("magnet", "magnet:?xt=urn:btih:abc")];
        assert_eq!(code(key(&url, &closed)), (403, "source_not_allowed"));
        assert_eq!(code(key(&magnet, &closed)), (403, "source_not_allowed"));
        assert_eq!(key(&url, &open).expect("valid").key_type, KeyType::Url);
        assert_eq!(
            key(&magnet, &open).expect("valid").key_type,
            KeyType::Magnet
        );
        assert_eq!(
            code(key(&[("url", "file:///etc/passwd")], &open)),
            (400, "invalid_query")
        );
        assert_eq!(
            code(key(&[("magnet", "xt=urn:btih:abc")], &open)),
            (400, "invalid_query")
        );
    }

    #[test]
    fn engine_parameters_are_checked_and_make_distinct_channels() {
        let rules = PlayerRules::default();
        let plain = key(&[("id", "a")], &rules).expect("valid");
        let file = key(&[("id", "a"), ("file_indexes", "0,2")], &rules).expect("valid");
        let delayed = key(&[("id", "a"), ("live_delay", "30")], &rules).expect("valid");
        let seekback = key(&[("id", "a"), ("seekback", "30")], &rules).expect("valid");
        assert_ne!(plain, file);
        assert_ne!(plain, delayed);
        assert_eq!(file.params.query(), "&file_indexes=0%2C2");
        assert_eq!(delayed.params.query(), "&live_delay=30");
        assert_eq!(seekback.params.query(), "&seekback=30");
        assert_eq!(file.to_string(), "content_id:a[file_indexes=0,2]");
        for bad in [
            &[("id", "a"), ("file_indexes", "x")][..],
            &[("id", "a"), ("file_indexes", "1,,2")],
            &[("id", "a"), ("file_indexes", "")],
            &[("id", "a"), ("live_delay", "-1")],
            &[("id", "a"), ("live_delay", "86401")],
            &[("id", "a"), ("seekback", "soon")],
            &[("id", "a"), ("live_delay", "5"), ("seekback", "5")],
        ] {
            assert_eq!(code(key(bad, &rules)), (400, "invalid_query"), "{bad:?}");
        }
    }
}
