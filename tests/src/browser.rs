//! The browser tests' common parts: the node drivers in `tests/browser/` (puppeteer-core
//! driving Debian's chromium), checked to be installed, run with a bound, their one
//! JSON line read back, and a kept output directory for screenshots.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// Where Debian's `chromium` package puts the browser (the drivers run this one).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `tests/browser/`: the pages, the drivers and their node modules.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// `target/tmp/<name>/`, made if needed: where a browser test keeps its screenshot and
/// result after the run.
pub fn output_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tmp")
        .join(name);
    std::fs::create_dir_all(&dir).expect("output dir");
    dir
}

/// Fails, saying what to run, unless node, Chromium and the node modules are there.
pub async fn require_browser_tools() {
    let dir = browser_dir();
    let node = tokio::process::Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await;
    assert!(
        node.as_ref().is_ok_and(|output| output.status.success()),
        "node cannot be run ({node:?}): run scripts/test.sh, which installs node and npm \
         when missing"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/test.sh, which installs Debian's chromium"
    );
    for module in [
        "node_modules/puppeteer-core/package.json",
        "node_modules/hls.js/dist/hls.min.js",
    ] {
        assert!(
            dir.join(module).exists(),
            "{} is missing: run scripts/test.sh, which runs `npm ci` in {}",
            dir.join(module).display(),
            dir.display()
        );
    }
}

/// What a driver run gave: its JSON line, whether it exited 0, and its stderr.
pub struct DriverRun {
    /// The last line it printed, as JSON.
    pub result: Value,
    /// It exited with status 0.
    pub success: bool,
    /// What it wrote to stderr (for failure messages).
    pub stderr: String,
}

/// Runs `node tests/browser/<script> <args>` for at most `bound`.
pub async fn run_driver(script: &str, args: &[&str], bound: Duration) -> DriverRun {
    let dir = browser_dir();
    let driver = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(bound, driver)
        .await
        .unwrap_or_else(|_| panic!("the browser driver {script} ran longer than {bound:?}"))
        .unwrap_or_else(|error| panic!("run node tests/browser/{script}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let line = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_else(|| panic!("{script} printed nothing; stderr:\n{stderr}"));
    let result = serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("{script}'s line is not JSON ({error}): {line}\n{stderr}"));
    DriverRun {
        result,
        success: output.status.success(),
        stderr,
    }
}
