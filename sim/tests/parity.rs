//! The same request/response body over real sockets and over the simulated network.

use std::net::SocketAddr;
use std::time::Duration;

use acemux::net::{http_client, Net, NetListener, TokioNet};
use acemux::server::{serve, ServerLimits};
use acemux_sim::TurmoilNet;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

fn limits() -> ServerLimits {
    ServerLimits {
        max_connections: 16,
        header_read_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    }
}

/// Serves an echo route on `listener`.
async fn echo_server<L: NetListener>(listener: L) {
    let router = Router::new().route(
        "/echo",
        post(|body: Bytes| async move {
            let mut reversed = body.to_vec();
            reversed.reverse();
            reversed
        }),
    );
    serve(
        listener,
        router,
        None,
        limits(),
        std::sync::Arc::new(acemux::metrics::Metrics::new()),
        std::future::pending(),
    )
    .await;
}

/// The test body: three requests over one client, bodies echoed reversed.
async fn exchange<N: Net>(net: N, host: &str, port: u16) -> Vec<(u16, Vec<u8>)> {
    let client = http_client(net);
    let mut answers = Vec::new();
    for body in [&b"hello"[..], b"", &[7u8; 100_000]] {
        let request = Request::post(format!("http://{host}:{port}/echo"))
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let response = client.request(request).await.expect("response");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        answers.push((status, bytes.to_vec()));
    }
    answers
}

fn expected() -> Vec<(u16, Vec<u8>)> {
    vec![
        (200, b"olleh".to_vec()),
        (200, Vec::new()),
        (200, vec![7u8; 100_000]),
    ]
}

#[test]
fn request_response_over_tokio_sockets() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let answers = runtime.block_on(async {
        let listener = TokioNet
            .bind(
                "127.0.0.1:0".parse().expect("address"),
                acemux::net::DEFAULT_BACKLOG,
            )
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(echo_server(listener));
        exchange(TokioNet, "127.0.0.1", port).await
    });
    assert_eq!(answers, expected());
}

#[test]
fn request_response_over_the_simulated_network() {
    let mut sim = turmoil::Builder::new().build();
    sim.host("server", || async {
        let listener = TurmoilNet
            .bind(
                SocketAddr::from(([0, 0, 0, 0], 9000)),
                acemux::net::DEFAULT_BACKLOG,
            )
            .await?;
        echo_server(listener).await;
        Ok(())
    });
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let answers = answers.clone();
        sim.client("client", async move {
            *answers.lock().expect("lock") = exchange(TurmoilNet, "server", 9000).await;
            Ok(())
        });
    }
    sim.run().expect("simulation");
    assert_eq!(*answers.lock().expect("lock"), expected());
}
