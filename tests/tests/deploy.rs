//! The deployment files agree with each other, with the README and with acemux's own
//! flags: deploy/compose.yaml (gluetun, engines in its network namespace, acemux with
//! its health check), deploy/.env.example, the Dockerfile's runtime stage and
//! deploy/acemux.service. (No Docker engine runs here: scripts/check-deploy.sh builds
//! the release binary the Dockerfile builds and checks the rest against it.)

use std::collections::BTreeSet;
use std::path::PathBuf;

use acemux_cmd::{Cli, Command};
use clap::Parser;
use serde_norway::Value;

/// acemux's port, as the README, the Dockerfile and compose.yaml give it.
const ACEMUX_PORT: u16 = 6880;
/// The engines' HTTP ports in gluetun's namespace, as the README gives them.
const ENGINE_PORTS: [u16; 2] = [6878, 6879];

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|error| panic!("read {path}: {error}"))
}

fn compose() -> Value {
    serde_norway::from_str(&repo_file("deploy/compose.yaml")).expect("compose.yaml is YAML")
}

/// The cluster override, as `docker compose -f compose.yaml -f compose.cluster.yaml`
/// layers it.
fn cluster_compose() -> Value {
    serde_norway::from_str(&repo_file("deploy/compose.cluster.yaml"))
        .expect("compose.cluster.yaml is YAML")
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value:?} is not a string"))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("{value:?} is not a list"))
        .iter()
        .map(text)
        .collect()
}

/// A service's `environment` mapping as name → value.
fn environment(service: &Value) -> Vec<(&str, &str)> {
    service["environment"]
        .as_mapping()
        .expect("environment is a mapping")
        .iter()
        .map(|(name, value)| (text(name), text(value)))
        .collect()
}

fn env<'a>(service: &'a Value, name: &str) -> &'a str {
    environment(service)
        .into_iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .unwrap_or_else(|| panic!("no {name} in {service:?}"))
}

fn depends_on(service: &Value) -> Vec<&str> {
    match &service["depends_on"] {
        Value::Sequence(_) => strings(&service["depends_on"]),
        Value::Mapping(map) => map.keys().map(text).collect(),
        other => panic!("depends_on is {other:?}"),
    }
}

/// The container port of a published `[ip:]host:container` port.
fn container_port(mapping: &str) -> u16 {
    mapping
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{mapping:?} names no container port"))
}

/// The value after `flag` in a space-separated command line.
fn flag_value<'a>(line: &'a str, flag: &str) -> Option<&'a str> {
    let mut words = line.split_whitespace();
    words.find(|word| *word == flag)?;
    words.next()
}

fn engines(compose: &Value) -> Vec<(&str, &Value)> {
    let engines: Vec<(&str, &Value)> = compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .filter(|(_, service)| {
            service["image"]
                .as_str()
                .is_some_and(|image| image.contains("acestream"))
        })
        .map(|(name, service)| (text(name), service))
        .collect();
    assert!(!engines.is_empty(), "no AceStream engine service");
    engines
}

#[test]
fn compose_runs_engines_in_gluetuns_namespace_and_acemux_in_front_of_them() {
    let compose = compose();
    let services = &compose["services"];
    let gluetun = &services["gluetun"];
    assert!(
        text(&gluetun["image"]).starts_with("qmcgaw/gluetun"),
        "{gluetun:?}"
    );
    assert!(strings(&gluetun["cap_add"]).contains(&"NET_ADMIN"));
    assert!(strings(&gluetun["devices"])
        .iter()
        .any(|device| device.starts_with("/dev/net/tun")));
    assert!(env(gluetun, "VPN_SERVICE_PROVIDER").starts_with("${VPN_SERVICE_PROVIDER"));

    let engines = engines(&compose);
    let mut http_ports = Vec::new();
    let mut p2p_ports = BTreeSet::new();
    for (name, engine) in &engines {
        assert_eq!(
            text(&engine["network_mode"]),
            "service:gluetun",
            "{name} must reach the internet only through the VPN"
        );
        assert!(depends_on(engine).contains(&"gluetun"), "{name}");
        assert!(
            engine["ports"].is_null(),
            "{name} shares gluetun's namespace: its ports are published by gluetun"
        );
        let flags = env(engine, "EXTRA_FLAGS");
        let http: u16 = flag_value(flags, "--http-port")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no --http-port in {flags:?}"));
        assert_eq!(env(engine, "HTTP_PORT"), http.to_string(), "{name}");
        assert_eq!(env(engine, "ALLOW_REMOTE_ACCESS"), "yes", "{name}");
        let p2p = flag_value(flags, "--port").unwrap_or_else(|| panic!("{name}: no --port"));
        assert!(p2p_ports.insert(p2p), "{name}: P2P port {p2p} taken twice");
        http_ports.push(http);
    }
    assert_eq!(
        http_ports, ENGINE_PORTS,
        "the engines' ports as the README gives them"
    );
    let published: Vec<u16> = strings(&gluetun["ports"])
        .into_iter()
        .map(container_port)
        .collect();
    assert_eq!(published, http_ports, "gluetun publishes each engine's API");

    let acemux = &services["acemux"];
    let engines_flag: Vec<String> = http_ports
        .iter()
        .map(|port| format!("gluetun:{port}"))
        .collect();
    assert_eq!(env(acemux, "ACEMUX_ENGINES"), engines_flag.join(","));
    assert_eq!(
        env(acemux, "ACEMUX_LISTEN"),
        format!("0.0.0.0:{ACEMUX_PORT}")
    );
    assert!(env(acemux, "ACEMUX_API_KEY").starts_with("${ACEMUX_API_KEY"));
    assert!(env(acemux, "ACEMUX_DB").starts_with("/data/"));
    assert!(
        strings(&acemux["volumes"])
            .iter()
            .any(|volume| volume.ends_with(":/data")),
        "the database lives on a volume"
    );
    let ports: Vec<u16> = strings(&acemux["ports"])
        .into_iter()
        .map(container_port)
        .collect();
    assert_eq!(ports, [ACEMUX_PORT]);
    assert!(depends_on(acemux).contains(&"gluetun"));
    assert!(
        acemux["network_mode"].is_null(),
        "acemux stays outside the VPN"
    );

    let check = strings(&acemux["healthcheck"]["test"]);
    assert_eq!(check[..3], ["CMD", "acemux", "health"], "{check:?}");
    let url = check
        .iter()
        .find(|word| word.starts_with("http://"))
        .expect("the health check names its URL");
    assert_eq!(*url, format!("http://127.0.0.1:{ACEMUX_PORT}/health"));
    let args = check[1..].iter().copied();
    match Cli::try_parse_from(args)
        .expect("acemux parses the health check")
        .command
    {
        Command::Health(health) => assert_eq!(health.target().to_string(), *url),
        other => panic!("{other:?}"),
    }
}

#[test]
fn compose_sets_only_variables_acemux_reads() {
    let compose = compose();
    let known = acemux_cmd::variables();
    for (name, _) in environment(&compose["services"]["acemux"]) {
        assert!(
            known.iter().any(|known| known == name),
            "compose.yaml sets {name}, which acemux does not read"
        );
    }
}

/// `${NAME}`, `${NAME:-default}`, `${NAME:?message}` in `text`.
fn interpolated(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn the_cluster_compose_runs_two_instances_sharing_one_redis() {
    let base = compose();
    let cluster = cluster_compose();
    let services = &cluster["services"];
    let redis = &services["redis"];
    assert!(text(&redis["image"]).starts_with("redis:"), "{redis:?}");
    let known = acemux_cmd::variables();
    let secret = env(&services["acemux"], "ACEMUX_CLUSTER_SECRET");
    assert!(secret.starts_with("${ACEMUX_CLUSTER_SECRET:?"), "{secret}");
    let mut advertised = BTreeSet::new();
    for name in ["acemux", "acemux-2"] {
        let instance = &services[name];
        for (variable, _) in environment(instance) {
            assert!(
                known.iter().any(|known| known == variable),
                "compose.cluster.yaml sets {variable} on {name}, which acemux does not read"
            );
        }
        assert!(depends_on(instance).contains(&"redis"), "{name}");
        assert_eq!(
            env(instance, "ACEMUX_REDIS"),
            "redis://redis:6379",
            "{name}"
        );
        assert_eq!(env(instance, "ACEMUX_CLUSTER_SECRET"), secret, "{name}");
        // Each instance is reached by the others at its own service name and port.
        assert_eq!(
            env(instance, "ACEMUX_ADVERTISE"),
            format!("http://{name}:{ACEMUX_PORT}")
        );
        advertised.insert(env(instance, "ACEMUX_ADVERTISE"));
    }
    assert_eq!(advertised.len(), 2);

    // The second instance is compose.yaml's acemux but for its address, host port
    // and volume.
    let first = &base["services"]["acemux"];
    let second = &services["acemux-2"];
    for field in ["image", "restart", "ulimits", "healthcheck"] {
        assert_eq!(first[field], second[field], "acemux-2's {field}");
    }
    for (variable, value) in environment(first) {
        assert_eq!(env(second, variable), value, "acemux-2's {variable}");
    }
    for service in depends_on(first) {
        assert!(
            depends_on(second).contains(&service),
            "acemux-2 after {service}"
        );
    }
    let ports: Vec<u16> = strings(&second["ports"])
        .into_iter()
        .map(container_port)
        .collect();
    assert_eq!(ports, [ACEMUX_PORT]);
    assert_ne!(
        strings(&first["ports"]),
        strings(&second["ports"]),
        "two host ports"
    );
    let volume = strings(&second["volumes"]);
    assert_eq!(volume, ["acemux-2-data:/data"], "a database of its own");
    assert!(cluster["volumes"]
        .as_mapping()
        .is_some_and(|volumes| volumes.keys().any(|key| text(key) == "acemux-2-data")));

    // The flags the instances get parse as acemux's own.
    let args = [
        "acemux",
        "serve",
        "--redis",
        "redis://redis:6379",
        "--advertise",
        "http://acemux-2:6880",
        "--cluster-secret",
        "s3cret",
    ];
    Cli::try_parse_from(args).expect("acemux parses the cluster flags");
}

#[test]
fn env_example_defines_exactly_what_compose_reads() {
    let example = repo_file("deploy/.env.example");
    let defined: BTreeSet<String> = example
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, _) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{line:?} is not NAME=value"));
            name.to_owned()
        })
        .collect();
    let mut used = interpolated(&repo_file("deploy/compose.yaml"));
    used.extend(interpolated(&repo_file("deploy/compose.cluster.yaml")));
    assert_eq!(
        defined, used,
        ".env.example against the ${{…}} of compose.yaml and compose.cluster.yaml"
    );
    for required in [
        "VPN_SERVICE_PROVIDER",
        "ACEMUX_API_KEY",
        "PUBLISH_ACEMUX_PORT",
    ] {
        assert!(defined.contains(required), "{required}");
    }
}

#[test]
fn the_readme_documents_the_ports_and_the_engines_setting() {
    let readme = repo_file("README.md");
    let compose = compose();
    let engines = env(&compose["services"]["acemux"], "ACEMUX_ENGINES");
    assert!(readme.contains(engines), "README does not show {engines}");
    for port in ENGINE_PORTS.iter().chain([&ACEMUX_PORT]) {
        assert!(
            readme.contains(&port.to_string()),
            "README never names {port}"
        );
    }
    for file in [
        "deploy/compose.yaml",
        "deploy/.env.example",
        "deploy/acemux.service",
    ] {
        assert!(readme.contains(file), "README does not mention {file}");
    }
}

/// Logical `Dockerfile` lines: continuations joined, comments left out.
fn dockerfile_lines() -> Vec<String> {
    let text = repo_file("Dockerfile");
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
    {
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

#[test]
fn the_image_runs_acemux_serve_unprivileged_with_its_database_on_a_volume() {
    let lines = dockerfile_lines();
    let has = |wanted: &str| {
        lines
            .iter()
            .any(|line| line.split_whitespace().collect::<Vec<_>>().join(" ") == wanted)
    };
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("FROM ") && line.contains(" AS build")),
        "a build stage"
    );
    let runtime = lines
        .iter()
        .rposition(|line| line.starts_with("FROM "))
        .expect("a runtime stage");
    assert_eq!(lines[runtime], "FROM debian:bookworm-slim");
    let runtime = &lines[runtime..];
    assert!(has(&format!("EXPOSE {ACEMUX_PORT}")), "{lines:#?}");
    assert!(has(r#"ENTRYPOINT ["acemux"]"#));
    assert!(has(r#"CMD ["serve"]"#));
    assert!(has(r#"VOLUME ["/data"]"#));
    let user = runtime
        .iter()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("a USER");
    assert!(!["root", "0"].contains(&user.trim()), "runs as {user}");
    let env: String = runtime
        .iter()
        .filter(|line| line.starts_with("ENV "))
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        env.contains(&format!("ACEMUX_LISTEN=0.0.0.0:{ACEMUX_PORT}")),
        "{env}"
    );
    assert!(env.contains("ACEMUX_DB=/data/"), "{env}");
    let healthcheck = runtime
        .iter()
        .find(|line| line.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    assert!(
        healthcheck.ends_with(r#"CMD ["acemux", "health"]"#),
        "{healthcheck}"
    );
}

/// `Key=value` lines of the unit, in order.
fn unit_settings() -> Vec<(String, String)> {
    repo_file("deploy/acemux.service")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('['))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{line:?} is not Key=value"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn the_systemd_unit_runs_acemux_serve_as_its_own_user_with_state_and_limits() {
    let settings = unit_settings();
    let one = |key: &str| -> &str {
        let values: Vec<&str> = settings
            .iter()
            .filter(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(values.len(), 1, "{key}: {values:?}");
        values[0]
    };
    let exec: Vec<&str> = one("ExecStart").split_whitespace().collect();
    assert_eq!(exec[..2], ["/usr/local/bin/acemux", "serve"]);
    let args = std::iter::once("acemux").chain(exec[1..].iter().copied());
    assert!(matches!(
        Cli::try_parse_from(args)
            .expect("acemux parses ExecStart")
            .command,
        Command::Serve(_)
    ),);
    assert_eq!(one("EnvironmentFile"), "/etc/acemux/acemux.env");
    assert_eq!(one("StateDirectory"), "acemux");
    let known = acemux_cmd::variables();
    let environment: Vec<(&str, &str)> = settings
        .iter()
        .filter(|(key, _)| key == "Environment")
        .map(|(_, value)| value.split_once('=').expect("Environment=NAME=value"))
        .collect();
    for (name, _) in &environment {
        assert!(
            known.iter().any(|known| known == name),
            "acemux reads no {name}"
        );
    }
    assert!(environment.contains(&("ACEMUX_DB", "/var/lib/acemux/acemux.db")));
    let user = one("User");
    assert!(!user.is_empty() && user != "root", "runs as {user:?}");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("Restart"), "on-failure");
    let files: usize = one("LimitNOFILE").parse().expect("a number");
    let serve = Cli::try_parse_from(["acemux", "serve"]).expect("defaults parse");
    let Command::Serve(serve) = serve.command else {
        panic!("not serve");
    };
    assert!(
        files >= serve.max_connections + 64,
        "LimitNOFILE={files} leaves no room for --max-connections {}",
        serve.max_connections
    );
}
