#!/usr/bin/env bash
# One-shot check of the CUDA backend on a machine with an NVIDIA GPU (sm_80 or newer):
# configures and builds the CUDA test and benchmark binaries for the local GPU only, runs the
# oracle tests, runs the benchmarks, and writes everything to the folder given as argument:
#
#   summary.json      steps (rc, seconds), device, commit: read this first
#   device.txt        nvidia-smi's view of the GPU
#   configure.log build.log
#   cuda_tests.log    ttq_cuda_tests (Catch2 console report, with test durations)
#   bench.log bench.json             ttq_bench_cuda (console + Google Benchmark JSON)
#   targets.json      the issue's targets next to the measured numbers, met or not
#
# GPU time is scarce, so the script is meant to be run once, as is: every step has a timeout,
# the whole run stops by a deadline (7.5 minutes by default, TTQ_GPU_CHECK_DEADLINE seconds), a
# failing step never stops the later ones, and summary.json is always written.
#
# Usage: scripts/gpu-check.sh <output-folder> [build-folder (default: build-gpu)]
set -u

if [ $# -lt 1 ]; then
  echo "usage: $0 <output-folder> [build-folder]" >&2
  exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build-gpu}
deadline=$(( $(date +%s) + ${TTQ_GPU_CHECK_DEADLINE:-450} ))
jobs=$(nproc 2>/dev/null || echo 4)
steps=""

# Seconds left before the deadline, minus what later steps need at least.
remaining() { echo $(( deadline - $(date +%s) - $1 )); }

# run_step NAME TIMEOUT LOG COMMAND...: runs with a timeout, records rc and duration.
run_step() {
  local name=$1 limit=$2 log=$3
  shift 3
  if [ "$limit" -lt 5 ]; then
    echo "== $name: skipped, no time left before the deadline" | tee "$log"
    steps="$steps\"$name\": {\"rc\": null, \"seconds\": 0, \"skipped\": true},"
    return 1
  fi
  echo "== $name (timeout ${limit}s): $*"
  local start=$(date +%s)
  timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$log" 2>&1
  local rc=$?
  local seconds=$(( $(date +%s) - start ))
  tail -n 5 "$log"
  echo "== $name: rc $rc after ${seconds}s"
  steps="$steps\"$name\": {\"rc\": $rc, \"seconds\": $seconds, \"timed_out\": $([ $rc -eq 124 ] && echo true || echo false)},"
  return $rc
}

nvidia-smi > "$out/device.txt" 2>&1 || echo "nvidia-smi failed" >> "$out/device.txt"
device=$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>/dev/null | head -n 1)
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')
arch=${arch:-native}
echo "device: ${device:-unknown} (CUDA architecture ${arch})"

run_step configure $(( $(remaining 300) < 90 ? $(remaining 300) : 90 )) "$out/configure.log" \
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DTTQ_ENABLE_CUDA=ON \
  "-DCMAKE_CUDA_ARCHITECTURES=$arch" -DTTQ_BUILD_EXAMPLES=OFF -DTTQ_BUILD_TOOLS=OFF -DTTQ_BUILD_TESTS=ON -DTTQ_BUILD_BENCHMARKS=ON
configured=$?

built=1
if [ $configured -eq 0 ]; then
  run_step build $(( $(remaining 150) < 270 ? $(remaining 150) : 270 )) "$out/build.log" \
    cmake --build "$build" --target ttq_cuda_tests ttq_bench_cuda -j "$jobs"
  built=$?
fi

if [ $built -eq 0 ]; then
  run_step tests $(( $(remaining 75) < 150 ? $(remaining 75) : 150 )) "$out/cuda_tests.log" \
    "$build/tests/cuda/ttq_cuda_tests" --durations yes || true
  run_step bench $(( $(remaining 5) )) "$out/bench.log" \
    "$build/benchmarks/cuda/ttq_bench_cuda" "--benchmark_out=$out/bench.json" --benchmark_out_format=json \
    "--ttq_summary=$out/targets.json" || true
fi

commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain 2>/dev/null | wc -l | tr -d ' ')
cat > "$out/summary.json" <<EOF
{
  "device": "${device:-unknown}",
  "cuda_architecture": "$arch",
  "commit": "$commit",
  "uncommitted_files": $dirty,
  "steps": {${steps%,}},
  "files": ["device.txt", "configure.log", "build.log", "cuda_tests.log", "bench.log", "bench.json", "targets.json"]
}
EOF
echo "results in $out:"
ls -l "$out"
cat "$out/summary.json"
[ -f "$out/targets.json" ] && cat "$out/targets.json"
exit 0
