//! What a playlist line names: an AceStream source URL recognised, and written back as
//! an acemux player URL.

use crate::lifecycle::MAX_ID_BYTES;

use super::Format;

/// Length of a content id or infohash: a SHA-1 in hex.
pub const HASH_LEN: usize = 40;

/// The player parameters a source URL keeps (besides the one that names the content):
/// the ones acemux takes and hands on to the engine. Every other parameter (the
/// engine's `pid`, tokens, …) is dropped.
pub const KEPT_PARAMS: [&str; 3] = ["file_indexes", "live_delay", "seekback"];

/// Longest value of a kept parameter, in bytes.
const MAX_PARAM_BYTES: usize = 64;

/// The parameter that names the content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A content id (`id=`, also spelled `content_id=`; `acestream://<id>`).
    ContentId,
    /// A torrent infohash (`infohash=`).
    Infohash,
}

impl SourceKind {
    /// The name of the player parameter acemux writes for it.
    pub fn param(self) -> &'static str {
        match self {
            SourceKind::ContentId => "id",
            SourceKind::Infohash => "infohash",
        }
    }
}

/// What a channel plays: the content and the parameters handed on to the engine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// Which parameter names the content.
    pub kind: SourceKind,
    /// The content id or infohash, as written (1 to 512 bytes, no whitespace or
    /// control characters).
    pub key: String,
    /// Kept parameters ([`KEPT_PARAMS`]), decoded, in the order first written (a
    /// repeated name keeps its last value, as acemux reads it).
    pub params: Vec<(String, String)>,
}

/// A source URL recognised in a playlist line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recognised {
    /// What it plays.
    pub source: Source,
    /// The player route it named: `Some(Ts)` for `/ace/getstream`, `Some(Hls)` for
    /// `/ace/manifest.m3u8`, `None` for `acestream://` and `ace://`.
    pub route: Option<Format>,
}

impl Source {
    /// A content id or infohash given alone (a channel file's `id` / `infohash`): 40
    /// hex digits.
    pub fn hash(kind: SourceKind, key: &str) -> Result<Source, String> {
        if key.len() == HASH_LEN && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Source {
                kind,
                key: key.to_owned(),
                params: Vec::new(),
            })
        } else {
            Err(format!(
                "{} must be {HASH_LEN} hex digits, not {key:?}",
                match kind {
                    SourceKind::ContentId => "a content id",
                    SourceKind::Infohash => "an infohash",
                }
            ))
        }
    }

    /// The query of acemux's player URL for this source: `id=<key>` (or
    /// `infohash=<key>`) and the kept parameters, percent-encoded.
    pub fn query(&self) -> String {
        let mut query = format!("{}={}", self.kind.param(), encode(&self.key));
        for (name, value) in &self.params {
            query.push('&');
            query.push_str(name);
            query.push('=');
            query.push_str(&encode(value));
        }
        query
    }
}

/// Recognises `text` (one playlist line, whitespace already trimmed) as an AceStream
/// source: `acestream://<id>` or `ace://<id>` (40 hex digits), or an
/// `http(s)://host[:port][/prefix]/ace/getstream?…` or `…/ace/manifest.m3u8?…` URL (an
/// engine's, or acemux's own) naming exactly one of `id`, `content_id`, `infohash`.
/// Anything else, `url=` and `magnet=` sources included, is not recognised.
pub fn recognise(text: &str) -> Option<Recognised> {
    if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    if let Some(id) = strip_prefix_ignore_case(text, "acestream://")
        .or_else(|| strip_prefix_ignore_case(text, "ace://"))
    {
        let source = Source::hash(SourceKind::ContentId, id).ok()?;
        return Some(Recognised {
            source,
            route: None,
        });
    }
    let rest = strip_prefix_ignore_case(text, "http://")
        .or_else(|| strip_prefix_ignore_case(text, "https://"))?;
    let end_of_authority = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if end_of_authority == 0 {
        return None;
    }
    let after = &rest[end_of_authority..];
    let without_fragment = after.split_once('#').map_or(after, |(before, _)| before);
    let (path, query) = without_fragment.split_once('?')?;
    let route = if path.ends_with("/ace/getstream") {
        Format::Ts
    } else if path.ends_with("/ace/manifest.m3u8") {
        Format::Hls
    } else {
        return None;
    };
    let source = from_query(query)?;
    Some(Recognised {
        source,
        route: Some(route),
    })
}

/// The source a player query names, or `None` when it names none, several, or one
/// acemux would not take.
fn from_query(query: &str) -> Option<Source> {
    let mut named: Option<(SourceKind, String)> = None;
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name)?;
        let kind = match name.as_str() {
            "id" | "content_id" => Some(SourceKind::ContentId),
            "infohash" => Some(SourceKind::Infohash),
            // Sources acemux takes only with --allow-url-sources: left as they are.
            "url" | "magnet" => return None,
            _ => None,
        };
        if let Some(kind) = kind {
            if named.is_some() {
                return None;
            }
            let key = decode(value)?;
            let valid = !key.is_empty()
                && key.len() <= MAX_ID_BYTES
                && !key.chars().any(|c| c.is_whitespace() || c.is_control());
            if !valid {
                return None;
            }
            named = Some((kind, key));
        } else if KEPT_PARAMS.contains(&name.as_str()) {
            let value = decode(value)?;
            if value.len() > MAX_PARAM_BYTES || value.chars().any(char::is_control) {
                return None;
            }
            match params.iter_mut().find(|(kept, _)| *kept == name) {
                Some(kept) => kept.1 = value,
                None => params.push((name, value)),
            }
        }
    }
    let (kind, key) = named?;
    Some(Source { kind, key, params })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Percent-decodes a query component (`+` is a space, as form encoding has it); `None`
/// for a malformed escape or a result that is not UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = bytes.get(at + 1..at + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                at += 3;
            }
            b'+' => {
                decoded.push(b' ');
                at += 1;
            }
            byte => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// Percent-encodes every byte but the unreserved characters and `,` (which lists of
/// file indexes use).
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~,".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789ABCDEF01234567";

    fn source(kind: SourceKind, key: &str, params: &[(&str, &str)]) -> Source {
        Source {
            kind,
            key: key.to_owned(),
            params: params
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn acestream_links_name_a_content_id_of_forty_hex_digits() {
        for text in [
            format!("acestream://{HASH}"),
            format!("ACESTREAM://{HASH}"),
            format!("ace://{HASH}"),
        ] {
            assert_eq!(
                recognise(&text),
                Some(Recognised {
                    source: source(SourceKind::ContentId, HASH, &[]),
                    route: None
                }),
                "{text}"
            );
        }
        for text in [
            "acestream://".to_owned(),
            format!("acestream://{}", &HASH[1..]),
            format!("acestream://{HASH}0"),
            format!("acestream://{HASH}/"),
            format!("acestream://{}x", &HASH[1..]),
            format!("acestreams://{HASH}"),
        ] {
            assert_eq!(recognise(&text), None, "{text}");
        }
    }

    #[test]
    fn engine_and_acemux_urls_keep_the_source_and_the_player_parameters_only() {
        let recognised = recognise(&format!(
            "http://127.0.0.1:6878/ace/getstream?pid=7&content_id={HASH}&file_indexes=0%2C2&sid=x&live_delay=5&file_indexes=1#frag"
        ))
        .expect("recognised");
        assert_eq!(recognised.route, Some(Format::Ts));
        assert_eq!(
            recognised.source,
            source(
                SourceKind::ContentId,
                HASH,
                &[("file_indexes", "1"), ("live_delay", "5")]
            )
        );
        assert_eq!(
            recognised.source.query(),
            format!("id={HASH}&file_indexes=1&live_delay=5")
        );
        let hls = recognise("HTTPS://tv.example/acemux/ace/manifest.m3u8?infohash=abc")
            .expect("recognised");
        assert_eq!(hls.route, Some(Format::Hls));
        assert_eq!(hls.source, source(SourceKind::Infohash, "abc", &[]));
        let spaced = recognise("http://e/ace/getstream?id=a%2Fb").expect("recognised");
        assert_eq!(spaced.source.key, "a/b");
        assert_eq!(spaced.source.query(), "id=a%2Fb");
    }

    #[test]
    fn anything_else_is_not_a_source() {
        for text in [
            "",
            "#EXTINF:-1,Name",
            "http://example.com/stream.ts",
            "http://e/ace/getstream",
            "http://e/ace/getstream?pid=1",
            "http://e/ace/getstream?id=a&infohash=b",
            "http://e/ace/getstream?id=a&id=b",
            "http://e/ace/getstream?id=",
            "http://e/ace/getstream?id=a%20b",
            "http://e/ace/getstream?id=%zz",
            "http://e/ace/getstream?id=%FF",
            "http://e/ace/getstream?url=http%3A%2F%2Fx%2Fa.torrent",
            "http://e/ace/getstream?id=a&magnet=magnet%3A%3Fxt",
            "http://e/ace/getstream/?id=a",
            "http:///ace/getstream?id=a",
            "http://e/ace/getstream?id=a b",
            "ftp://e/ace/getstream?id=a",
            "/ace/getstream?id=a",
        ] {
            assert_eq!(recognise(text), None, "{text}");
        }
        let long = "a".repeat(MAX_ID_BYTES + 1);
        assert_eq!(
            recognise(&format!("http://e/ace/getstream?id={long}")),
            None
        );
    }

    #[test]
    fn hashes_alone_are_forty_hex_digits() {
        assert!(Source::hash(SourceKind::Infohash, HASH).is_ok());
        assert!(Source::hash(SourceKind::ContentId, &HASH[1..]).is_err());
        assert!(Source::hash(SourceKind::ContentId, &format!("{}g", &HASH[1..])).is_err());
    }

    #[test]
    fn encoding_round_trips() {
        for text in ["a b&c=d/é", "0,2", "%+"] {
            assert_eq!(decode(&encode(text)).as_deref(), Some(text));
        }
        assert_eq!(encode("0,2"), "0,2");
    }
}
