#!/usr/bin/env bash
# Writes every target's seed corpus to fuzz/corpus/TARGET/ (from the fixtures and the built-in seeds).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p webmoe-fuzz --example seed -- fuzz/corpus
