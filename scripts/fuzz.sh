#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time on stable Rust (no sanitizer:
# `cargo fuzz run -s none`), then prints the executions per target. Fails when any
# target finds a crash, and says how to reproduce it.
#
#   FUZZ_SECONDS   seconds per target (default 30)
#   FUZZ_MAX_LEN   longest input libFuzzer generates, in bytes (default 4096)
#   FUZZ_JOBS      targets fuzzed at once (default 2: one per core)
#   FUZZ_TARGETS   space-separated targets (default: every target)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
max_len=${FUZZ_MAX_LEN:-4096}
jobs=${FUZZ_JOBS:-2}

# Pinned so that every CI run fuzzes with the same tool.
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  echo "fuzz: installing cargo-fuzz $cargo_fuzz_version"
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

# `cargo fuzz` has no --locked; this fails when fuzz/Cargo.lock is out of date.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}
echo "fuzz: building $(echo $targets | wc -w) targets"
cargo fuzz build -s none

logs=fuzz/target/logs
rm -rf "$logs"
mkdir -p "$logs"

# One target: fuzz from the committed seeds (read only) into a work corpus kept under
# fuzz/target, so that local runs build on earlier ones; crash inputs go to
# fuzz/artifacts/<target>/.
fuzz_one() {
  local target=$1
  local work=fuzz/target/corpus/$target
  mkdir -p "$work" "fuzz/artifacts/$target"
  if cargo fuzz run -s none "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
    -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 \
    >"$logs/$target.log" 2>&1; then
    echo ok >"$logs/$target.status"
  else
    echo failed >"$logs/$target.status"
  fi
}

running=0
for target in $targets; do
  fuzz_one "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

failed=0
failed_count=0
summary=$(printf '%-18s %-7s %14s %8s\n' target result executions seconds)
for target in $targets; do
  log=$logs/$target.log
  status=$(cat "$logs/$target.status" 2>/dev/null || echo failed)
  # libFuzzer's last line: "Done 123456 runs in 31 second(s)".
  done_line=$(grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1 || true)
  runs=$(echo "$done_line" | awk '{print $2}')
  secs=$(echo "$done_line" | awk '{print $5}')
  if [ -z "$runs" ]; then
    runs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{print $2}' | tail -n 1 || true)
  fi
  if [ "$status" = ok ]; then
    echo "fuzz: $target: ${runs:-?} runs in ${secs:-?} s"
  else
    failed=1
    failed_count=$((failed_count + 1))
    echo "fuzz: $target FAILED; the end of its log:"
    tail -n 40 "$log" | sed 's/^/    /'
    artifact=$(grep -oE 'fuzz/artifacts/[^ ]+' "$log" | tail -n 1 || true)
    if [ -n "$artifact" ] && [ -f "$artifact" ]; then
      # Kept where `cargo test -p acemux-core` replays it: it fails until fixed.
      mkdir -p "fuzz/regressions/$target"
      kept=fuzz/regressions/$target/$(basename "$artifact")
      cp "$artifact" "$kept"
      echo "fuzz: the input is kept as $kept; reproduce with:"
      echo "    cargo fuzz run -s none $target $kept"
      echo "fuzz: or, from this log, recreate it with:"
      echo "    echo '$(base64 -w0 "$artifact")' | base64 -d > $kept"
    fi
  fi
  summary+=$'\n'$(printf '%-18s %-7s %14s %8s' "$target" "$status" "${runs:--}" "${secs:--}")
done

echo
echo "fuzz summary (${seconds}s per target, max_len ${max_len}):"
echo "$summary"
count=$(echo $targets | wc -w)
echo "fuzz: $((count - failed_count)) passed, $failed_count failed"
if [ "$failed" -ne 0 ]; then
  exit 1
fi
