//! Reading a channel list from an M3U file, and writing one for media servers.

use std::collections::BTreeMap;

use super::rewrite::split_lines;
use super::source::recognise;
use super::{BaseUrl, Channel, ChannelListError, Format, Limits};

const BOM: &str = "\u{feff}";

/// The attributes of an `#EXTINF` line and the name after its comma.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Extinf {
    /// Attributes by lower-case name (a repeated one keeps its last value).
    pub(crate) attributes: BTreeMap<String, String>,
    /// The display name (trimmed).
    pub(crate) name: String,
}

/// Reads what follows `#EXTINF:`: a duration, attributes (`name="value"` or
/// `name=value`, separated by whitespace), a comma, the name.
pub(crate) fn parse_extinf(text: &str) -> Result<Extinf, &'static str> {
    let mut rest = text.trim_start();
    // The duration (-1 for live), up to the first space or comma.
    let duration_end = rest.find([' ', '\t', ',']).unwrap_or(rest.len());
    rest = &rest[duration_end..];
    let mut attributes = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(name) = rest.strip_prefix(',') {
            return Ok(Extinf {
                attributes,
                name: name.trim().to_owned(),
            });
        }
        if rest.is_empty() {
            return Err("no comma before the channel's name");
        }
        let key_end = rest.find(['=', ' ', '\t', ',']).unwrap_or(rest.len());
        let key = rest[..key_end].to_ascii_lowercase();
        rest = &rest[key_end..];
        let Some(value_text) = rest.strip_prefix('=') else {
            // A bare word: no value to keep.
            continue;
        };
        let value = if let Some(quoted) = value_text.strip_prefix('"') {
            let (value, after) = quoted
                .split_once('"')
                .ok_or("an attribute's quoted value is not closed")?;
            rest = after;
            value
        } else {
            let end = value_text
                .find([' ', '\t', ','])
                .unwrap_or(value_text.len());
            rest = &value_text[end..];
            &value_text[..end]
        };
        if key.is_empty() {
            return Err("an attribute has no name");
        }
        attributes.insert(key, value.to_owned());
    }
}

/// Reads a channel list from an M3U file (see [`parse_m3u`](super::parse_m3u)).
pub(crate) fn parse(input: &[u8], limits: &Limits) -> Result<Vec<Channel>, ChannelListError> {
    if input.len() > limits.max_bytes {
        return Err(ChannelListError::TooLarge {
            len: input.len(),
            limit: limits.max_bytes,
        });
    }
    let mut channels = Vec::new();
    let mut header = false;
    let mut pending: Option<(usize, Extinf)> = None;
    let mut group: Option<String> = None;
    for (index, (line, _)) in split_lines(input).enumerate() {
        let number = index + 1;
        if line.len() > limits.max_line_bytes {
            return Err(ChannelListError::LineTooLong {
                line: number,
                limit: limits.max_line_bytes,
            });
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| ChannelListError::InvalidUtf8 { line: number })?;
        let text = if index == 0 {
            text.strip_prefix(BOM).unwrap_or(text)
        } else {
            text
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if !header {
            if !(text.starts_with("#EXTM3U")) {
                return Err(ChannelListError::MissingHeader { line: number });
            }
            header = true;
            continue;
        }
        if let Some(extinf) = text.strip_prefix("#EXTINF:") {
            if pending.is_some() {
                return Err(ChannelListError::DuplicateExtinf { line: number });
            }
            let extinf =
                parse_extinf(extinf).map_err(|reason| ChannelListError::InvalidExtinf {
                    line: number,
                    reason,
                })?;
            pending = Some((number, extinf));
            continue;
        }
        if let Some(name) = text.strip_prefix("#EXTGRP:") {
            group = Some(name.trim().to_owned()).filter(|name| !name.is_empty());
            continue;
        }
        if text.starts_with('#') {
            continue;
        }
        let source = recognise(text)
            .ok_or(ChannelListError::UnknownSource { line: number })?
            .source;
        if channels.len() == limits.max_channels {
            return Err(ChannelListError::TooManyChannels {
                line: number,
                limit: limits.max_channels,
            });
        }
        let (extinf_line, extinf) = pending.take().unwrap_or((number, Extinf::default()));
        let mut attributes = extinf.attributes;
        let name = Some(extinf.name)
            .filter(|name| !name.is_empty())
            .or_else(|| attributes.remove("tvg-name"))
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| source.key.clone());
        let channel = Channel {
            name: name.trim().to_owned(),
            tvg_id: attributes.remove("tvg-id").filter(|id| !id.is_empty()),
            logo: attributes
                .remove("tvg-logo")
                .filter(|logo| !logo.is_empty()),
            group: attributes
                .remove("group-title")
                .filter(|group| !group.is_empty())
                .or_else(|| group.take()),
            source,
        };
        channel
            .check()
            .map_err(|(field, reason)| ChannelListError::InvalidField {
                line: extinf_line,
                field,
                reason,
            })?;
        group = None;
        channels.push(channel);
    }
    if let Some((line, _)) = pending {
        return Err(ChannelListError::MissingUrl { line });
    }
    if !header {
        return Err(ChannelListError::MissingHeader { line: 1 });
    }
    Ok(channels)
}

/// `value` fit for a quoted attribute: control characters as spaces, `"` as `'`.
fn attribute(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '"' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// Writes `channels` as an M3U playlist whose URLs are acemux's player URLs in `format`
/// under `base` (see [`render_m3u`](super::render_m3u)).
pub(crate) fn render(channels: &[Channel], base: &BaseUrl, format: Format) -> String {
    let mut text = String::from("#EXTM3U\n");
    for channel in channels {
        text.push_str("#EXTINF:-1");
        for (name, value) in [
            ("tvg-id", &channel.tvg_id),
            ("tvg-logo", &channel.logo),
            ("group-title", &channel.group),
        ] {
            if let Some(value) = value {
                text.push_str(&format!(" {name}=\"{}\"", attribute(value)));
            }
        }
        let name: String = channel
            .name
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        text.push(',');
        text.push_str(&name);
        text.push('\n');
        text.push_str(&base.player_url(format, &channel.source));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extinf_attributes_quoted_or_not_and_the_name_after_the_first_free_comma() {
        let extinf = parse_extinf(
            "-1 tvg-id=\"sport.1\" TVG-LOGO=\"http://logo/a,b.png\" group-title=Sport catchup,Sport 1, HD ",
        )
        .expect("valid");
        assert_eq!(extinf.name, "Sport 1, HD");
        assert_eq!(extinf.attributes["tvg-id"], "sport.1");
        assert_eq!(extinf.attributes["tvg-logo"], "http://logo/a,b.png");
        assert_eq!(extinf.attributes["group-title"], "Sport");
        assert_eq!(parse_extinf("-1,").expect("valid").name, "");
        assert_eq!(parse_extinf("0 ,Plain").expect("valid").name, "Plain");
        assert!(parse_extinf("-1 tvg-id=\"open,Name").is_err());
        assert!(parse_extinf("-1 tvg-id=\"x\"").is_err());
        assert!(parse_extinf("-1 =x,Name").is_err());
    }
}
