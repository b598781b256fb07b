#!/usr/bin/env bash
# A bounded fuzz smoke, for CI and by hand: every fuzz target runs for
# FUZZ_SECONDS (30 by default) on a copy of its checked-in corpus, one after
# the other, so the repository is never modified.
#
#   bash fuzz/smoke.sh
#
# With a nightly toolchain installed it builds with the address sanitizer
# (`cargo +nightly fuzz run`); otherwise on stable without one
# (`cargo fuzz run --sanitizer none`). It installs cargo-fuzz if it is
# missing. A crash (a panic, a broken property, a sanitizer report, a hang)
# fails the script; the log shows the target's message and the crashing
# input in hex and base64, with the command that replays it, and the input is
# also kept under fuzz/artifacts/<target>/ (ignored by git).
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 30)
#   FUZZ_RUNS       most executions per target (default -1: no bound but time)
#   FUZZ_TIMEOUT    seconds one input may take before it counts as a hang (default 20)
#   FUZZ_TARGETS    targets to run, space-separated (default: all of them)
#   FUZZ_TOOLCHAIN  `stable` or `nightly` to force one (default: nightly if installed)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${FUZZ_SECONDS:-30}"
runs="${FUZZ_RUNS:--1}"
timeout="${FUZZ_TIMEOUT:-20}"
targets="${FUZZ_TARGETS:-machine framer sim_echo_buffered sim_echo_raw sim_chat resp resp_exec http_head sim_resp sim_http sim_tls}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked </dev/null
fi

toolchain="${FUZZ_TOOLCHAIN:-}"
if [ -z "$toolchain" ]; then
    toolchain=stable
    if command -v rustup >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        toolchain=nightly
    fi
fi
case "$toolchain" in
    # Each toolchain builds in its own directory, so neither rebuilds the other's.
    nightly) fuzz=(cargo +nightly fuzz) options=(--target-dir fuzz/target/nightly) ;;
    stable) fuzz=(cargo fuzz) options=(--sanitizer none) ;;
    *)
        echo "fuzz smoke: FUZZ_TOOLCHAIN must be stable or nightly, not '$toolchain'" >&2
        exit 2
        ;;
esac
case "$toolchain" in
    nightly) rustc_version="$(rustc +nightly --version)" ;;
    *) rustc_version="$(rustc --version)" ;;
esac
case "$toolchain" in
    nightly) sanitizer_name=address ;;
    *) sanitizer_name=none ;;
esac
echo "fuzz smoke: $rustc_version, $(cargo fuzz --version), sanitizer: $sanitizer_name"
echo "fuzz smoke: ${seconds}s per target: $targets"

work="$(mktemp -d "${TMPDIR:-/tmp}/rolecore-fuzz-smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"${fuzz[@]}" build "${options[@]}" </dev/null

failed=()
for target in $targets; do
    if [ ! -d "fuzz/corpus/$target" ]; then
        echo "fuzz smoke: no checked-in corpus fuzz/corpus/$target" >&2
        failed+=("$target")
        continue
    fi
    corpus="$work/corpus/$target"
    mkdir -p "$corpus" "$work/artifacts/$target"
    cp -R "fuzz/corpus/$target/." "$corpus/"
    log="$work/$target.log"
    start=$SECONDS
    status=0
    "${fuzz[@]}" run "${options[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" -runs="$runs" -timeout="$timeout" -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$target/" </dev/null >"$log" 2>&1 || status=$?
    took=$((SECONDS - start))
    # libFuzzer's last status line: executions, coverage, corpus.
    last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    executed="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    artifacts=("$work/artifacts/$target"/*)
    if [ "$status" -eq 0 ] && [ ! -e "${artifacts[0]}" ]; then
        echo "fuzz smoke: $target ok in ${took}s: ${executed:-?} runs; ${last:-no status line}"
        continue
    fi
    failed+=("$target")
    echo
    echo "fuzz smoke: $target FAILED (exit $status) after ${took}s; the end of its log:" >&2
    tail -n 120 "$log" >&2
    mkdir -p "fuzz/artifacts/$target"
    for input in "${artifacts[@]}"; do
        [ -e "$input" ] || continue
        name="$(basename "$input")"
        cp "$input" "fuzz/artifacts/$target/$name"
        echo >&2
        echo "crashing input of $target: $name ($(wc -c <"$input") bytes), kept as fuzz/artifacts/$target/$name" >&2
        echo "hex:" >&2
        od -An -tx1 -v "$input" | tr -d ' \n' >&2
        echo >&2
        echo "base64:" >&2
        base64 -w0 "$input" >&2
        echo >&2
        echo "replay: ${fuzz[*]} run ${options[*]} $target fuzz/artifacts/$target/$name" >&2
        echo "   or: echo '$(base64 -w0 "$input")' | base64 -d > crash.bin && ${fuzz[*]} run ${options[*]} $target crash.bin" >&2
    done
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz smoke: all targets ran ${seconds}s without a crash"
