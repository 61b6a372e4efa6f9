#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real clients in the tests: ffmpeg/ffprobe decode the proxied streams, VLC (cvlc,
# run as nobody since VLC refuses root) plays the proxied HLS, and Chromium (driven by
# node with puppeteer-core) plays it with hls.js from a page on another origin.
# redis-server is the cluster tests' Redis.
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "$@" >/dev/null
}
if ! command -v ffprobe >/dev/null 2>&1 || ! command -v ffmpeg >/dev/null 2>&1 \
  || ! command -v cvlc >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
  apt_install ffmpeg vlc-bin vlc-plugin-base chromium
fi
# Cluster mode's real-process tests start their own redis-server (no service needed).
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
# The browser test's node modules, as pinned in tests/browser/package-lock.json:
# puppeteer-core (drives the chromium above; downloads no browser) and hls.js.
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# The real-process tests run the acemux binary; build it first so they find it.
cargo build --locked -p acemux-cmd --bin acemux
cargo test --workspace --locked
# The deterministic simulation: the pinned seeds ran above; now a large batch of random
# seeds over every scenario, in release mode on every core, within a time box (about
# 2 minutes on 2 cores, plus the release build). The seeds derive from the commit, so a
# run of one commit replays exactly; every failure prints its replay command. More:
# SIM_SEEDS=100000, or `cargo run -p acemux-sim --release -- --seeds 100000 --jobs N`.
sim_base_seed="${SIM_BASE_SEED:-}"
if [ -z "$sim_base_seed" ]; then
  commit="$(git rev-parse HEAD 2>/dev/null || echo 0)"
  sim_base_seed=$(( 16#${commit:0:15} ))
fi
cargo run --locked --release -p acemux-sim -- --quiet \
  --seeds "${SIM_SEEDS:-1000}" --jobs "${SIM_JOBS:-$(nproc)}" \
  --base-seed "$sim_base_seed" --time-box "${SIM_TIME_BOX:-540}"
