//! Engines from orchestrators (`--engines-from URL`): each list is fetched every poll
//! interval through the engine client (so it runs over the simulated network too), and
//! what it means is core's [`ListSource`]: a good list replaces that list's engines in
//! the pool, a bad one keeps the last good list, and each change is logged once.

use std::time::Duration;

use acemux_core::channel::{
    is_name, DnsEngine, EngineSource, FetchError, ListSource, ListedEngine, SourceReport, FLAG_LIST,
};
use acemux_core::lifecycle::EngineAddr;
use tokio::sync::watch;

use crate::metrics::{EngineListLabels, Metrics};
use crate::net::Net;
use crate::proxy::Proxy;

/// Largest engine list read.
pub const MAX_LIST_BYTES: usize = 1024 * 1024;

/// Checks an `--engines-from` URL: plain `http://` (what the engine client speaks).
pub fn check_list_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    let parsed: http::Uri = url
        .parse()
        .map_err(|_| format!("--engines-from {url:?} is not a URL"))?;
    if parsed.scheme_str() != Some("http") || parsed.host().is_none() {
        return Err(format!(
            "--engines-from {url:?} must be an http:// URL of an engine list \
             (e.g. http://orchestrator:8000/engines)"
        ));
    }
    Ok(url.to_owned())
}

/// Polls the engine list at `url` into `proxy`'s pool every `interval`, until
/// `stopped`.
pub async fn poll_engine_list<N: Net>(
    proxy: Proxy<N>,
    url: String,
    interval: Duration,
    metrics: std::sync::Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let labels = EngineListLabels {
        source: url.clone(),
    };
    let mut source = ListSource::default();
    loop {
        let fetched = tokio::select! {
            biased;
            _ = stopped.wait_for(|stopped| *stopped) => return,
            fetched = proxy.fetch(&url, MAX_LIST_BYTES) => fetched,
        };
        let observed = source.observe(fetched.as_deref().map_err(describe));
        if observed.apply.is_none() {
            metrics.engine_list_failures.get_or_create(&labels).inc();
        }
        if let Some(engines) = &observed.apply {
            proxy.set_engine_list(&url, EngineSource::Orchestrator, engines);
            metrics
                .engine_list_engines
                .get_or_create(&labels)
                .set(i64::try_from(engines.len()).unwrap_or(i64::MAX));
        }
        match observed.report {
            Some(SourceReport::Failing { error, kept }) => tracing::warn!(
                list = %url,
                %error,
                kept,
                "engine list unusable; keeping the last good list"
            ),
            Some(SourceReport::Recovered { engines }) => {
                tracing::info!(list = %url, engines, "engine list usable again");
            }
            Some(SourceReport::Changed { added, removed }) => tracing::info!(
                list = %url,
                added = ?added.iter().map(ToString::to_string).collect::<Vec<_>>(),
                removed = ?removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "engine list changed"
            ),
            None => {}
        }
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Looks up every `--engine` given by name every `interval`, until `stopped`: a name
/// that resolves to several addresses stands for one engine per address (list
/// `dns:<name>`), and leaves the command line's list meanwhile; one that resolves to a
/// single address (or was never resolved) stays the engine it names. Core's
/// [`DnsEngine`] decides; a failed lookup keeps the last good answer.
pub async fn resolve_engine_names<N: Net>(
    proxy: Proxy<N>,
    net: N,
    flags: Vec<EngineAddr>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut names: Vec<DnsEngine> = flags
        .iter()
        .filter(|engine| is_name(engine))
        .cloned()
        .map(DnsEngine::new)
        .collect();
    if names.is_empty() {
        return;
    }
    loop {
        let mut split = Vec::new();
        for dns in &mut names {
            let lookup = tokio::select! {
                biased;
                _ = stopped.wait_for(|stopped| *stopped) => return,
                lookup = net.resolve(&dns.name().host) => lookup,
            };
            let lookup = lookup.map_err(|error| error.to_string());
            if let Err(error) = &lookup {
                tracing::debug!(engine = %dns.name(), %error, "cannot resolve engine name");
            }
            let (replicas, changed) = dns.observe(lookup);
            if changed {
                tracing::info!(
                    engine = %dns.name(),
                    replicas = ?replicas.iter().map(|r| r.engine.to_string()).collect::<Vec<_>>(),
                    "engine name resolves anew"
                );
            }
            let list = format!("dns:{}", dns.name());
            proxy.set_engine_list(&list, EngineSource::Dns, &replicas);
            if !replicas.is_empty() {
                split.push(dns.name().clone());
            }
        }
        let flag_list: Vec<ListedEngine> = flags
            .iter()
            .filter(|engine| !split.contains(engine))
            .cloned()
            .map(ListedEngine::from)
            .collect();
        proxy.set_engine_list(FLAG_LIST, EngineSource::Flag, &flag_list);
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// A fetch failure as `kind: detail`; the kind alone decides whether a failure is new.
fn describe(error: &FetchError) -> String {
    let kind = match error {
        FetchError::Unreachable(_) => "unreachable",
        FetchError::Status { .. } => "bad status",
        FetchError::Timeout { .. } => "timed out",
        FetchError::TooLarge { .. } => "too large",
        _ => "failed",
    };
    format!("{kind}: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_urls_must_be_plain_http() {
        assert_eq!(
            check_list_url(" http://orchestrator:8000/engines "),
            Ok("http://orchestrator:8000/engines".into())
        );
        for bad in [
            "orchestrator:8000/engines",
            "https://o/engines",
            "ftp://o/x",
            "http://",
        ] {
            assert!(check_list_url(bad).is_err(), "{bad}");
        }
    }
}
