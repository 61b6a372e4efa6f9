//! `acemux health`, the container health check: exit 0 when `/health` answers 2xx in
//! time, exit 1 (with the reason) when nothing listens, when the answer is an error,
//! and when no answer comes within `--timeout`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use acemux_tests::{acemux_bin, free_port, Acemux};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `acemux health <args>` (bounded), with the variables it reads cleared.
async fn health(args: &[&str]) -> Outcome {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(acemux_bin());
    command
        .arg("health")
        .args(args)
        .env_remove("ACEMUX_HEALTH_URL")
        .env_remove("ACEMUX_LISTEN")
        .env_remove("ACEMUX_HEALTH_TIMEOUT")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("acemux health ends within 30 s")
        .expect("run acemux health");
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

#[tokio::test]
async fn a_serving_acemux_is_healthy_by_url_and_by_its_listen_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let acemux = Acemux::serve(port, &["--db", ":memory:"], &dir.path().join("acemux.log")).await;

    let by_url = health(&["--url", &acemux.url("/health")]).await;
    assert_eq!(by_url.code, Some(0), "stderr: {}", by_url.stderr);
    assert!(by_url.stdout.contains("200"), "{}", by_url.stdout);

    // As in the container: the listen address is unspecified, asked on loopback.
    let listen = format!("0.0.0.0:{port}");
    let by_listen = health(&["--listen", &listen]).await;
    assert_eq!(by_listen.code, Some(0), "stderr: {}", by_listen.stderr);
    assert!(
        by_listen
            .stdout
            .contains(&format!("http://127.0.0.1:{port}/health")),
        "{}",
        by_listen.stdout
    );
}

#[tokio::test]
async fn nothing_listening_is_unhealthy_at_once() {
    let url = format!("http://127.0.0.1:{}/health", free_port());
    let outcome = health(&["--url", &url, "--timeout", "10s"]).await;
    assert_eq!(outcome.code, Some(1), "stderr: {}", outcome.stderr);
    assert!(outcome.stderr.contains(&url), "{}", outcome.stderr);
    assert!(
        outcome.took < Duration::from_secs(5),
        "a refused connection is no reason to wait: {:?}",
        outcome.took
    );
}

#[tokio::test]
async fn an_error_answer_is_unhealthy() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0_u8; 1024];
        while !head.windows(4).any(|window| window == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "the request ended before its head did");
            head.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
            .await
            .expect("write");
        String::from_utf8_lossy(&head).into_owned()
    });
    let outcome = health(&["--url", &format!("http://{addr}/health")]).await;
    assert_eq!(outcome.code, Some(1), "stderr: {}", outcome.stderr);
    assert!(outcome.stderr.contains("503"), "{}", outcome.stderr);
    let head = server.await.expect("the server task");
    assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
}

#[tokio::test]
async fn no_answer_within_the_timeout_is_unhealthy() {
    // Accepted by the kernel, never answered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let outcome = health(&[
        "--url",
        &format!("http://{addr}/health"),
        "--timeout",
        "500ms",
    ])
    .await;
    assert_eq!(outcome.code, Some(1), "stderr: {}", outcome.stderr);
    assert!(
        outcome.stderr.contains("no answer within"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.took >= Duration::from_millis(500) && outcome.took < Duration::from_secs(5),
        "bounded by --timeout: {:?}",
        outcome.took
    );
    drop(listener);
}
