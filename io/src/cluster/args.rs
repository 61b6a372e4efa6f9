//! The cluster flags of `acemux serve`.

use std::time::Duration;

use clap::Args;

use super::redis::RedisTarget;
use super::ClusterOptions;
use crate::cli::duration;

/// Cluster mode: several acemux instances as one, through Redis.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Redis (`redis://[user:pass@]host[:port][/db]`, `rediss://…` for TLS) through which several acemux
    /// instances share the channels: one instance (the owner) opens a channel's engine
    /// session, the others relay it from the owner. Turns cluster mode on; needs
    /// `--advertise` and `--cluster-secret`.
    #[arg(long, env = "ACEMUX_REDIS", hide_env_values = true)]
    pub redis: Option<String>,

    /// With `rediss://`: a PEM file of the CA certificates Redis's certificate is
    /// checked against, instead of the Mozilla roots (a Redis with a certificate of
    /// its own CA, or self-signed). Read once at start; a file without a certificate,
    /// or the flag without `rediss://`, stops the start with an error.
    #[arg(long, env = "ACEMUX_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// This instance's id in the cluster. Default: one generated with the database and
    /// stable across restarts (`--db`).
    #[arg(long, env = "ACEMUX_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// How the other instances reach this one (`http://host:port`).
    #[arg(long, env = "ACEMUX_ADVERTISE")]
    pub advertise: Option<String>,

    /// The secret every instance of the cluster shares: a relayed request carries it,
    /// so players cannot pose as instances.
    #[arg(long, env = "ACEMUX_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,

    /// Time to live of a channel lease: how long the channels of an instance that died
    /// wait before another instance takes them over. Renewed every third of it.
    #[arg(long, env = "ACEMUX_CLUSTER_LEASE_TTL", default_value = "10s", value_parser = duration)]
    pub cluster_lease_ttl: Duration,

    /// Longest time one Redis call may take (at most a third of the lease time to live).
    #[arg(long, env = "ACEMUX_CLUSTER_REDIS_TIMEOUT", default_value = "1s", value_parser = duration)]
    pub cluster_redis_timeout: Duration,

    /// Longest time a new channel waits for Redis; past it the channel starts on this
    /// instance without a lease (logged, counted in
    /// `acemux_cluster_lease_events_total{event="local_fallback"}`) and takes the lease
    /// once Redis answers.
    #[arg(long, env = "ACEMUX_CLUSTER_REDIS_WAIT", default_value = "2s", value_parser = duration)]
    pub cluster_redis_wait: Duration,

    /// How often this instance publishes its record (its id, address and channels) in
    /// the cluster's directory, which `GET /streams` and `GET /cluster` on every
    /// instance read; a record lives three intervals, so a dead instance's channels
    /// leave the directory within three intervals. At least 100ms.
    #[arg(long, env = "ACEMUX_CLUSTER_PUBLISH_INTERVAL", default_value = "5s", value_parser = duration)]
    pub cluster_publish_interval: Duration,
}

impl ClusterArgs {
    /// The cluster options these flags describe; `None` without `--redis`.
    pub fn options(&self) -> Result<Option<ClusterOptions>, String> {
        let Some(url) = self.redis.as_deref().filter(|url| !url.trim().is_empty()) else {
            return Ok(None);
        };
        let mut redis = RedisTarget::parse(url.trim())?;
        if let Some(path) = &self.redis_ca_file {
            #[expect(
                clippy::disallowed_methods,
                reason = "start-up: read once before anything is served"
            )]
            let pem = std::fs::read(path)
                .map_err(|error| format!("--redis-ca-file {}: {error}", path.display()))?;
            redis = redis
                .with_ca_pem(&pem)
                .map_err(|error| format!("--redis-ca-file {}: {error}", path.display()))?;
        }
        let advertise = self.advertise.as_deref().ok_or(
            "--redis needs --advertise http://host:port (how other instances reach this one)",
        )?;
        let advertise = advertise_url(advertise)?;
        let secret = self
            .cluster_secret
            .clone()
            .filter(|secret| !secret.is_empty())
            .ok_or("--redis needs --cluster-secret (shared by every instance)")?;
        let instance = match self.instance_id.as_deref() {
            None => None,
            Some(id) if valid_id(id) => Some(id.to_owned()),
            Some(id) => {
                return Err(format!(
                    "--instance-id {id:?}: 1 to 64 letters, digits, '-', '_' or '.'"
                ))
            }
        };
        if self.cluster_lease_ttl < Duration::from_millis(300) {
            return Err("--cluster-lease-ttl must be at least 300ms".into());
        }
        if self.cluster_publish_interval < Duration::from_millis(100) {
            return Err("--cluster-publish-interval must be at least 100ms".into());
        }
        if self.cluster_redis_timeout.is_zero() {
            return Err("--cluster-redis-timeout must be above 0".into());
        }
        Ok(Some(ClusterOptions {
            redis,
            instance,
            advertise,
            secret,
            lease_ttl: self.cluster_lease_ttl,
            redis_timeout: self.cluster_redis_timeout.min(self.cluster_lease_ttl / 3),
            redis_wait: self.cluster_redis_wait,
            publish_every: self.cluster_publish_interval,
        }))
    }
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `http://host:port` without a trailing slash.
fn advertise_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("--advertise {text:?} is not a URL"))?;
    if uri.scheme_str() != Some("http")
        || uri.host().is_none()
        || uri
            .path_and_query()
            .is_some_and(|path| path.as_str() != "/")
    {
        return Err(format!(
            "--advertise {text:?}: http://host:port, how other instances reach this one"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        args: ClusterArgs,
    }

    fn options(args: &[&str]) -> Result<Option<ClusterOptions>, String> {
        Serve::try_parse_from(["serve"].iter().chain(args))
            .expect("the arguments parse")
            .args
            .options()
    }

    #[test]
    fn without_redis_there_is_no_cluster() {
        assert!(options(&[]).expect("valid").is_none());
        assert!(options(&["--advertise", "http://a:1"])
            .expect("valid")
            .is_none());
    }

    #[test]
    fn redis_needs_an_address_and_a_secret() {
        let error =
            options(&["--redis", "redis://r", "--cluster-secret", "s"]).expect_err("no advertise");
        assert!(error.contains("--advertise"), "{error}");
        let error =
            options(&["--redis", "redis://r", "--advertise", "http://a:1"]).expect_err("no secret");
        assert!(error.contains("--cluster-secret"), "{error}");
        let error = options(&[
            "--redis",
            "redis://r",
            "--advertise",
            "ftp://a:1",
            "--cluster-secret",
            "s",
        ])
        .expect_err("not http");
        assert!(error.contains("--advertise"), "{error}");
        let error = options(&[
            "--redis",
            "redis://r",
            "--advertise",
            "http://a:1",
            "--cluster-secret",
            "s",
            "--instance-id",
            "a b",
        ])
        .expect_err("bad id");
        assert!(error.contains("--instance-id"), "{error}");
    }

    #[test]
    fn a_full_cluster_configuration() {
        let cluster = options(&[
            "--redis",
            "redis://u:p@r:7000",
            "--advertise",
            "http://10.0.0.2:6880/",
            "--cluster-secret",
            "s",
            "--instance-id",
            "east-1",
            "--cluster-lease-ttl",
            "3s",
        ])
        .expect("valid")
        .expect("cluster mode");
        assert_eq!(cluster.advertise, "http://10.0.0.2:6880");
        assert_eq!(cluster.instance.as_deref(), Some("east-1"));
        assert_eq!(cluster.lease_ttl, Duration::from_secs(3));
        assert_eq!(
            cluster.redis_timeout,
            Duration::from_secs(1),
            "a third of the ttl at most"
        );
        assert_eq!(cluster.redis.address(), "r:7000");
    }
}
