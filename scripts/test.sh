#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real clients in the tests: ffmpeg/ffprobe decode the proxied streams, VLC (cvlc,
# run as nobody since VLC refuses root) plays the proxied HLS.
if ! command -v ffprobe >/dev/null 2>&1 || ! command -v ffmpeg >/dev/null 2>&1 \
  || ! command -v cvlc >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    ffmpeg vlc-bin vlc-plugin-base >/dev/null
fi

# The real-process tests run the acemux binary; build it first so they find it.
cargo build --locked -p acemux-cmd --bin acemux
cargo test --workspace --locked
# The deterministic simulation: the pinned seeds ran above; now a batch of random
# seeds over every scenario (about 3-5 minutes on 2 cores). More: raise SIM_SEEDS, or
# run `cargo run -p acemux-sim --release -- --seeds 200`.
SIM_SEEDS="${SIM_SEEDS:-40}" cargo test -p acemux-sim --locked --test random_seeds -- --nocapture
