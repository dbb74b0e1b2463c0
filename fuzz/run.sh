#!/usr/bin/env bash
# Runs every fuzz target of fuzz/Cargo.toml for $1 seconds each (default 30),
# seeded from fuzz/seeds/<target> (and fuzz/<target>.dict, if there is one),
# growing fuzz/corpus/<target>. Exits
# non-zero if any target crashes, panics, times out or fails to build; the
# input that did it is left in fuzz/artifacts/<target>/.
#
# cargo-fuzz needs nightly-only flags; with RUSTC_BOOTSTRAP=1 the stable
# toolchain accepts them.
set -euo pipefail

seconds="${1:-30}"
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: $0 [seconds per target]" >&2
    exit 2
    ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cargo fuzz build
targets=$(cargo fuzz list)

failed=()
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    seeds=()
    if [ -d "seeds/$t" ]; then
        seeds=("seeds/$t")
    fi
    dict=()
    if [ -f "$t.dict" ]; then
        dict=("-dict=$t.dict")
    fi
    echo "=== $t: ${seconds}s" >&2
    # -timeout: an input that runs this long is a hang, reported as a crash.
    if cargo fuzz run "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=256 \
        -print_final_stats=1 "${dict[@]}"; then
        echo "=== $t: ok" >&2
    else
        echo "=== $t: FAILED (see fuzz/artifacts/$t/)" >&2
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "run.sh: failing targets: ${failed[*]}" >&2
    exit 1
fi
echo "run.sh: all targets ran ${seconds}s without a crash: $targets" | tr '\n' ' ' >&2
echo >&2
