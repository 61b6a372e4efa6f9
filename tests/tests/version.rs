//! `acemux --version` names the crate version and the commit the binary was built from
//! (`unknown` without git), as `cmd/build.rs` records it.

use std::process::Command;

use acemux_tests::acemux_bin;

/// `git rev-parse --short=12 HEAD` of this checkout, when git and the repository are
/// there.
fn checkout_head() -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let head = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !head.is_empty()).then_some(head)
}

fn version_line(args: &[&str]) -> String {
    let output = Command::new(acemux_bin())
        .args(args)
        .output()
        .expect("run acemux");
    assert!(
        output.status.success(),
        "acemux {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8 output")
        .trim_end()
        .to_owned()
}

#[test]
fn version_prints_the_crate_version_and_the_commit_built_from() {
    let line = version_line(&["--version"]);
    let prefix = format!("acemux {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = line
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?} is not `{prefix}<commit>)`"));
    let head = checkout_head();
    // A build that was told its commit (`ACEMUX_BUILD_COMMIT`) shows that one.
    let told = std::env::var("ACEMUX_BUILD_COMMIT")
        .ok()
        .map(|commit| commit.trim().to_owned())
        .filter(|commit| !commit.is_empty());
    let accepted =
        commit == "unknown" || Some(commit) == head.as_deref() || Some(commit) == told.as_deref();
    assert!(
        accepted,
        "--version names commit {commit:?}; this checkout's HEAD is {head:?} (a binary built \
         before the last commit? rebuild it with `cargo build -p acemux-cmd`)"
    );
    if commit != "unknown" {
        assert!(
            commit.len() >= 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit:?} is not an abbreviated commit id"
        );
    }
}

#[test]
fn every_subcommand_prints_the_same_version() {
    let line = version_line(&["--version"]);
    let serve = version_line(&["serve", "--version"]);
    let (_, version) = line.split_once(' ').expect("`acemux <version>`");
    assert!(
        serve.ends_with(version),
        "`acemux serve --version` says {serve:?}, `acemux --version` {line:?}"
    );
}
