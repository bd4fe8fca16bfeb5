#!/usr/bin/env bash
# Runs fuzz targets for up to RUNS executions or SECONDS seconds each, with memory limits, in JOBS
# lanes (default 2) at the lowest CPU priority, and prints libFuzzer's final counts; logs in
# fuzz/logs/, crashing inputs in fuzz/artifacts/TARGET/. An input is a hang after TIMEOUT seconds of
# wall time (default 60: at the lowest priority on a busy machine, 10 s reported false hangs). Usage: fuzz/run-all.sh [RUNS] [SECONDS] [TARGET...] (default: every target).
set -uo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
secs=${2:-7200}
shift 2 2>/dev/null || shift $#
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(chat_template hf_config tokenizer_json safetensors_index gguf_header gguf_tokenizer safetensors_header)
jobs=${JOBS:-2}
mkdir -p logs
cargo +nightly fuzz build -O || exit 1
run() {
  mkdir -p "corpus/$1" "artifacts/$1"
  # The binaries built above, so that edits made while it runs do not change what is fuzzed.
  nice -n 19 "target/x86_64-unknown-linux-gnu/release/$1" "corpus/$1" -runs="$runs" -max_total_time="$secs" \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout="${TIMEOUT:-60}" -print_final_stats=1 \
    -artifact_prefix="artifacts/$1/" >"logs/$1.log" 2>&1
  echo "$1: exit $? $(grep -E '^Done|stat::number_of_executed_units|stat::peak_rss_mb' "logs/$1.log" | tr '\n' ' ')"
}
# Each lane takes every JOBS-th target in order.
for ((lane = 0; lane < jobs; lane++)); do
  (for ((i = lane; i < ${#targets[@]}; i += jobs)); do run "${targets[i]}"; done) &
done
wait
