#!/bin/sh
# RUSTC_WRAPPER for benches/fuzz.sh: adds libFuzzer's coverage instrumentation
# (the flags cargo-fuzz sets) to the crates under test only, dr-reactor and
# the fuzz targets, and compiles everything else as the main build does, so
# its artifacts are reused.
rustc=$1
shift
case " $* " in
*" --crate-name dr_reactor "* | *" --crate-name dr_reactor_fuzz "* | *"/fuzz_targets/"*)
    exec "$rustc" "$@" \
        -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares \
        --cfg fuzzing
    ;;
esac
exec "$rustc" "$@"
