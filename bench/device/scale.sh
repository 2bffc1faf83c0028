#!/usr/bin/env bash
# The scale suite on the 16-core device machine (Ubuntu 24.04, kernel 6.18, root; no cargo,
# clang or iproute2 there). Run from the repository root after copying a warpline-bench built
# elsewhere to ./.devbin/warpline-bench:
#
#   cargo build -p warpline-bench --profile bench     # lands in target/release/
#   mkdir -p .devbin && cp target/release/warpline-bench .devbin/
#   OUT=/some/folder bash bench/device/scale.sh
#
# The binary needs glibc >= 2.34 (the machine has 2.39) and nothing else: no external commands,
# no source files; results go where --out says.
#
# Measures worker counts 1,2,4,8,12 (clamped to the CPUs there are) for the scale suite and
# for one tunnel spread over the workers (spread suite, Spread = on), then the one-core AEAD
# ceiling (crypto suite) on the same CPU for context, and copies into "$OUT": scale.json,
# scale.svg, spread.json, spread.svg, crypto.json, crypto.svg, run.log, machine.txt (eight
# files). About 5 minutes on 16 cores; SCALE_SECONDS (default 1.5, per point) and SCALE_RUNS (default 3) trade time for
# precision: time ~ 8 cases x 5 counts x runs x seconds.
set -euo pipefail

bin=./.devbin/warpline-bench
seconds=${SCALE_SECONDS:-1.5}
runs=${SCALE_RUNS:-3}
workers=${SCALE_WORKERS:-1,2,4,8,12}

if [ -z "${OUT:-}" ]; then
    echo "scale.sh: set OUT to the folder the results should be copied to" >&2
    exit 2
fi
if [ ! -x "$bin" ]; then
    echo "scale.sh: no executable $bin (build warpline-bench with --profile bench and copy it there)" >&2
    exit 2
fi
mkdir -p "$OUT"
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
log="$OUT/run.log"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "kernel: $(uname -r)"
    echo "cpus online: $(cat /sys/devices/system/cpu/online) ($(nproc) usable by this process)"
    grep -m1 'model name' /proc/cpuinfo || true
    grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512f|avx512vl|vaes|vpclmulqdq|avx2|aes|sha_ni)$' | tr '\n' ' ' || true
    echo
    echo "governor: $(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo n/a)"
    echo "load before: $(cat /proc/loadavg)"
    echo "core of each cpu (cpu: package/core):"
    for topology in /sys/devices/system/cpu/cpu[0-9]*/topology; do
        cpu=${topology%/topology}
        echo "  ${cpu##*/}: $(cat "$topology/physical_package_id" 2>/dev/null)/$(cat "$topology/core_id" 2>/dev/null)"
    done
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

started=$(date +%s)
echo "== scale: workers $workers, $seconds s per point, $runs runs ($(date -u +%T))" | tee "$log"
"$bin" scale --workers "$workers" --seconds "$seconds" --runs "$runs" --out "$results" 2>&1 | tee -a "$log"
cp "$results/scale.json" "$results/scale.svg" "$OUT/"

echo "== spread: one tunnel over workers $workers, $seconds s per point, $runs runs ($(date -u +%T))" | tee -a "$log"
"$bin" spread --workers "$workers" --seconds "$seconds" --runs "$runs" --out "$results" 2>&1 | tee -a "$log"
cp "$results/spread.json" "$results/spread.svg" "$OUT/"

echo "== crypto: one-core AEAD ceiling on this CPU ($(date -u +%T))" | tee -a "$log"
"$bin" crypto --out "$results" 2>&1 | tee -a "$log"
cp "$results/crypto.json" "$results/crypto.svg" "$OUT/"

echo "== done in $(( $(date +%s) - started )) s; load after: $(cat /proc/loadavg)" | tee -a "$log"
ls -l "$OUT"
