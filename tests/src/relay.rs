//! A fault relay process (`acemux relay`) and its control API, for tests that put a
//! slow or failing network between acemux and an engine.

use std::net::SocketAddr;
use std::path::Path;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{free_port, loopback, Acemux, Client};

/// An `acemux relay` process in front of one upstream, killed on drop.
pub struct RelayProcess {
    /// The process; its `addr` is where the relay listens.
    pub process: Acemux,
    /// Where its control API listens.
    pub control: SocketAddr,
    client: Client,
}

impl RelayProcess {
    /// Starts a relay to `upstream` with `rules` (`--fault` texts) and seed 1,
    /// logging to `log`, and waits (bounded) until its control API answers.
    pub async fn start(upstream: SocketAddr, rules: &[&str], log: &Path) -> RelayProcess {
        let addr = loopback(free_port());
        let control = loopback(free_port());
        let mut args = vec![
            "--listen".to_owned(),
            addr.to_string(),
            "--upstream".to_owned(),
            upstream.to_string(),
            "--control".to_owned(),
            control.to_string(),
            "--seed".to_owned(),
            "1".to_owned(),
        ];
        for rule in rules {
            args.push("--fault".to_owned());
            args.push((*rule).to_owned());
        }
        let ready = format!("http://{control}/control/stats");
        let process = Acemux::start("relay", addr, &args, &ready, log).await;
        RelayProcess {
            process,
            control,
            client: Client::new(),
        }
    }

    /// Where the relay listens, as `host:port` for `--engine`.
    pub fn addr(&self) -> SocketAddr {
        self.process.addr
    }

    fn control_url(&self, path: &str) -> String {
        format!("http://{}{}", self.control, path)
    }

    async fn expect_ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|body| body.to_string().into_bytes());
        let headers = [("content-type", "application/json")];
        let (status, answer) = self
            .client
            .send(method, &self.control_url(path), &headers, body)
            .await
            .unwrap_or_else(|error| panic!("relay control {path}: {error}"));
        assert_eq!(status, StatusCode::OK, "relay control {path}: {answer}");
        answer
    }

    /// Replaces the rules for new connections; with `cut_existing`, open ones are cut.
    pub async fn set_rules(&self, rules: &[&str], cut_existing: bool) {
        let body = json!({ "rules": rules, "cut_existing": cut_existing });
        self.expect_ok(Method::PUT, "/control/rules", Some(body))
            .await;
    }

    /// Refuses new connections and cuts open ones.
    pub async fn partition(&self) {
        self.expect_ok(Method::POST, "/control/partition", None)
            .await;
    }

    /// Clears every rule.
    pub async fn repair(&self) {
        self.expect_ok(Method::POST, "/control/repair", None).await;
    }

    /// The relay's counters (`/control/stats`).
    pub async fn stats(&self) -> Value {
        self.expect_ok(Method::GET, "/control/stats", None).await
    }
}
