#!/bin/sh
# The netsnap performance benchmark in one command (root; the lab's packages from .ci/run):
#   bench/run.sh            # loads 1/4, 1/2, 1 (5,000 Services x 3, 250,000 conntrack, 60 pods,
#                           # an API with 15,000 pods; needs the Debian package sosreport for the sos column)
#   NETSNAP_BENCH_RUNS=3 NETSNAP_BENCH_SOS_RUNS=2 bench/run.sh   # what RESULTS.md ran (Dec 3)
# Every bundle is checked complete (outcome complete, every core artifact ok) before a figure is reported.
# Builds release binaries, then drives lab/tests/bench_lab.rs (the lab harness is Rust).
# The table goes to stdout and to bench/last-run.md.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p netsnap-collector -p netsnap-analyzer
target="${CARGO_TARGET_DIR:-$PWD/target}"
NETSNAP_COLLECT_BIN="$target/release/netsnap-collect" \
NETSNAP_ANALYZE_BIN="$target/release/netsnap-analyze" \
NETSNAP_BENCH_OUT="$PWD/bench/last-run.md" \
NETSNAP_REQUIRE_LAB=1 \
  cargo test -p netsnap-lab --test bench_lab -- --ignored --nocapture
