#!/usr/bin/env bash
# Builds the release acemux binary: the one build of what ships, run by the Dockerfile's
# build stage and by CI (scripts/check-deploy.sh). With a path, installs the binary
# there too. ACEMUX_BUILD_COMMIT, when set, is the commit `acemux --version` shows
# (else git's HEAD, else `unknown`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p acemux-cmd --bin acemux
bin="${CARGO_TARGET_DIR:-target}/release/acemux"
"$bin" --version
if [ $# -gt 0 ]; then
  install -m 0755 "$bin" "$1"
fi
