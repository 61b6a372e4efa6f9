//! `acemux health`: one bounded `GET` of a running server's `/health`, for container
//! health checks (the runtime image has no curl) and scripts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use acemux::cli::duration;
use acemux::net::{http_client, TokioNet};
use bytes::Bytes;
use clap::Args;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Full;

/// `acemux health` options.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// URL to check (`http://host:port/path`). Without it: `/health` of `--listen`.
    #[arg(long, env = "ACEMUX_HEALTH_URL", value_parser = health_url)]
    pub url: Option<Uri>,

    /// The address `acemux serve` listens on (the same variable as its `--listen`),
    /// checked at `/health`; an unspecified address (`0.0.0.0`, `::`) is asked on
    /// loopback.
    #[arg(long, env = "ACEMUX_LISTEN", default_value = "127.0.0.1:6880")]
    pub listen: SocketAddr,

    /// Bound on the whole check: connecting, sending, and the answer's head.
    #[arg(long, env = "ACEMUX_HEALTH_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub timeout: Duration,
}

impl HealthArgs {
    /// The URL these flags check.
    pub fn target(&self) -> Uri {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let ip = match self.listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let url = format!("http://{}/health", SocketAddr::new(ip, self.listen.port()));
        url.parse()
            .expect("a socket address makes a valid authority")
    }
}

/// Parses a `--url`: an absolute `http://` URL (acemux speaks no TLS).
pub fn health_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .trim()
        .parse()
        .map_err(|error| format!("{text:?} is not a URL: {error}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!("{text:?} is not an http://host[:port]/path URL"));
    }
    Ok(uri)
}

/// `GET url`, bounded by `timeout`: the status when it is 2xx, else what went wrong.
pub async fn check(url: &Uri, timeout: Duration) -> Result<StatusCode, String> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(url.clone())
        .body(Full::new(Bytes::new()))
        .map_err(|error| error.to_string())?;
    let client = http_client(TokioNet);
    let response = tokio::time::timeout(timeout, client.request(request))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|error| {
            // The connector's error (connection refused, …) is the useful part.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            text
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(format!("answered {status}"))
    }
}

/// Runs the check: exit 0 and one line on stdout when healthy, else exit 1 and the
/// reason on stderr.
pub fn run(args: &HealthArgs) -> ExitCode {
    let url = args.target();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("acemux health: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(check(&url, args.timeout)) {
        Ok(status) => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("acemux health: {url}: {reason}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Health {
        #[command(flatten)]
        args: HealthArgs,
    }

    fn target(args: &[&str]) -> String {
        Health::try_parse_from(["health"].iter().chain(args))
            .expect("the arguments parse")
            .args
            .target()
            .to_string()
    }

    #[test]
    fn the_target_is_health_of_the_listen_address_on_loopback_when_unspecified() {
        assert_eq!(
            target(&["--listen", "0.0.0.0:7000"]),
            "http://127.0.0.1:7000/health"
        );
        assert_eq!(
            target(&["--listen", "[::]:7000"]),
            "http://[::1]:7000/health"
        );
        assert_eq!(
            target(&["--listen", "10.1.2.3:6880"]),
            "http://10.1.2.3:6880/health"
        );
        assert_eq!(
            target(&[
                "--listen",
                "0.0.0.0:7000",
                "--url",
                "http://acemux:6880/health"
            ]),
            "http://acemux:6880/health",
            "--url wins"
        );
    }

    #[test]
    fn only_absolute_http_urls_are_taken() {
        assert!(health_url("http://127.0.0.1:6880/health").is_ok());
        for bad in ["https://acemux/health", "/health", "acemux:6880", "http://"] {
            assert!(health_url(bad).is_err(), "{bad} is refused");
        }
    }
}
