#!/usr/bin/env bash
# Runs every fuzz target (two at a time) for up to RUNS executions or SECONDS seconds each, with
# memory limits, and prints libFuzzer's final counts. Usage: fuzz/run-all.sh [RUNS] [SECONDS]
set -uo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
secs=${2:-7200}
mkdir -p logs
run() {
  cargo +nightly fuzz run -O "$1" "corpus/$1" -- -runs="$runs" -max_total_time="$secs" \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 >"logs/$1.log" 2>&1
  echo "$1: exit $? $(grep -E '^Done|stat::number_of_executed_units' "logs/$1.log" | tr '\n' ' ')"
}
targets=(gguf_header gguf_tokenizer safetensors_header safetensors_index hf_config tokenizer_json chat_template)
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  run "${targets[i]}" &
  [ -n "${targets[i+1]:-}" ] && run "${targets[i+1]}" &
  wait
done
