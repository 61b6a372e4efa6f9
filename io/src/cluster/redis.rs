//! The Redis side of cluster mode: each [`Command`] of the lease machine as a short
//! sequence of Redis commands (`INCR`, `SET NX PX`, `GET`, `PEXPIRE`, `DEL`,
//! `WATCH`/`MULTI`/`EXEC`; no scripts), over connections dialled through [`Net`].
//!
//! Each command runs on a connection of its own (taken from a small idle pool), so a
//! `WATCH` never sees another command's writes on the same connection; a connection
//! that failed, timed out or still watches a key is dropped instead of reused.

use std::sync::Mutex;
use std::time::Duration;

use acemux_core::cluster::{Command, Holder, Reply, SlotCommand, SlotReply};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use super::tls::RedisTls;
use crate::net::Net;

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 8;

/// Where Redis is and how to log in (`redis://[user:pass@]host[:port][/db]`, or
/// `rediss://…` for TLS).
#[derive(Clone, Debug)]
pub struct RedisTarget {
    host: String,
    port: u16,
    login: RedisConnectionInfo,
    /// `rediss://`: how the server is checked.
    tls: Option<RedisTls>,
}

impl RedisTarget {
    /// Parses `--redis`: `redis://` or `rediss://` (TLS, the server checked against the
    /// Mozilla roots unless [`RedisTarget::with_ca_pem`] says otherwise) over TCP; no
    /// Unix sockets, which the simulated network has no equivalent of.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        // The crate's own TLS is not used (connections are dialled through `Net`): it
        // parses the URL as a plain one, and the TLS session is added here.
        let (plain, tls) = match url.strip_prefix("rediss://") {
            Some(rest) => (
                format!("redis://{rest}"),
                Some(RedisTls::public_roots().map_err(|error| format!("--redis: {error}"))?),
            ),
            None => (url.to_owned(), None),
        };
        let info = plain
            .as_str()
            .into_connection_info()
            .map_err(|error| format!("--redis {:?}: {error}", redact(url)))?;
        match info.addr() {
            ConnectionAddr::Tcp(host, port) => Ok(RedisTarget {
                host: host.clone(),
                port: *port,
                // No `CLIENT SETINFO` on connecting: only the commands listed above
                // (and `AUTH`, `SELECT` from the URL) ever reach the server.
                login: info.redis_settings().clone().set_skip_set_lib_name(),
                tls,
            }),
            _ => Err(format!(
                "--redis {:?}: only redis[s]://[user:pass@]host[:port][/db] is supported",
                redact(url)
            )),
        }
    }

    /// Checks a `rediss://` server against the certificates of the PEM text `pem`
    /// (`--redis-ca-file`) instead of the Mozilla roots.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<RedisTarget, String> {
        if self.tls.is_none() {
            return Err("--redis-ca-file needs a rediss:// URL".to_owned());
        }
        self.tls = Some(RedisTls::from_ca_pem(pem)?);
        Ok(self)
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `host:port`, for logs.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// The lease key of `channel`.
pub fn lease_key(channel: &str) -> String {
    format!("acemux:lease:{channel}")
}

/// The fencing counter of `channel`.
pub fn fencing_key(channel: &str) -> String {
    format!("acemux:fencing:{channel}")
}

/// A command sequence on one connection: its reply, and whether the connection is
/// clean for reuse.
pub(crate) type SequenceFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = redis::RedisResult<(T, bool)>> + Send + 'c>>;

/// Performs lease commands on Redis.
pub struct RedisClient<N: Net> {
    net: N,
    target: RedisTarget,
    idle: Mutex<Vec<MultiplexedConnection>>,
}

impl<N: Net> RedisClient<N> {
    /// A client of `target` over `net`; connects on first use.
    pub fn new(net: N, target: RedisTarget) -> Self {
        RedisClient {
            net,
            target,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Performs `command` within `timeout` (connecting included).
    pub async fn perform(&self, command: &Command, timeout: Duration) -> Result<Reply, String> {
        bounded(timeout, async {
            let mut connection = self.connection().await?;
            let result = run(&mut connection, command).await;
            self.done(connection, result)
        })
        .await
    }

    /// Performs the slot machine's `command` within `timeout` (connecting included).
    pub async fn perform_slot(
        &self,
        command: &SlotCommand,
        timeout: Duration,
    ) -> Result<SlotReply, String> {
        bounded(timeout, async {
            let mut connection = self.connection().await?;
            let result = super::slot_redis::run(&mut connection, command).await;
            self.done(connection, result)
        })
        .await
    }

    /// Keeps `connection` for reuse if `result` says it is clean; the reply.
    fn done<T>(
        &self,
        connection: MultiplexedConnection,
        result: redis::RedisResult<(T, bool)>,
    ) -> Result<T, String> {
        let (reply, reusable) = result.map_err(|error| format!("Redis: {error}"))?;
        if reusable {
            self.reuse(connection);
        }
        Ok(reply)
    }

    /// Runs `sequence` on a connection of its own within `timeout` (connecting
    /// included); the connection is kept for reuse when the sequence says it is clean.
    pub(crate) async fn with_connection<T, F>(
        &self,
        timeout: Duration,
        sequence: F,
    ) -> Result<T, String>
    where
        F: for<'c> FnOnce(&'c mut MultiplexedConnection) -> SequenceFuture<'c, T>,
    {
        let call = async {
            let mut connection = self.connection().await?;
            let (reply, reusable) = sequence(&mut connection)
                .await
                .map_err(|error| format!("Redis: {error}"))?;
            if reusable {
                self.reuse(connection);
            }
            Ok(reply)
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(format!("Redis did not answer within {timeout:?}")),
        }
    }

    fn reuse(&self, connection: MultiplexedConnection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .pop();
        if let Some(connection) = idle {
            return Ok(connection);
        }
        let stream = self
            .net
            .connect(&self.target.host, self.target.port)
            .await
            .map_err(|error| format!("cannot reach Redis at {}: {error}", self.target.address()))?;
        // No bound of the crate's own: each call is bounded as the lease machine
        // decides (`perform`).
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(None);
        let failed =
            |error: redis::RedisError| format!("Redis at {}: {error}", self.target.address());
        match &self.target.tls {
            None => multiplexed(&self.target.login, stream, config).await,
            Some(tls) => {
                let stream = tls.connect(&self.target.host, stream).await?;
                multiplexed(&self.target.login, stream, config).await
            }
        }
        .map_err(failed)
    }
}

/// `call`, or an error past `timeout`.
async fn bounded<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(format!("Redis did not answer within {timeout:?}")),
    }
}

/// Logs in on `stream` and starts its connection's driver, which ends when the last
/// handle of the connection is dropped.
async fn multiplexed<S>(
    login: &RedisConnectionInfo,
    stream: S,
    config: AsyncConnectionConfig,
) -> redis::RedisResult<MultiplexedConnection>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (connection, driver) =
        MultiplexedConnection::new_with_config(login, stream, config).await?;
    tokio::spawn(driver);
    Ok(connection)
}

/// `duration` in whole milliseconds, at least one (`PX 0` is an error in Redis).
pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Runs `command`; returns the reply and whether the connection is clean for reuse (no
/// key left watched).
async fn run(
    connection: &mut MultiplexedConnection,
    command: &Command,
) -> redis::RedisResult<(Reply, bool)> {
    match command {
        Command::Acquire {
            channel,
            instance,
            advertise,
            ttl,
        } => {
            let fencing: u64 = redis::cmd("INCR")
                .arg(fencing_key(channel))
                .query_async(connection)
                .await?;
            let holder = Holder {
                instance: instance.clone(),
                advertise: advertise.clone(),
                fencing,
            };
            let key = lease_key(channel);
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(holder.encode())
                .arg("NX")
                .arg("PX")
                .arg(millis(*ttl))
                .query_async(connection)
                .await?;
            if set.is_some() {
                return Ok((Reply::Acquired { fencing }, true));
            }
            let value: Option<String> = redis::cmd("GET").arg(&key).query_async(connection).await?;
            Ok((
                Reply::Taken(value.as_deref().and_then(Holder::decode)),
                true,
            ))
        }
        Command::Renew { channel, mine, ttl } => {
            let key = lease_key(channel);
            let current = watch_get(connection, &key).await?;
            let holder = current.as_deref().and_then(Holder::decode);
            if holder.as_ref() != Some(mine) {
                return Ok((Reply::Gone(holder), false));
            }
            let done: Option<(i64,)> = redis::pipe()
                .atomic()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(millis(*ttl))
                .query_async(connection)
                .await?;
            match done {
                Some((1,)) => Ok((Reply::Kept, true)),
                // Expired between the read and the transaction.
                Some(_) => Ok((Reply::Gone(None), true)),
                None => Err(changed("lease")),
            }
        }
        Command::Release { channel, mine } => {
            let key = lease_key(channel);
            let current = watch_get(connection, &key).await?;
            if current.as_deref().and_then(Holder::decode).as_ref() != Some(mine) {
                return Ok((Reply::Done, false));
            }
            let done: Option<(i64,)> = redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(&key)
                .query_async(connection)
                .await?;
            match done {
                Some(_) => Ok((Reply::Done, true)),
                None => Err(changed("lease")),
            }
        }
        Command::RaiseFencing { channel, at_least } => {
            let key = fencing_key(channel);
            let current = watch_get(connection, &key).await?;
            let value = current
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0);
            if value >= *at_least {
                return Ok((Reply::Done, false));
            }
            let done: Option<(String,)> = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg(*at_least)
                .query_async(connection)
                .await?;
            match done {
                Some(_) => Ok((Reply::Done, true)),
                None => Err(changed("fencing counter")),
            }
        }
    }
}

/// `WATCH key` then `GET key`.
pub(super) async fn watch_get(
    connection: &mut MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<Option<String>> {
    redis::cmd("WATCH")
        .arg(key)
        .query_async::<()>(connection)
        .await?;
    redis::cmd("GET").arg(key).query_async(connection).await
}

pub(super) fn changed(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Client,
        "transaction aborted",
        format!("the {what} changed meanwhile"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_logins_parse_and_other_schemes_are_refused() {
        let target = RedisTarget::parse("redis://user:secret@cache:6390/2").expect("valid");
        assert_eq!(target.address(), "cache:6390");
        assert_eq!(target.login.password(), Some("secret"));
        assert_eq!(target.login.username(), Some("user"));
        assert_eq!(target.login.db(), 2);
        assert!(target.login.skip_set_lib_name());
        assert_eq!(
            RedisTarget::parse("redis://cache")
                .expect("valid")
                .address(),
            "cache:6379"
        );
        let error = RedisTarget::parse("http://user:secret@cache").expect_err("not redis");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn rediss_urls_use_tls_and_a_ca_file_needs_one() {
        let target = RedisTarget::parse("rediss://:secret@cache:6390/1").expect("valid");
        assert!(target.is_tls());
        assert_eq!(target.address(), "cache:6390");
        assert_eq!(target.login.password(), Some("secret"));
        assert_eq!(target.login.db(), 1);
        assert!(!RedisTarget::parse("redis://cache").expect("valid").is_tls());
        let error = RedisTarget::parse("redis://cache")
            .expect("valid")
            .with_ca_pem(b"")
            .expect_err("not TLS");
        assert!(error.contains("rediss://"), "{error}");
        let error = target
            .with_ca_pem(b"not a certificate")
            .expect_err("no PEM");
        assert!(error.contains("no certificate"), "{error}");
    }
}
