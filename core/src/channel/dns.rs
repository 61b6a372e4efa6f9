//! Engines behind a DNS name (`--engine engines:6878` for a compose service scaled to
//! several engines): each address the name resolves to is an engine of its own, so
//! that every session's requests (playback, stats, stop) go to the replica that
//! granted it, never to the name (which may answer from another replica). A name that
//! resolves to one address stays the engine it names; a failed lookup keeps the last
//! good answer.

use std::net::IpAddr;

use super::discovery::ListedEngine;
use crate::lifecycle::EngineAddr;

/// Most addresses taken from one name.
pub const MAX_ADDRESSES: usize = 64;

/// One `--engine` given by name, and what its lookups said.
#[derive(Clone, Debug)]
pub struct DnsEngine {
    name: EngineAddr,
    last_good: Vec<IpAddr>,
}

impl DnsEngine {
    /// `--engine name:port`.
    pub fn new(name: EngineAddr) -> Self {
        DnsEngine {
            name,
            last_good: Vec::new(),
        }
    }

    /// The engine as given.
    pub fn name(&self) -> &EngineAddr {
        &self.name
    }

    /// Takes a lookup's answer (or its failure, which keeps the last good answer) and
    /// says which engines stand for the name now: one per address when it resolves to
    /// several, else none (the name itself is the engine). Whether the answer changed
    /// what stands for the name is the second value.
    pub fn observe(&mut self, resolved: Result<Vec<IpAddr>, String>) -> (Vec<ListedEngine>, bool) {
        let before = self.last_good.clone();
        if let Ok(mut addresses) = resolved {
            addresses.sort();
            addresses.dedup();
            addresses.truncate(MAX_ADDRESSES);
            if !addresses.is_empty() {
                self.last_good = addresses;
            }
        }
        let changed = before != self.last_good;
        (self.replicas(), changed)
    }

    /// The engines standing for the name: one per address when there are several.
    pub fn replicas(&self) -> Vec<ListedEngine> {
        if self.last_good.len() < 2 {
            return Vec::new();
        }
        self.last_good
            .iter()
            .map(|ip| {
                ListedEngine::from(EngineAddr {
                    host: ip.to_string(),
                    port: self.name.port,
                })
            })
            .collect()
    }
}

/// Whether `engine` is given by a DNS name (not an address).
pub fn is_name(engine: &EngineAddr) -> bool {
    engine.host.parse::<IpAddr>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> EngineAddr {
        EngineAddr {
            host: "engines".into(),
            port: 6878,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn several_addresses_are_several_engines_and_one_is_the_name() {
        let mut dns = DnsEngine::new(name());
        let (replicas, changed) =
            dns.observe(Ok(vec![ip("10.0.0.3"), ip("10.0.0.2"), ip("10.0.0.3")]));
        assert!(changed);
        let hosts: Vec<String> = replicas.iter().map(|r| r.engine.to_string()).collect();
        assert_eq!(hosts, ["10.0.0.2:6878", "10.0.0.3:6878"]);
        // Scaled down to one: the name stands for itself again.
        let (replicas, changed) = dns.observe(Ok(vec![ip("10.0.0.2")]));
        assert!(changed);
        assert!(replicas.is_empty());
        assert!(is_name(&name()));
        assert!(!is_name(&EngineAddr {
            host: "::1".into(),
            port: 1
        }));
    }

    #[test]
    fn a_failed_or_empty_lookup_keeps_the_last_good_answer() {
        let mut dns = DnsEngine::new(name());
        dns.observe(Ok(vec![ip("10.0.0.2"), ip("10.0.0.3")]));
        let (replicas, changed) = dns.observe(Err("no such host".into()));
        assert_eq!((replicas.len(), changed), (2, false));
        let (replicas, changed) = dns.observe(Ok(Vec::new()));
        assert_eq!((replicas.len(), changed), (2, false));
        let (_, changed) = dns.observe(Ok(vec![ip("10.0.0.3"), ip("10.0.0.2")]));
        assert!(!changed, "the same addresses in another order");
    }
}
