//! Cluster mode over TLS (`rediss://`) against a real redis-server listening with
//! `--tls-port` and a certificate made here: with `--redis-ca-file` naming that
//! certificate the instance takes leases over TLS; without it (the Mozilla roots) the
//! handshake fails, and that is a Redis failure like any other: counted, and the
//! viewer is served all the same.

use std::path::Path;
use std::time::Duration;

use acemux_tests::cluster::named_instance;
use acemux_tests::raw::ts_viewer;
use acemux_tests::redis::Redis;
use acemux_tests::{eventually, free_port, Acemux, Client};
use hyper::StatusCode;

const CHANNEL: &str = "e1a57e4000000000000000000000000000000001";

/// A redis-server that speaks TLS only, with a certificate for 127.0.0.1 made here;
/// the certificate's PEM file is returned with it.
async fn tls_redis(dir: &Path) -> (Redis, std::path::PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("a self-signed certificate");
    let cert = dir.join("redis-cert.pem");
    let key = dir.join("redis-key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write the certificate");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write the key");
    let port = free_port();
    let redis = Redis::start_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            cert.to_str().expect("utf-8 path"),
            "--tls-key-file",
            key.to_str().expect("utf-8 path"),
            "--tls-auth-clients",
            "no",
        ],
        &dir.join("redis.log"),
    )
    .await;
    (redis, cert)
}

async fn instance(
    dir: &Path,
    id: &str,
    redis_url: &str,
    engine: &Acemux,
    extra: &[&str],
) -> Acemux {
    let mut flags = vec!["--cluster-redis-wait", "500ms"];
    flags.extend_from_slice(extra);
    named_instance(dir, id, redis_url, engine, &flags).await
}

#[tokio::test]
async fn leases_are_taken_over_tls_with_the_given_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (redis, cert) = tls_redis(dir.path()).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let url = format!("rediss://127.0.0.1:{}", redis.port);

    let trusted = instance(
        dir.path(),
        "trusting",
        &url,
        &engine,
        &["--redis-ca-file", cert.to_str().expect("utf-8 path")],
    )
    .await;
    let _viewer = ts_viewer(trusted.addr, CHANNEL, "tls-test").await;
    let leased = eventually(Duration::from_secs(15), || async {
        let (status, view) = client
            .get(&trusted.url("/cluster"))
            .await
            .expect("/cluster");
        status == StatusCode::OK
            && view["leases"].as_array().is_some_and(|leases| {
                leases
                    .iter()
                    .any(|lease| lease["fencing"].as_u64() >= Some(1))
            })
    })
    .await;
    assert!(
        leased,
        "the lease is taken over TLS; log:\n{}",
        trusted.log_text()
    );
    let (_, view) = client
        .get(&trusted.url("/cluster"))
        .await
        .expect("/cluster");
    assert_eq!(view["directory"]["state"], "ok", "{view}");

    // The Mozilla roots do not know the certificate: every call fails its handshake,
    // and the viewer is served without a lease.
    let untrusting = instance(dir.path(), "untrusting", &url, &engine, &[]).await;
    let _other = ts_viewer(
        untrusting.addr,
        "e1a57e4000000000000000000000000000000002",
        "tls-test",
    )
    .await;
    let refused = eventually(Duration::from_secs(15), || async {
        client
            .metric(
                &untrusting.url(""),
                "acemux_cluster_redis_failures_total{call=\"acquire\"}",
            )
            .await
            >= 1.0
    })
    .await;
    assert!(refused, "log:\n{}", untrusting.log_text());
    let (_, view) = client
        .get(&untrusting.url("/cluster"))
        .await
        .expect("/cluster");
    assert!(
        view["leases"].as_array().is_some_and(Vec::is_empty),
        "{view}"
    );
    assert!(
        untrusting.log_text().contains("TLS handshake"),
        "log:\n{}",
        untrusting.log_text()
    );
}

#[tokio::test]
async fn a_ca_file_without_rediss_or_without_certificates_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = dir.path().join("empty.pem");
    std::fs::write(&pem, "nothing here\n").expect("write");
    let pem = pem.to_str().expect("utf-8 path");
    for (url, expected) in [
        ("redis://127.0.0.1:6379", "rediss://"),
        ("rediss://127.0.0.1:6379", "no certificate"),
    ] {
        let (ok, _, stderr) = acemux_tests::run_tool(
            acemux_tests::acemux_bin().to_str().expect("utf-8 path"),
            &[
                "serve",
                "--db",
                dir.path().join("x.db").to_str().expect("utf-8 path"),
                "--redis",
                url,
                "--redis-ca-file",
                pem,
                "--advertise",
                "http://127.0.0.1:1",
                "--cluster-secret",
                "s",
            ],
        )
        .await;
        assert!(!ok, "{url}: started");
        assert!(stderr.contains(expected), "{url}: {stderr}");
    }
}
