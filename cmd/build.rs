//! Records the commit the binary is built from, for `acemux --version`.
//!
//! `ACEMUX_BUILD_COMMIT` wins when set (builds that know the commit but have no
//! `.git`, such as a Docker build context); else `git rev-parse --short=12 HEAD`; else
//! `unknown`. The script reruns when the override changes or when HEAD moves (the
//! files named below), not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

const OVERRIDE: &str = "ACEMUX_BUILD_COMMIT";

fn main() {
    println!("cargo:rerun-if-env-changed={OVERRIDE}");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var(OVERRIDE) {
        Ok(value) if !value.trim().is_empty() => checked_override(value.trim()),
        _ => {
            watch_head(&manifest_dir);
            git(&manifest_dir, &["rev-parse", "--short=12", "HEAD"])
                .filter(|hash| is_commit_hash(hash))
                .unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=ACEMUX_COMMIT={commit}");
}

/// The override as given, if it is something a version line can carry.
fn checked_override(value: &str) -> String {
    let printable = value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if !printable {
        panic!("{OVERRIDE}={value:?}: expected a commit id (letters, digits, `.-_+`, at most 64)");
    }
    value.to_owned()
}

fn is_commit_hash(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit())
}

/// Asks cargo to rerun this script when HEAD moves: HEAD itself (a branch switch), the
/// branch's ref (a commit, loose or packed) and HEAD's reflog (any move at all). In a
/// worktree `.git` is a file, so the directories come from git, not from the path.
/// Only files that exist are named: cargo reruns on every build for a missing one.
fn watch_head(dir: &Path) {
    let Some(git_dir) = git_path(dir, "--git-dir") else {
        return;
    };
    let common_dir = git_path(dir, "--git-common-dir").unwrap_or_else(|| git_dir.clone());
    let mut watched = vec![
        git_dir.join("HEAD"),
        git_dir.join("logs").join("HEAD"),
        common_dir.join("packed-refs"),
    ];
    if let Some(reference) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common_dir.join(reference));
    }
    for path in watched.iter().filter(|path| path.is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// A directory git names (`--git-dir`, `--git-common-dir`), made absolute.
fn git_path(dir: &Path, which: &str) -> Option<PathBuf> {
    let path = PathBuf::from(git(dir, &["rev-parse", which])?);
    Some(if path.is_absolute() {
        path
    } else {
        dir.join(path)
    })
}

/// `git <args>` run in `dir`: its trimmed stdout when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
