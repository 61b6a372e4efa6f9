//! Cluster mode in a channel task: before an engine is picked, the channel asks the
//! cluster where its media comes from. Owned here (or Redis unreachable): the pool
//! picks an engine as always. Owned by another instance: the channel's "engine" is
//! that instance, its session is the owner's own stream of the channel (one upstream
//! connection, marked as a peer's with the cluster secret), and the rest of the
//! channel (fan-out, keepalive, reconnects) runs exactly as for an engine. A relayed
//! session records no lifecycle event (its owner does) and has nothing to stop.

use acemux_core::channel::{EngineSession, Input, RequestId, SessionError};
use acemux_core::lifecycle::{EngineAddr, SessionInfo};
use tokio::task::AbortHandle;

use super::pump::Env;
use super::ChannelKey;
use crate::net::Net;

/// The session id prefix of relayed sessions.
const RELAY_SESSION: &str = "relay-";
/// The command URL of a relayed session: nothing to stop.
pub(super) const RELAY_COMMAND: &str = "relay:";

/// The instance a channel relays from.
#[derive(Clone, Debug)]
pub(super) struct RelayTarget {
    /// The owner as the channel's "engine".
    pub(super) engine: EngineAddr,
    /// Its advertised base URL.
    pub(super) base: String,
    /// The cluster secret the upstream request carries.
    pub(super) secret: String,
}

impl RelayTarget {
    /// The owner at `advertise` (`http://host:port`), if it is such a URL.
    pub(super) fn new(advertise: &str, secret: &str) -> Option<RelayTarget> {
        let uri: http::Uri = advertise.parse().ok()?;
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        Some(RelayTarget {
            engine: EngineAddr {
                host: host.to_owned(),
                port: uri.port_u16().unwrap_or(80),
            },
            base: advertise.trim_end_matches('/').to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The peer header for a playback of `url`, when `url` is this owner's.
    pub(super) fn header_for(&self, url: &str) -> Option<(&'static str, String)> {
        url.starts_with(&format!("{}/", self.base))
            .then(|| (crate::cluster::PEER_HEADER, self.secret.clone()))
    }
}

/// Whether `session` is a relayed one (no lifecycle event, nothing to stop).
pub(super) fn is_relayed(session: &EngineSession) -> bool {
    session
        .session
        .playback_session_id
        .starts_with(RELAY_SESSION)
}

/// The owner's stream of `key`, as the session of request `request`.
pub(super) fn relay_session<N: Net, I: Send + 'static>(
    env: &Env<N, I>,
    request: RequestId,
    target: &RelayTarget,
) -> AbortHandle {
    let key = &env.key;
    let url = format!(
        "{}/ace/getstream?{}={}{}",
        target.base,
        key.key_type.as_str(),
        crate::engine::percent_encode(&key.key),
        key.params.query()
    );
    tracing::info!(channel = %key, owner = %target.base, "relaying the channel from the instance that owns it");
    env.proxy.0.metrics.cluster_relays.inc();
    let session = EngineSession {
        engine: target.engine.clone(),
        playback_url: url,
        session: SessionInfo {
            playback_session_id: format!("{RELAY_SESSION}{}", env.proxy.next_id()),
            stat_url: String::new(),
            command_url: RELAY_COMMAND.to_owned(),
            is_live: true,
        },
    };
    let completions = env.completions.clone();
    tokio::spawn(async move {
        let result: Result<EngineSession, SessionError> = Ok(session);
        let _ = completions
            .send(Input::SessionAnswer { request, result })
            .await;
    })
    .abort_handle()
}

/// Asks the cluster where `key`'s media comes from; the answer goes to `routes`.
pub(super) fn ask_route(
    cluster: crate::cluster::Cluster,
    key: &ChannelKey,
    exclude: Vec<EngineAddr>,
    routes: tokio::sync::mpsc::Sender<super::pump::Routed>,
) {
    let channel = key.to_string();
    tokio::spawn(async move {
        let route = cluster.route(&channel).await;
        let _ = routes.send((route, exclude)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_reached_at_its_advertised_address_and_only_it_gets_the_secret() {
        let target = RelayTarget::new("http://10.0.0.2:6880/", "s").expect("usable");
        assert_eq!(
            target.engine,
            EngineAddr {
                host: "10.0.0.2".into(),
                port: 6880
            }
        );
        assert_eq!(
            target.header_for("http://10.0.0.2:6880/ace/getstream?content_id=a"),
            Some((crate::cluster::PEER_HEADER, "s".to_owned()))
        );
        assert_eq!(target.header_for("http://10.0.0.2:68801/ace/r/x"), None);
        assert_eq!(target.header_for("http://engine:6878/ace/r/x"), None);
        let plain = RelayTarget::new("http://[::1]", "s").expect("usable");
        assert_eq!(plain.engine.host, "::1");
        assert_eq!(plain.engine.port, 80);
        assert!(RelayTarget::new("not a url", "s").is_none());
    }
}
