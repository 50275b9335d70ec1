#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, a cargo-fuzz package) and runs each for a
# fixed number of executions, one after the other, then prints a table of
# target / execs / exec/s / crashes / corpus size. See docs/security.md
# ("Fuzzing").
#
#   benches/fuzz.sh [--quick] [--runs N] [--max-time SECONDS] [--no-build] [TARGET...]
#
# --quick runs 100,000 executions per target instead of 10,000,000;
# --max-time stops each target after that long even if short of its runs;
# --no-build runs the targets as last built.
# The targets are built on the main build's dev profile and target dir
# (CARGO_TARGET_DIR, else target/), reusing its dependencies, with coverage
# instrumentation for dr-reactor and the targets only (fuzz/rustc-sancov.sh);
# any toolchain works. FUZZ_LOGS: one log per target (default fuzz/logs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$root/fuzz"
runs=10000000
max_time=0
build=1
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) runs=100000 ;;
        --runs) runs="$2"; shift ;;
        --max-time) max_time="$2"; shift ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1") ;;
    esac
    shift
done
target_dir=${CARGO_TARGET_DIR:-$root/target}
logs=${FUZZ_LOGS:-$fuzz/logs}
mkdir -p "$logs"
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' "$fuzz/Cargo.toml" | grep -v '^dr-reactor')
fi

# Seeds: the fixtures the test suite already has, plus fuzz/seeds/TARGET
# for inputs the tests only write inline.
seed() {
    local target=$1
    shift
    local corpus="$fuzz/corpus/$target"
    mkdir -p "$corpus"
    for f in "$@"; do
        [ -f "$f" ] && cp -n "$f" "$corpus/seed-$(basename "$f")"
    done
    if [ -d "$fuzz/seeds/$target" ]; then
        for f in "$fuzz/seeds/$target"/*; do cp -n "$f" "$corpus/seed-$(basename "$f")"; done
    fi
    return 0
}
seed alertmanager "$root"/../shared/fixtures/alertmanager-0.25/webhook-*.json "$root"/examples/*.json
seed rules "$root"/rules/*.yaml "$root"/tests/fixtures/validate/{bad-values,holds-and-templates,ok-rule,runtime-bounds,unknown-key}.yaml
seed catalogue "$root"/config/services.yaml "$root"/tests/fixtures/validate/broken-catalogue.yaml
seed config "$root"/config/dr-reactor.yaml
for t in "${targets[@]}"; do seed "$t"; done

dict() {
    case "$1" in
        alertmanager) echo alertmanager ;;
        kafka_*) echo kafka ;;
        slack_*) echo slack ;;
        *) echo "$1" ;;
    esac
}

if [ "$build" = 1 ]; then
    echo "building ${#targets[@]} target(s) (debug assertions on)"
    RUSTC_WRAPPER="$fuzz/rustc-sancov.sh" CARGO_TARGET_DIR="$target_dir" \
        cargo build --manifest-path "$fuzz/Cargo.toml" --bins
fi

results=()
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    bin="$target_dir/debug/$t"
    artifacts="$fuzz/artifacts/$t"
    mkdir -p "$artifacts"
    before=$(find "$artifacts" -type f | wc -l)
    echo "== $t: $runs runs (log $log)"
    set +e
    "$bin" "$fuzz/corpus/$t" \
        -runs="$runs" -max_total_time="$max_time" -dict="$fuzz/dict/$(dict "$t").dict" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 30
        line=$(grep -a '^#[0-9]' "$log" | tail -n 1)
        [ -n "$line" ] && echo "   $t: ${line%% L:*}"
    done
    wait "$pid"
    status=$?
    set -e
    execs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -n 1)
    rate=$(grep -a 'stat::average_exec_per_sec' "$log" | awk '{print $2}' | tail -n 1)
    if [ -z "$execs" ]; then
        # A crash ends the run before the final stats: the last status line.
        last=$(grep -a '^#[0-9]' "$log" | tail -n 1)
        execs=$(echo "$last" | sed -E 's/^#([0-9]+).*/\1/')
        rate=$(echo "$last" | sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p')
    fi
    crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
    corpus=$(find "$fuzz/corpus/$t" -type f | wc -l)
    [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes="exit $status"
    results+=("$t|${execs:-0}|${rate:-0}|$crashes|$corpus")
done

printf '\n%-20s %12s %8s %8s %8s\n' target execs exec/s crashes corpus
for r in "${results[@]}"; do
    IFS='|' read -r t e s c n <<<"$r"
    printf '%-20s %12s %8s %8s %8s\n' "$t" "$e" "$s" "$c" "$n"
done
