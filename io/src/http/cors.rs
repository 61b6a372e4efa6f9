//! Cross-origin answers for the player routes (`/ace/getstream`, `/ace/manifest.m3u8`,
//! `/ace/hls/…`) and the channel playlist (`/playlist.m3u`), so that a web player on
//! another origin can play acemux's streams:
//! `Access-Control-Allow-Origin` on every answer (errors included, so that the page
//! can read them) and preflight `OPTIONS` answered. The same policy serves the router
//! and the TS viewers served outside it.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: &str = "600";
/// Longest `Access-Control-Request-Headers` echoed in a preflight answer.
const MAX_REQUEST_HEADERS_BYTES: usize = 1024;

/// Which origins may read the player routes' answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CorsPolicy {
    /// Every origin (`Access-Control-Allow-Origin: *`).
    #[default]
    Any,
    /// Only these origins (each echoed back when it is the request's, with
    /// `Vary: Origin`).
    Origins(Vec<String>),
    /// No cross-origin headers at all.
    Off,
}

impl CorsPolicy {
    /// The policy of `--cors-origin` values: `*` (or nothing) for any origin, `off` for
    /// none, else a list of origins (`scheme://host[:port]`, commas allowed).
    pub fn parse(values: &[String]) -> Result<Self, String> {
        let origins: Vec<&str> = values
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .collect();
        match origins.as_slice() {
            [] | ["*"] => Ok(CorsPolicy::Any),
            ["off"] => Ok(CorsPolicy::Off),
            origins => {
                let mut list = Vec::with_capacity(origins.len());
                for &origin in origins {
                    if origin == "*" || origin == "off" {
                        return Err(format!(
                            "--cors-origin {origin:?} cannot be combined with other origins"
                        ));
                    }
                    list.push(check_origin(origin)?);
                }
                Ok(CorsPolicy::Origins(list))
            }
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if any.
    pub fn allow_origin(&self, origin: Option<&str>) -> Option<&str> {
        match self {
            CorsPolicy::Any => Some("*"),
            CorsPolicy::Off => None,
            CorsPolicy::Origins(list) => {
                let origin = origin?;
                list.iter()
                    .find(|allowed| allowed.eq_ignore_ascii_case(origin))
                    .map(String::as_str)
            }
        }
    }

    /// The header lines a raw answer to a request from `origin` carries (each ending
    /// in CRLF); empty when none.
    pub fn header_lines(&self, origin: Option<&str>) -> String {
        let vary = if matches!(self, CorsPolicy::Origins(_)) {
            "vary: origin\r\n"
        } else {
            ""
        };
        match self.allow_origin(origin) {
            Some(allowed) => format!("access-control-allow-origin: {allowed}\r\n{vary}"),
            None => vary.to_owned(),
        }
    }

    /// Adds the cross-origin headers for a request from `origin` to `headers`.
    fn apply(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        if matches!(self, CorsPolicy::Origins(_)) {
            headers.append(header::VARY, HeaderValue::from_static("origin"));
        }
        if let Some(value) = self
            .allow_origin(origin)
            .and_then(|allowed| HeaderValue::from_str(allowed).ok())
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
    }
}

/// An origin as browsers send it: `http://` or `https://`, a host, an optional port,
/// no path.
fn check_origin(origin: &str) -> Result<String, String> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let valid = rest.is_some_and(|host| {
        !host.is_empty()
            && host
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
    });
    if valid {
        Ok(origin.to_ascii_lowercase())
    } else {
        Err(format!(
            "--cors-origin {origin:?} is not an origin (http[s]://host[:port], no path), \
             \"*\" or \"off\""
        ))
    }
}

/// `OPTIONS` of a player route that is not a preflight: the methods it takes.
pub async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        )],
    )
        .into_response()
}

/// Middleware of the player routes: answers a preflight at once, and adds
/// `Access-Control-Allow-Origin` to every other answer.
pub async fn player_cors(
    State(policy): State<CorsPolicy>,
    request: Request,
    next: Next,
) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        if let Some(asked) = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .filter(|asked| asked.len() <= MAX_REQUEST_HEADERS_BYTES)
        {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECS),
        );
        response
    } else {
        next.run(request).await
    };
    policy.apply(origin.as_deref(), response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<CorsPolicy, String> {
        CorsPolicy::parse(&values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn the_flag_reads_any_off_or_a_list_of_origins() {
        assert_eq!(parse(&[]), Ok(CorsPolicy::Any));
        assert_eq!(parse(&["*"]), Ok(CorsPolicy::Any));
        assert_eq!(parse(&["off"]), Ok(CorsPolicy::Off));
        assert_eq!(
            parse(&["https://TV.example", "http://10.0.0.2:8080,"]),
            Ok(CorsPolicy::Origins(vec![
                "https://tv.example".into(),
                "http://10.0.0.2:8080".into()
            ]))
        );
        for bad in [
            &["tv.example"][..],
            &["https://tv.example/player"],
            &["*", "https://tv.example"],
            &["ftp://tv.example"],
            &["https://"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_list_echoes_only_its_own_origins() {
        let policy = parse(&["https://tv.example"]).expect("valid");
        assert_eq!(
            policy.allow_origin(Some("https://tv.example")),
            Some("https://tv.example")
        );
        assert_eq!(policy.allow_origin(Some("https://evil.example")), None);
        assert_eq!(policy.allow_origin(None), None);
        assert_eq!(
            policy.header_lines(Some("https://tv.example")),
            "access-control-allow-origin: https://tv.example\r\nvary: origin\r\n"
        );
        assert_eq!(
            policy.header_lines(Some("https://evil.example")),
            "vary: origin\r\n"
        );
        assert_eq!(
            CorsPolicy::Any.header_lines(None),
            "access-control-allow-origin: *\r\n"
        );
        assert_eq!(CorsPolicy::Off.header_lines(Some("https://tv.example")), "");
    }
}
