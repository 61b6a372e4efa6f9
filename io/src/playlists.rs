//! Playlists for media servers: the channel list of `--channels` (an M3U or TOML file,
//! read once at start) and the `acemux m3u rewrite` command. The routes that serve them
//! are in [`crate::http`] (`GET /playlist.m3u`, `POST /playlist/rewrite`); what they
//! read and write is [`acemux_core::channel_list`].

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use acemux_core::channel_list::{
    self, BaseUrl, Channel, Format, Limits, Source, SourceKind, DEFAULT_MAX_CHANNELS,
};
use clap::{Args, Subcommand};

/// Default of `--max-playlist-bytes`: 4 MiB.
pub const DEFAULT_MAX_PLAYLIST_BYTES: usize = 4 << 20;

/// What the playlist routes serve.
#[derive(Clone, Debug)]
pub struct Playlists {
    /// The channels of `--channels`; `None` when none was given (`/playlist.m3u`
    /// answers 404 `no_channels`).
    pub channels: Option<Arc<Vec<Channel>>>,
    /// Largest playlist acemux reads (a `--channels` file, a `POST /playlist/rewrite`
    /// body, `acemux m3u rewrite`'s input).
    pub max_bytes: usize,
}

impl Default for Playlists {
    /// No channel list, the default bound.
    fn default() -> Self {
        Playlists {
            channels: None,
            max_bytes: DEFAULT_MAX_PLAYLIST_BYTES,
        }
    }
}

/// Parses a base URL flag (`--public-url`, `--base`).
pub fn base_url(text: &str) -> Result<BaseUrl, String> {
    BaseUrl::parse(text)
}

/// Parses a playlist format (`ts` or `hls`).
pub fn format(text: &str) -> Result<Format, String> {
    Format::parse(text).ok_or_else(|| format!("{text:?} is not a playlist format: ts or hls"))
}

/// Reads `reader` to its end, at most `max_bytes`: `Ok(None)` when there is more.
pub fn read_bounded(reader: impl Read, max_bytes: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(max_bytes as u64 + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= max_bytes).then_some(bytes))
}

/// How a channel file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    M3u,
    Toml,
}

/// `.m3u` / `.m3u8` is M3U and `.toml` TOML; any other name is M3U when it starts with
/// `#EXTM3U` (after a byte-order mark and whitespace), else TOML.
fn file_kind(path: &Path, bytes: &[u8]) -> FileKind {
    named_kind(path).unwrap_or_else(|| content_kind(bytes))
}

/// The kind a file's name says, if it says one.
fn named_kind(path: &Path) -> Option<FileKind> {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("m3u" | "m3u8") => Some(FileKind::M3u),
        Some("toml") => Some(FileKind::Toml),
        _ => None,
    }
}

/// The kind a file's contents say: M3U when it starts with `#EXTM3U`.
fn content_kind(bytes: &[u8]) -> FileKind {
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = text
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .unwrap_or(text.len());
    if text[start..].starts_with(b"#EXTM3U") {
        FileKind::M3u
    } else {
        FileKind::Toml
    }
}

/// Reads the channel list of `--channels` (at most `max_bytes`, 10,000 channels): an
/// M3U file or a TOML one (see [`parse_channels`]). The error names the file and, for
/// a malformed one, the line.
#[expect(
    clippy::disallowed_methods,
    reason = "start-up: the list is read once before anything is served"
)]
pub fn load_channels(path: &Path, max_bytes: usize) -> Result<Vec<Channel>, String> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot open --channels {shown}: {error}"))?;
    let bytes = read_bounded(file, max_bytes)
        .map_err(|error| format!("cannot read --channels {shown}: {error}"))?
        .ok_or_else(|| {
            format!("--channels {shown} is larger than {max_bytes} bytes (--max-playlist-bytes)")
        })?;
    parse_channels(path, &bytes, max_bytes).map_err(|error| format!("--channels {shown}: {error}"))
}

/// Reads a channel list from the bytes of the file at `path`, M3U or TOML by its name
/// or, failing that, its contents.
///
/// An M3U list is read by [`channel_list::parse_m3u`]. A TOML list is `[[channel]]`
/// tables of `name`, one of `id` (a content id) or `infohash` (40 hex digits each), and
/// optionally `group`, `logo` and `tvg_id`; any other key is an error.
pub fn parse_channels(path: &Path, bytes: &[u8], max_bytes: usize) -> Result<Vec<Channel>, String> {
    let limits = Limits {
        max_bytes,
        max_channels: DEFAULT_MAX_CHANNELS,
        ..Limits::default()
    };
    // A file whose name does not say is read as what it starts like; say so.
    let hint = match named_kind(path) {
        Some(_) => "",
        None => {
            " (read as TOML: the name ends in neither .m3u, .m3u8 nor .toml, and \
                   the file does not start with #EXTM3U)"
        }
    };
    match file_kind(path, bytes) {
        FileKind::M3u => channel_list::parse_m3u(bytes, &limits).map_err(|error| error.to_string()),
        FileKind::Toml => parse_toml(bytes, &limits).map_err(|error| format!("{error}{hint}")),
    }
}

/// The keys a `[[channel]]` table may hold.
const TOML_KEYS: [&str; 6] = ["name", "id", "infohash", "group", "logo", "tvg_id"];

/// Reads `[[channel]]` tables.
fn parse_toml(bytes: &[u8], limits: &Limits) -> Result<Vec<Channel>, String> {
    if bytes.len() > limits.max_bytes {
        return Err(format!(
            "the channel list is {} bytes, over the limit of {}",
            bytes.len(),
            limits.max_bytes
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let line = bytes[..error.valid_up_to()]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count()
            + 1;
        format!("line {line}: invalid UTF-8")
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let line_at = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let line_of = |span: Option<std::ops::Range<usize>>| span.map_or(1, |span| line_at(span.start));
    let document = toml_edit::Document::parse(text)
        .map_err(|error| format!("line {}: {}", line_of(error.span()), error.message().trim()))?;
    let root = document.as_table();
    if let Some((key, item)) = root.iter().find(|(key, _)| *key != "channel") {
        return Err(format!(
            "line {}: unknown key {key:?}: a channel list holds [[channel]] tables",
            line_of(item.span())
        ));
    }
    let Some(item) = root.get("channel") else {
        return Ok(Vec::new());
    };
    let tables = item.as_array_of_tables().ok_or_else(|| {
        format!(
            "line {}: channel must be [[channel]] tables",
            line_of(item.span())
        )
    })?;
    let mut channels = Vec::with_capacity(tables.len().min(limits.max_channels));
    for table in tables.iter() {
        let line = line_of(table.span());
        if channels.len() == limits.max_channels {
            return Err(format!(
                "line {line}: more than {} channels",
                limits.max_channels
            ));
        }
        let mut fields = std::collections::BTreeMap::new();
        for (key, value) in table.iter() {
            let at = line_of(value.span());
            if !TOML_KEYS.contains(&key) {
                return Err(format!(
                    "line {at}: unknown key {key:?} in a [[channel]]; known: {}",
                    TOML_KEYS.join(", ")
                ));
            }
            let text = value
                .as_str()
                .ok_or_else(|| format!("line {at}: {key} must be a string"))?;
            fields.insert(key, (at, text.to_owned()));
        }
        let source = match (fields.remove("id"), fields.remove("infohash")) {
            (Some((at, id)), None) => Source::hash(SourceKind::ContentId, id.trim())
                .map_err(|error| format!("line {at}: {error}"))?,
            (None, Some((at, hash))) => Source::hash(SourceKind::Infohash, hash.trim())
                .map_err(|error| format!("line {at}: {error}"))?,
            (Some((at, _)), Some(_)) => {
                return Err(format!("line {at}: give id or infohash, not both"))
            }
            (None, None) => {
                return Err(format!(
                    "line {line}: a [[channel]] needs id (a content id) or infohash"
                ))
            }
        };
        let (_, name) = fields
            .remove("name")
            .ok_or_else(|| format!("line {line}: a [[channel]] needs a name"))?;
        let mut optional = |key: &str| {
            fields
                .remove(key)
                .map(|(_, value)| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let channel = Channel {
            name: name.trim().to_owned(),
            group: optional("group"),
            logo: optional("logo"),
            tvg_id: optional("tvg_id"),
            source,
        };
        channel
            .check()
            .map_err(|(field, reason)| format!("line {line}: the channel's {field} {reason}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// `acemux m3u`: M3U playlists for media servers.
#[derive(Debug, Args)]
pub struct M3uArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: M3uCommand,
}

/// `acemux m3u` subcommands.
#[derive(Debug, Subcommand)]
pub enum M3uCommand {
    /// Read an M3U playlist on stdin and write it to stdout with every AceStream source
    /// (`acestream://<id>`, `ace://<id>`, an engine's `/ace/getstream?…` or
    /// `/ace/manifest.m3u8?…` URL) pointing at acemux; every other byte is kept.
    Rewrite(RewriteArgs),
}

/// `acemux m3u rewrite` options.
#[derive(Debug, Args)]
pub struct RewriteArgs {
    /// acemux's address as players reach it (`http://host:port[/prefix]`); the rewritten
    /// URLs start with it.
    #[arg(long, env = "ACEMUX_PUBLIC_URL", value_parser = base_url)]
    pub base: BaseUrl,

    /// The route of every rewritten URL: `ts` (`/ace/getstream`) or `hls`
    /// (`/ace/manifest.m3u8`). Without it each URL keeps its own route, and
    /// `acestream://` links become `/ace/getstream`.
    #[arg(long, value_parser = format)]
    pub format: Option<Format>,

    /// Largest playlist read, in bytes.
    #[arg(long, env = "ACEMUX_MAX_PLAYLIST_BYTES", default_value_t = DEFAULT_MAX_PLAYLIST_BYTES)]
    pub max_playlist_bytes: usize,
}

/// What `acemux m3u rewrite` did: lines read, lines rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RewriteSummary {
    /// Lines read.
    pub lines: usize,
    /// Lines rewritten.
    pub rewritten: usize,
}

/// Runs `acemux m3u rewrite`: `input` (at most `--max-playlist-bytes`) rewritten to
/// `output`.
pub fn run_rewrite(
    args: &RewriteArgs,
    input: impl Read,
    mut output: impl Write,
) -> Result<RewriteSummary, String> {
    let bytes = read_bounded(input, args.max_playlist_bytes)
        .map_err(|error| format!("cannot read the playlist: {error}"))?
        .ok_or_else(|| {
            format!(
                "the playlist is larger than {} bytes (--max-playlist-bytes)",
                args.max_playlist_bytes
            )
        })?;
    if bytes.is_empty() {
        return Err("no playlist on stdin".into());
    }
    let rewritten = channel_list::rewrite(&bytes, &args.base, args.format);
    output
        .write_all(&rewritten.bytes)
        .and_then(|()| output.flush())
        .map_err(|error| format!("cannot write the playlist: {error}"))?;
    Ok(RewriteSummary {
        lines: rewritten.lines,
        rewritten: rewritten.rewritten,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

    fn toml(text: &str) -> Result<Vec<Channel>, String> {
        parse_channels(Path::new("channels.toml"), text.as_bytes(), 1 << 20)
    }

    #[test]
    fn a_toml_list_gives_channels() {
        let channels = toml(&format!(
            "# Channels\n[[channel]]\nname = \" Sport 1 \"\nid = \"{HASH}\"\ngroup = \"Sport\"\nlogo = \"http://logo/s.png\"\ntvg_id = \"s1\"\n\n[[channel]]\nname = \"News\"\ninfohash = \"{}\"\n",
            HASH.to_ascii_uppercase()
        ))
        .expect("valid");
        assert_eq!(channels.len(), 2);
        assert_eq!(channels[0].name, "Sport 1");
        assert_eq!(
            channels[0].source,
            Source::hash(SourceKind::ContentId, HASH).expect("hash")
        );
        assert_eq!(channels[0].group.as_deref(), Some("Sport"));
        assert_eq!(channels[0].logo.as_deref(), Some("http://logo/s.png"));
        assert_eq!(channels[0].tvg_id.as_deref(), Some("s1"));
        assert_eq!(channels[1].source.kind, SourceKind::Infohash);
        assert_eq!(channels[1].group, None);
        assert_eq!(toml("# nothing yet\n"), Ok(Vec::new()));
    }

    #[test]
    fn a_bad_toml_list_names_the_line() {
        let channel = |body: &str| format!("# list\n\n[[channel]]\nname = \"A\"\n{body}");
        for (text, line, words) in [
            (
                channel(&format!("id = \"{HASH}\"\nlogo = 3\n")),
                6,
                "logo must be a string",
            ),
            (
                channel(&format!("id = \"{HASH}\"\ncolour = \"red\"\n")),
                6,
                "unknown key \"colour\"",
            ),
            (channel("id = \"abc\"\n"), 5, "40 hex digits"),
            (
                channel(&format!("id = \"{HASH}\"\ninfohash = \"{HASH}\"\n")),
                5,
                "not both",
            ),
            (channel(""), 3, "needs id"),
            (format!("[[channel]]\nid = \"{HASH}\"\n"), 1, "needs a name"),
            (
                channel(&format!("id = \"{HASH}\"\nname = \"B\"\n")),
                6,
                "duplicate key",
            ),
            ("title = \"x\"\n".to_owned(), 1, "unknown key \"title\""),
            (
                "[channel]\nname = \"x\"\n".to_owned(),
                1,
                "[[channel]] tables",
            ),
            (channel("id = \n"), 5, "line 5"),
            (
                channel(&format!("id = \"{HASH}\"\ngroup = \"a\\u0001\"\n")),
                3,
                "control character",
            ),
        ] {
            let error = toml(&text).expect_err("invalid");
            assert!(
                error.starts_with(&format!("line {line}: ")) && error.contains(words),
                "{text:?}: {error}"
            );
        }
        let error = parse_channels(Path::new("a.toml"), b"# x\n\xff", 100).expect_err("not UTF-8");
        assert!(error.starts_with("line 2: invalid UTF-8"), "{error}");
    }

    #[test]
    fn the_kind_comes_from_the_name_then_the_contents() {
        let m3u = b"\xEF\xBB\xBF\n #EXTM3U\n";
        assert_eq!(
            file_kind(Path::new("a.M3U8"), b"[[channel]]"),
            FileKind::M3u
        );
        assert_eq!(file_kind(Path::new("a.toml"), m3u), FileKind::Toml);
        assert_eq!(file_kind(Path::new("channels"), m3u), FileKind::M3u);
        assert_eq!(
            file_kind(Path::new("channels.txt"), b"[[channel]]"),
            FileKind::Toml
        );
        let error =
            parse_channels(Path::new("list.m3u"), b"[[channel]]\n", 100).expect_err("not M3U");
        assert!(error.contains("line 1") && error.contains("M3U"), "{error}");
    }

    #[test]
    fn reads_are_bounded() {
        assert_eq!(
            read_bounded(&b"abcd"[..], 4).expect("read"),
            Some(b"abcd".to_vec())
        );
        assert_eq!(read_bounded(&b"abcde"[..], 4).expect("read"), None);
        let args = RewriteArgs {
            base: base_url("http://acemux:6880").expect("valid"),
            format: None,
            max_playlist_bytes: 64,
        };
        let mut out = Vec::new();
        let input = format!("#EXTM3U\nacestream://{HASH}\n");
        assert_eq!(
            run_rewrite(&args, input.as_bytes(), &mut out),
            Ok(RewriteSummary {
                lines: 2,
                rewritten: 1
            })
        );
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            format!("#EXTM3U\nhttp://acemux:6880/ace/getstream?id={HASH}\n")
        );
        let long = format!("#EXTM3U\n{}", "#\n".repeat(40));
        let error = run_rewrite(&args, long.as_bytes(), Vec::new()).expect_err("too large");
        assert!(error.contains("--max-playlist-bytes"), "{error}");
        assert!(run_rewrite(&args, &b""[..], Vec::new()).is_err());
    }
}
