//! The address acemux's player URLs start with.

use std::fmt;

use super::{Format, Source};

/// Longest base URL, in bytes.
pub const MAX_BASE_URL_BYTES: usize = 1024;

/// An `http://` or `https://` URL without query or fragment, that acemux's player
/// routes hang under: `http://host[:port][/prefix]`. Kept without a trailing `/`, the
/// scheme in lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Checks `text` (surrounding whitespace ignored): a scheme of `http` or `https`, a
    /// host (a name, an IPv4 address or a bracketed IPv6 one) with an optional port,
    /// an optional path; no user info, query, fragment, whitespace or control
    /// characters; at most [`MAX_BASE_URL_BYTES`].
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let text = text.trim();
        if text.len() > MAX_BASE_URL_BYTES {
            return Err(format!(
                "a base URL is at most {MAX_BASE_URL_BYTES} bytes, not {}",
                text.len()
            ));
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("{text:?} is not an http:// or https:// URL"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("{text:?} is not an http:// or https:// URL"));
        }
        if let Some(bad) = rest
            .chars()
            .find(|&c| c.is_whitespace() || c.is_control() || "\"<>\\^`{|}".contains(c))
        {
            return Err(format!("{text:?} holds the character {bad:?}"));
        }
        if rest.contains(['?', '#']) {
            return Err(format!(
                "{text:?} has a query or fragment; give the base alone (scheme, host, port, path)"
            ));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        check_authority(authority).map_err(|reason| format!("{text:?}: {reason}"))?;
        let path = path.trim_end_matches('/');
        Ok(BaseUrl(format!("{scheme}://{authority}{path}")))
    }

    /// The base of a request that named `host` in its `Host` header (scheme `http`).
    pub fn from_host(host: &str) -> Result<BaseUrl, String> {
        let host = host.trim();
        if host.is_empty() || host.contains(['/', '?', '#']) {
            return Err(format!("the Host header {host:?} is not host[:port]"));
        }
        BaseUrl::parse(&format!("http://{host}"))
    }

    /// The base as text (no trailing `/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// acemux's player URL of `source` in `format` under this base.
    pub fn player_url(&self, format: Format, source: &Source) -> String {
        format!("{}{}?{}", self.0, format.path(), source.query())
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for BaseUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        BaseUrl::parse(text)
    }
}

/// `host[:port]`: a name or address, a port from 1 to 65535 when given.
fn check_authority(authority: &str) -> Result<(), String> {
    if authority.contains('@') {
        return Err("user info (user@) does not belong in a base URL".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address lacks its closing ]")?;
        if address.is_empty()
            || !address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("[{address}] is not an IPv6 address"));
        }
        match after {
            "" => (address, None),
            _ => (
                address,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("junk after the IPv6 address")?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let host_char = |c: char| c.is_ascii_alphanumeric() || "-._~%!$&'()*+,;=".contains(c);
    if host.is_empty() {
        return Err("no host".into());
    }
    if !authority.starts_with('[') && !host.chars().all(host_char) {
        return Err(format!("{host:?} is not a host name or address"));
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port
                .parse::<u32>()
                .is_ok_and(|port| (1..=65535).contains(&port));
        if !valid {
            return Err(format!("{port:?} is not a port (1 to 65535)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_http_urls_without_query_or_trailing_slash() {
        for (text, expected) in [
            ("http://acemux:6880", "http://acemux:6880"),
            (" HTTPS://tv.example/acemux/ ", "https://tv.example/acemux"),
            ("http://10.0.0.2", "http://10.0.0.2"),
            ("http://[::1]:6880/", "http://[::1]:6880"),
            ("http://[fe80::1]", "http://[fe80::1]"),
        ] {
            assert_eq!(
                BaseUrl::parse(text).map(|base| base.to_string()),
                Ok(expected.to_owned()),
                "{text}"
            );
        }
        for text in [
            "",
            "acemux:6880",
            "ftp://acemux",
            "http://",
            "http:///path",
            "http://acemux:0",
            "http://acemux:65536",
            "http://acemux:port",
            "http://acemux:",
            "http://user:pw@acemux",
            "http://acemux/?x=1",
            "http://acemux/#top",
            "http://ace mux",
            "http://acemux/a\"b",
            "http://[::1",
            "http://[zz]",
            "http://[::1]x",
        ] {
            assert!(BaseUrl::parse(text).is_err(), "{text}");
        }
        assert!(BaseUrl::parse(&format!("http://{}", "a".repeat(MAX_BASE_URL_BYTES))).is_err());
    }

    #[test]
    fn a_host_header_is_an_authority_alone() {
        assert_eq!(
            BaseUrl::from_host("tv.example:8080").map(|base| base.to_string()),
            Ok("http://tv.example:8080".to_owned())
        );
        for host in ["", "tv.example/x", "a@b", "tv.example?x"] {
            assert!(BaseUrl::from_host(host).is_err(), "{host}");
        }
    }
}
