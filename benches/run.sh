#!/usr/bin/env bash
# rolecore's performance harness: one command, under 10 minutes.
#
#   bash benches/run.sh            (BENCH_QUICK=1 for a short trial run)
#
# Builds the C floor, rolecore's echo server example and the harness crate,
# runs the allocation test, then every scenario; writes docs/PERFORMANCE.md
# and docs/perf.svg. Servers run on CPU 0, the load generator on CPU 1;
# loopback only; every process started is stopped by its PID.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export BENCH_STARTED=$(date +%s)

# Descriptors: as many as allowed. The hard limit can only be raised with
# CAP_SYS_RESOURCE; try, and fall back to the soft limit up to the hard one.
prlimit --pid $$ --nofile=200000:200000 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "==> descriptors: soft $(ulimit -Sn), hard $(ulimit -Hn)"

for tool in strace valgrind taskset cc python3; do
    if ! command -v "$tool" >/dev/null; then
        case "$tool" in
            strace|valgrind) apt-get install -y "$tool" >/dev/null ;;
            *) echo "run.sh: $tool is missing" >&2; exit 1 ;;
        esac
    fi
done

echo "==> build: C floor"
mkdir -p benches/harness/target/c
cc -O2 -Wall -o benches/harness/target/c/epoll_echo benches/c/epoll_echo.c
echo "==> build: rolecore examples/echo_server (release)"
cargo build --release --quiet --example echo_server
echo "==> build: harness (loadgen, mio_echo, run)"
cargo build --release --quiet --manifest-path benches/harness/Cargo.toml
echo "==> test: no allocation per event (tests/alloc_steady_state.rs)"
ALLOC_LOG=benches/harness/target/logs/alloc_steady_state.log
mkdir -p benches/harness/target/logs
cargo test --release --quiet --test alloc_steady_state -- --nocapture >"$ALLOC_LOG" 2>&1 || true
grep -E "echoed messages|test result" "$ALLOC_LOG" || tail -20 "$ALLOC_LOG"

echo "==> scenarios"
benches/harness/target/release/run "$ROOT" "$ALLOC_LOG"
echo "==> done in $(( $(date +%s) - BENCH_STARTED )) s"
