#!/bin/sh
# The netsnap performance benchmark in one command (root; the lab's packages from .ci/run):
#   bench/run.sh            # loads 1/4, 1/2, 1 (5,000 Services x 3, 250,000 conntrack, 60 pods)
#   NETSNAP_BENCH_SCALES="0.25" NETSNAP_BENCH_RUNS=3 bench/run.sh   # reduced run
# Builds release binaries, then drives tests/tests/bench_lab.rs (the lab harness is Rust).
# The table goes to stdout and to bench/last-run.md.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p netsnap-collector -p netsnap-analyzer
NETSNAP_COLLECT_BIN="$PWD/target/release/netsnap-collect" \
NETSNAP_ANALYZE_BIN="$PWD/target/release/netsnap-analyze" \
NETSNAP_BENCH_OUT="$PWD/bench/last-run.md" \
NETSNAP_REQUIRE_LAB=1 \
  cargo test -p netsnap-lab --test bench_lab -- --ignored --nocapture
