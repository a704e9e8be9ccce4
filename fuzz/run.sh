#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after another, then prints per-target stats.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Works on stable Rust. The targets are built without a sanitizer (`-s none`): the code under
# test (core and mail-parser) has no `unsafe`, so AddressSanitizer would find nothing that
# Rust's own checks do not, at a quarter of the speed. Debug assertions and overflow checks
# stay on (cargo-fuzz's default). To build with ASan anyway: SANITIZER=address fuzz/run.sh N
# (sets RUSTC_BOOTSTRAP=1, since -Zsanitizer is a nightly flag).
#
# New inputs go to a scratch corpus ($FUZZ_WORK, default /tmp/atacama-fuzz), which starts
# from the seeds in fuzz/corpus/<target> but never writes to them; crashes go to
# fuzz/artifacts/<target>/. One fuzzer runs at a time (-jobs=1): the machine is shared.
set -euo pipefail

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")/.."
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(session command sasl markup message http)
fi
sanitizer=${SANITIZER:-none}
work=${FUZZ_WORK:-/tmp/atacama-fuzz}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi

cargo fuzz build -s "$sanitizer"

summary=()
status=0
for target in "${targets[@]}"; do
    mkdir -p "$work/corpus/$target" "$work/logs"
    log="$work/logs/$target.log"
    echo "== $target: ${seconds}s, log in $log"
    # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: one that needs 2 GB leaks.
    if cargo fuzz run -s "$sanitizer" "$target" "$work/corpus/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="FAILED (see $log and fuzz/artifacts/$target/)"
        status=1
    fi
    # The last status line (`#N DONE cov: … ft: … exec/s: …`) and the final stats.
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    summary+=("$(printf '%-8s %-7s runs=%-11s exec/s=%-7s cov=%-6s ft=%-7s' \
        "$target" "${seconds}s" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}") $result")
done

echo
printf '%s\n' "${summary[@]}"
exit "$status"
