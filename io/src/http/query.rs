//! Query strings as a map, with every malformed one answered as JSON
//! (400 `invalid_query`): bad percent-encoding, escapes that decode to invalid UTF-8.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Query};
use http::request::Parts;

use super::error::ApiError;

/// The decoded query parameters of a request (the last value of a repeated name wins).
#[derive(Debug, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Params::from_uri(&parts.uri)
    }
}

impl Params {
    /// The parameters of `uri`'s query.
    pub fn from_uri(uri: &http::Uri) -> Result<Self, ApiError> {
        check_escapes(uri.query().unwrap_or_default())?;
        let Query(params) = Query::<BTreeMap<String, String>>::try_from_uri(uri)
            .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
        Ok(Params(params))
    }
}

/// Every `%` must start an escape of two hex digits (decoders would otherwise keep it
/// as text, and the same key could be spelled two ways).
fn check_escapes(query: &str) -> Result<(), ApiError> {
    let bytes = query.as_bytes();
    let malformed = bytes.iter().enumerate().find(|&(at, &byte)| {
        byte == b'%'
            && !(bytes.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(at + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if let Some((at, _)) = malformed {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("malformed percent-encoding at byte {at} of the query"),
        ));
    }
    // Decoders replace invalid UTF-8 with U+FFFD, which would make a different key.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = |byte: u8| char::from(byte).to_digit(16).unwrap_or(0) as u8;
            decoded.push(hex(bytes[at + 1]) << 4 | hex(bytes[at + 2]));
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    std::str::from_utf8(&decoded)
        .map(drop)
        .map_err(|_| ApiError::bad_request("invalid_query", "the query decodes to invalid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::check_escapes;

    #[test]
    fn escapes_need_two_hex_digits() {
        assert!(check_escapes("id=a%20b&x=%C3%A9").is_ok());
        for bad in ["id=%", "id=%2", "id=%ZZ", "id=a%2x", "id=%FF", "id=%C3"] {
            assert!(check_escapes(bad).is_err(), "{bad}");
        }
    }
}
