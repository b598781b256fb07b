#!/usr/bin/env bash
# rolecore's performance harness: one command, under 10 minutes.
#
#   bash benches/run.sh            (BENCH_QUICK=1 for a short trial run)
#
# Builds the C floor, rolecore's echo, HTTP and RESP server examples and the
# harness crate, runs the allocation test, then every scenario; writes
# docs/PERFORMANCE.md and docs/perf.svg. Servers run on CPU 0, the load on
# CPU 1 (but for the thread scenario, which pins nothing); loopback only;
# every process started is stopped by its PID. BENCH_ONLY=http,resp (any of
# headline, callgrind, idle, http, resp, threads, tls) runs only those, for
# trying the harness, and writes its report under benches/harness/target
# instead; the TLS scenario always writes its own section of
# docs/PERFORMANCE.md (BENCH_ONLY=tls runs it alone).
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

# The protocol peers and their load tools: nginx and redis-server (run by the
# driver, one process each, on a free loopback port, configured from the
# command line or a temp dir), wrk and redis-benchmark. Installed when
# missing; a service the package's install may start is stopped again (the
# driver starts its own), by the PIDs that were not there before.
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v openssl >/dev/null || missing+=(openssl)
peer_pids() { pgrep -x nginx || true; pgrep -x redis-server || true; }
if (( ${#missing[@]} )); then
    echo "==> install: ${missing[*]}"
    before=" $(peer_pids | tr '\n' ' ') "
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    for pid in $(peer_pids); do
        if [[ "$before" != *" $pid "* ]]; then
            echo "    stopping $(ps -o comm= -p "$pid") (PID $pid), started by the install"
            kill "$pid" 2>/dev/null || true
        fi
    done
fi
for tool in nginx redis-server wrk redis-benchmark openssl; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing" >&2; exit 1; }
done

echo "==> build: C floor"
mkdir -p benches/harness/target/c
cc -O2 -Wall -o benches/harness/target/c/epoll_echo benches/c/epoll_echo.c
# The TLS scenario's server: http_server with the `tls` feature, kept apart
# so that the other scenarios measure the build without it.
only="${BENCH_ONLY:-}"
only="${only// /}"
if [[ -z "$only" || ",$only," == *",tls,"* ]]; then
    echo "==> build: rolecore example http_server with tls (release)"
    cargo build --release --quiet --features tls --example http_server
    mkdir -p benches/harness/target/tls
    cp target/release/examples/http_server benches/harness/target/tls/http_server
fi
echo "==> build: rolecore examples echo_server, http_server, resp_server (release, with select)"
# The select backend is opt-in (feature `select`); the headline and idle
# scenarios run the echo server on it too.
cargo build --release --quiet --features select --example echo_server --example http_server --example resp_server
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
