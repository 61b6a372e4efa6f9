#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real-process tests run the acemux binary; build it first so they find it.
cargo build --locked -p acemux --bin acemux
cargo test --workspace --locked
