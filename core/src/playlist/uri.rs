//! Relative reference resolution (RFC 3986 section 5.2), for playlist URIs.
//!
//! Strings are split into components with the grammar of RFC 3986 appendix B and
//! resolved with the strict algorithm of section 5.2.2; nothing is percent-decoded or
//! case-normalised.

use thiserror::Error;

/// Why a base URI cannot be used to resolve references.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UriError {
    /// The base has no scheme, so it is not an absolute URI.
    #[error("base uri {base:?} is not absolute")]
    BaseNotAbsolute {
        /// The base as given.
        base: String,
    },
}

/// Resolves `reference` (absolute, `//host/x`, `/x`, `x/../y`, `?q`, `#f`, …) against
/// `base`, the absolute URI of the playlist that holds it (RFC 3986 section 5.2).
///
/// ```
/// use acemux_core::playlist::resolve;
///
/// let base = "http://127.0.0.1:6878/ace/m/abc/index.m3u8";
/// assert_eq!(resolve(base, "1234.ts").unwrap(), "http://127.0.0.1:6878/ace/m/abc/1234.ts");
/// assert_eq!(resolve(base, "../c/1.ts").unwrap(), "http://127.0.0.1:6878/ace/m/c/1.ts");
/// ```
pub fn resolve(base: &str, reference: &str) -> Result<String, UriError> {
    Ok(Base::parse(base)?.resolve(reference))
}

/// The five components of a URI reference; `None` for an absent component, which
/// differs from an empty one (`http://a?` has an empty query).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl<'a> Parts<'a> {
    /// Splits any string; every string is a URI reference under appendix B.
    fn split(text: &'a str) -> Self {
        let (rest, fragment) = match text.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (text, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (scheme, rest) = match rest.split_once(':') {
            Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
            _ => (None, rest),
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(after) => {
                let end = after.find('/').unwrap_or(after.len());
                // `end` comes from `find` on `after`, so it is a char boundary.
                let (authority, path) = after.split_at(end);
                (Some(authority), path)
            }
            None => (None, rest),
        };
        Parts {
            scheme,
            authority,
            path,
            query,
            fragment,
        }
    }
}

/// An absolute base URI, split once to resolve many references.
#[derive(Clone, Debug)]
pub(super) struct Base<'a> {
    parts: Parts<'a>,
}

impl<'a> Base<'a> {
    pub(super) fn parse(base: &'a str) -> Result<Self, UriError> {
        let parts = Parts::split(base);
        if parts.scheme.is_none() {
            return Err(UriError::BaseNotAbsolute {
                base: base.to_owned(),
            });
        }
        Ok(Base { parts })
    }

    /// RFC 3986 section 5.2.2, strict: a reference with a scheme is absolute.
    pub(super) fn resolve(&self, reference: &str) -> String {
        let base = &self.parts;
        let r = Parts::split(reference);
        let (scheme, authority, path, query);
        if r.scheme.is_some() {
            scheme = r.scheme;
            authority = r.authority;
            path = remove_dot_segments(r.path);
            query = r.query;
        } else {
            scheme = base.scheme;
            if r.authority.is_some() {
                authority = r.authority;
                path = remove_dot_segments(r.path);
                query = r.query;
            } else {
                authority = base.authority;
                if r.path.is_empty() {
                    path = base.path.to_owned();
                    query = r.query.or(base.query);
                } else {
                    path = if r.path.starts_with('/') {
                        remove_dot_segments(r.path)
                    } else {
                        remove_dot_segments(&merge(base, r.path))
                    };
                    query = r.query;
                }
            }
        }
        recompose(scheme, authority, &path, query, r.fragment)
    }
}

/// RFC 3986 section 5.2.3.
fn merge(base: &Parts<'_>, reference_path: &str) -> String {
    if base.authority.is_some() && base.path.is_empty() {
        return format!("/{reference_path}");
    }
    match base.path.rfind('/') {
        // `slash` indexes an ASCII '/', so both halves split on char boundaries.
        Some(slash) => {
            let (directory, _) = base.path.split_at(slash + 1);
            format!("{directory}{reference_path}")
        }
        None => reference_path.to_owned(),
    }
}

/// RFC 3986 section 5.2.4: interprets `.` and `..` segments.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input
            .strip_prefix("../")
            .or_else(|| input.strip_prefix("./"))
        {
            input = rest;
        } else if input.starts_with("/./") {
            input = input.strip_prefix("/.").unwrap_or(input);
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") || input == "/.." {
            input = match input.strip_prefix("/..") {
                Some("") | None => "/",
                Some(rest) => rest,
            };
            // The last segment and its '/': truncating at an ASCII '/' is on a boundary.
            match output.rfind('/') {
                Some(slash) => output.truncate(slash),
                None => output.clear(),
            }
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let segment_len = match input.strip_prefix('/') {
                Some(rest) => 1 + rest.find('/').unwrap_or(rest.len()),
                None => input.find('/').unwrap_or(input.len()),
            };
            // `segment_len` is the length of `input` or the index of an ASCII '/'.
            let (segment, rest) = input.split_at(segment_len);
            output.push_str(segment);
            input = rest;
        }
    }
    output
}

/// RFC 3986 section 5.3.
fn recompose(
    scheme: Option<&str>,
    authority: Option<&str>,
    path: &str,
    query: Option<&str>,
    fragment: Option<&str>,
) -> String {
    let mut out = String::new();
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push(':');
    }
    if let Some(authority) = authority {
        out.push_str("//");
        out.push_str(authority);
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}
