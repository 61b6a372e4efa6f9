#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real clients in the tests: ffmpeg/ffprobe decode the proxied streams, VLC (cvlc,
# run as nobody since VLC refuses root) plays the proxied HLS, and Chromium (driven by
# node with puppeteer-core) plays it with hls.js from a page on another origin.
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
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
# The browser test's node modules, as pinned in tests/browser/package-lock.json:
# puppeteer-core (drives the chromium above; downloads no browser) and hls.js.
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

# The real-process tests run the acemux binary; build it first so they find it.
cargo build --locked -p acemux-cmd --bin acemux
cargo test --workspace --locked
# The deterministic simulation: the pinned seeds ran above; now a batch of random
# seeds over every scenario (about 3-5 minutes on 2 cores). More: raise SIM_SEEDS, or
# run `cargo run -p acemux-sim --release -- --seeds 200`.
SIM_SEEDS="${SIM_SEEDS:-40}" cargo test -p acemux-sim --locked --test random_seeds -- --nocapture
