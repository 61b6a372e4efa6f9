//! Attribute lists (`NAME=value,NAME="quoted, with commas"`), kept byte for byte.

use std::fmt;

use thiserror::Error;

/// Why an attribute list could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttributeError {
    /// An attribute without a name (this includes a trailing comma).
    #[error("attribute without a name")]
    MissingName,
    /// A name not followed by `=`, or with a character outside `A-Z a-z 0-9 - _`.
    #[error("attribute name not followed by '='")]
    MissingEquals,
    /// A quoted string without its closing quote.
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    /// Something other than whitespace between a closing quote and the next comma.
    #[error("text after a quoted string")]
    TextAfterQuote,
}

/// The attribute list of a tag such as `#EXT-X-KEY` or `#EXT-X-STREAM-INF`.
///
/// Attributes keep their order and their raw values: a quoted value keeps its quotes,
/// and whitespace before a name or after a quoted value is kept, so that
/// [`to_string`](ToString::to_string) gives back exactly the text that was parsed.
/// Names may repeat; lookups find the first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttributeList {
    entries: Vec<Attribute>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Attribute {
    /// Whitespace between the previous comma and the name.
    lead: String,
    name: String,
    /// As written: `"quoted"` with its quotes, or unquoted up to the next comma.
    value: String,
    /// Whitespace between a closing quote and the next comma.
    trail: String,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn unquote(value: &str) -> Option<&str> {
    value.strip_prefix('"')?.strip_suffix('"')
}

/// `text` as a quoted-string value, with what would end it percent-encoded.
pub(super) fn quote(text: &str) -> String {
    format!("\"{}\"", sanitize_quoted(text))
}

/// Percent-encodes what would end a quoted string or a line.
fn sanitize_quoted(text: &str) -> String {
    text.replace('"', "%22")
        .replace('\n', "%0A")
        .replace('\r', "%0D")
}

/// Percent-encodes what would end an unquoted value or a line, or make it quoted.
fn sanitize_unquoted(text: &str) -> String {
    let encoded = text
        .replace(',', "%2C")
        .replace('\n', "%0A")
        .replace('\r', "%0D");
    match encoded.strip_prefix('"') {
        Some(rest) => format!("%22{rest}"),
        None => encoded,
    }
}

impl AttributeList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads an attribute list. The empty string is the empty list.
    ///
    /// Names are ASCII letters, digits, `-` and `_`. A value is a quoted string (which
    /// may contain commas) or anything up to the next comma. Spaces and tabs are
    /// allowed before a name and after a quoted value.
    pub fn parse(text: &str) -> Result<Self, AttributeError> {
        let mut entries = Vec::new();
        if text.is_empty() {
            return Ok(AttributeList { entries });
        }
        let mut rest = text;
        loop {
            let from_name = rest.trim_start_matches(is_blank);
            // `from_name` is a suffix of `rest`, so this index is a char boundary.
            let (lead, _) = rest.split_at(rest.len() - from_name.len());
            let name_len = from_name
                .find(|c: char| !is_name_char(c))
                .unwrap_or(from_name.len());
            // `name_len` comes from `find` on the same string: a char boundary.
            let (name, after_name) = from_name.split_at(name_len);
            if name.is_empty() {
                return Err(AttributeError::MissingName);
            }
            let after_equals = after_name
                .strip_prefix('=')
                .ok_or(AttributeError::MissingEquals)?;
            let (value, trail, next) = match after_equals.strip_prefix('"') {
                Some(quoted) => {
                    let close = quoted.find('"').ok_or(AttributeError::UnterminatedQuote)?;
                    // `close` indexes the closing quote, an ASCII character.
                    let (inner, from_quote) = quoted.split_at(close);
                    let after_quote = from_quote.get(1..).unwrap_or_default();
                    let next = after_quote.trim_start_matches(is_blank);
                    let (trail, _) = after_quote.split_at(after_quote.len() - next.len());
                    (format!("\"{inner}\""), trail, next)
                }
                None => {
                    let end = after_equals.find(',').unwrap_or(after_equals.len());
                    let (value, next) = after_equals.split_at(end);
                    (value.to_owned(), "", next)
                }
            };
            entries.push(Attribute {
                lead: lead.to_owned(),
                name: name.to_owned(),
                value,
                trail: trail.to_owned(),
            });
            match next.strip_prefix(',') {
                Some(after_comma) => rest = after_comma,
                None if next.is_empty() => return Ok(AttributeList { entries }),
                None => return Err(AttributeError::TextAfterQuote),
            }
        }
    }

    /// How many attributes the list has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list has no attributes.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The attributes in order, as `(name, raw value)`; a quoted value keeps its quotes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries
            .iter()
            .map(|entry| (entry.name.as_str(), entry.value.as_str()))
    }

    /// The raw value of the first attribute called `name`, quotes included.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|entry| entry.name == name)
            .map(|entry| entry.value.as_str())
    }

    /// The value of the first attribute called `name`, without its quotes if quoted.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).map(|value| unquote(value).unwrap_or(value))
    }

    /// Sets `name` to the quoted string `text`: replaces the first attribute called
    /// `name` in place, or appends one. A `"` or line break in `text` is
    /// percent-encoded. Fails only on a name [`parse`](Self::parse) would refuse.
    pub fn set_quoted(&mut self, name: &str, text: &str) -> Result<(), AttributeError> {
        check_name(name)?;
        self.put(name, quote(text));
        Ok(())
    }

    /// Sets `name` to the unquoted value `text` (an enumerated string, a number, a
    /// resolution…), like [`set_quoted`](Self::set_quoted). A comma or line break in
    /// `text`, or a leading `"`, is percent-encoded.
    pub fn set_unquoted(&mut self, name: &str, text: &str) -> Result<(), AttributeError> {
        check_name(name)?;
        self.put(name, sanitize_unquoted(text));
        Ok(())
    }

    /// Removes every attribute called `name`; says whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.name != name);
        self.entries.len() != before
    }

    /// Sets `name` to the raw `value`, which the caller has made valid.
    pub(super) fn put(&mut self, name: &str, value: String) {
        match self.entries.iter_mut().find(|entry| entry.name == name) {
            Some(entry) => entry.value = value,
            None => self.entries.push(Attribute {
                lead: String::new(),
                name: name.to_owned(),
                value,
                trail: String::new(),
            }),
        }
    }

    /// Replaces the value of every attribute called `name` by `f(value)` (unquoted
    /// text for a quoted value), keeping its quoting. Returns whether anything changed.
    pub(super) fn rewrite(&mut self, name: &str, mut f: impl FnMut(&str) -> String) -> bool {
        let mut changed = false;
        for entry in self.entries.iter_mut().filter(|entry| entry.name == name) {
            let new_value = match unquote(&entry.value) {
                Some(inner) => {
                    let new_inner = f(inner);
                    (new_inner != inner).then(|| quote(&new_inner))
                }
                None => {
                    let new_raw = f(&entry.value);
                    (new_raw != entry.value).then(|| sanitize_unquoted(&new_raw))
                }
            };
            if let Some(value) = new_value {
                entry.value = value;
                changed = true;
            }
        }
        changed
    }
}

fn check_name(name: &str) -> Result<(), AttributeError> {
    if name.is_empty() {
        Err(AttributeError::MissingName)
    } else if !name.chars().all(is_name_char) {
        Err(AttributeError::MissingEquals)
    } else {
        Ok(())
    }
}

impl fmt::Display for AttributeList {
    /// Writes the list back exactly as parsed, with any changes applied.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, entry) in self.entries.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(
                f,
                "{}{}={}{}",
                entry.lead, entry.name, entry.value, entry.trail
            )?;
        }
        Ok(())
    }
}
