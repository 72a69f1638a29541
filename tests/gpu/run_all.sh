#!/usr/bin/env bash
# One script for a GPU machine: build with nvcc, run the CUDA backend tests, benchmark kernels and models, and
# print a summary table at the end.
#
#   tests/gpu/run_all.sh
#
# Environment (all optional):
#   BUILD_DIR           build folder (default build-gpu)
#   VIREO_FIXTURES_DIR  folder with stories260K-*.gguf (or with models/ holding them); default: ./fixtures if it
#                       exists, else ../shared/fixtures
#   MODELS_DIR          where synthetic models are written / reused (default /tmp/vireo-models)
#   PRESETS             synthetic models to benchmark (default "llama3.2-1b llama3.1-8b"; "" skips)
#   QUANT               their quantization (default q4_k_m)
#   EMU_TESTS=1         also run the emulator variants of the tests (slow; CI covers them)
#   JOBS                build parallelism (default: all cores)
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build-gpu}
MODELS_DIR=${MODELS_DIR:-/tmp/vireo-models}
PRESETS=${PRESETS-"llama3.2-1b llama3.1-8b"}
QUANT=${QUANT:-q4_k_m}
JOBS=${JOBS:-$(nproc)}
LOG_DIR=$BUILD_DIR/run_all_logs
if [ -z "${VIREO_FIXTURES_DIR:-}" ]; then
  if [ -d "$ROOT/fixtures" ]; then VIREO_FIXTURES_DIR=$ROOT/fixtures; else VIREO_FIXTURES_DIR=$ROOT/../shared/fixtures; fi
fi
export VIREO_FIXTURES_DIR

say() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
SUMMARY=()
note() { SUMMARY+=("$1"); }

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv 2>/dev/null || echo "nvidia-smi not available"
command -v nvcc >/dev/null && nvcc --version | tail -n 2
for tool in cmake ninja nvcc; do
  command -v $tool >/dev/null || { echo "missing: $tool"; exit 1; }
done

say "configure and build ($BUILD_DIR, -j$JOBS)"
mkdir -p "$LOG_DIR"
t0=$(date +%s)
if ! cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release > "$LOG_DIR/cmake.log" 2>&1; then
  tail -n 30 "$LOG_DIR/cmake.log"
  echo "cmake failed (the build needs the packages of scripts/install-deps.sh: libpcre2-dev, CLI11, GoogleTest)"
  exit 1
fi
grep -q "vireo_cuda" "$BUILD_DIR/build.ninja" || { echo "CMake did not enable CUDA (nvcc not found?)"; exit 1; }
if ! ninja -C "$BUILD_DIR" -j"$JOBS" vireo_gpu_tests vireo_gpu_bench > "$LOG_DIR/build.log" 2>&1; then
  grep -E "error|FAILED" "$LOG_DIR/build.log" | head -n 40
  echo "build failed; full log: $LOG_DIR/build.log"
  exit 1
fi
ninja -C "$BUILD_DIR" -j"$JOBS" vireo_cli > "$LOG_DIR/build_cli.log" 2>&1 || echo "(vireo CLI did not build: no synthetic models)"
note "build: $(( $(date +%s) - t0 )) s"

say "GPU tests (fixtures: $VIREO_FIXTURES_DIR)"
FILTER='*/Cuda'
[ "${EMU_TESTS:-0}" = 1 ] && FILTER='*'
t0=$(date +%s)
"$BUILD_DIR/vireo_gpu_tests" --gtest_filter="$FILTER" --gtest_color=no 2>&1 | tee "$LOG_DIR/tests.log" | \
  grep -E '^\[ +(OK|FAILED|SKIPPED|PASSED) +\]|Failure|Skipped|Expected|Which is|trace:|test_gpu_backend.cpp:[0-9]+: [A-Za-z]' | head -n 200
TEST_RC=${PIPESTATUS[0]}
passed=$(grep -c '^\[       OK \]' "$LOG_DIR/tests.log")
failed=$(grep -c '^\[  FAILED  \].*ms)' "$LOG_DIR/tests.log")
skipped=$(grep -c '^\[  SKIPPED \].*ms)' "$LOG_DIR/tests.log")
note "tests: $passed passed, $failed failed, $skipped skipped (exit $TEST_RC, $(( $(date +%s) - t0 )) s; log $LOG_DIR/tests.log)"

say "kernel benchmarks"
BENCH_RC=0
"$BUILD_DIR/vireo_gpu_bench" --kernels 2>&1 | tee "$LOG_DIR/bench_kernels.log" | grep -v '^RESULT'
[ "${PIPESTATUS[0]}" = 0 ] || BENCH_RC=1

MODELS=()
if [ -n "$PRESETS" ] && [ -x "$BUILD_DIR/vireo" ]; then
  say "synthetic models ($QUANT) in $MODELS_DIR"
  mkdir -p "$MODELS_DIR"
  for p in $PRESETS; do
    f="$MODELS_DIR/$p-$QUANT.gguf"
    if [ ! -s "$f" ]; then
      t0=$(date +%s)
      if "$BUILD_DIR/vireo" synth --preset "$p" --type "$QUANT" -o "$f.tmp" > "$LOG_DIR/synth_$p.log" 2>&1; then
        mv "$f.tmp" "$f"
        echo "$f written in $(( $(date +%s) - t0 )) s"
      else
        tail -n 5 "$LOG_DIR/synth_$p.log"; rm -f "$f.tmp"; continue
      fi
    fi
    MODELS+=("$f")
  done
fi
for f in "$VIREO_FIXTURES_DIR"/models/stories260K-Q4_K_M-fallback.gguf "$VIREO_FIXTURES_DIR"/stories260K-Q4_K_M-fallback.gguf; do
  [ -s "$f" ] && MODELS=("$f" "${MODELS[@]}") && break
done

for f in "${MODELS[@]}"; do
  say "model benchmark: $(basename "$f")"
  "$BUILD_DIR/vireo_gpu_bench" --model "$f" --prefill 512 --decode 64 2>&1 | tee "$LOG_DIR/bench_$(basename "$f").log" | grep -v '^RESULT'
  [ "${PIPESTATUS[0]}" = 0 ] || BENCH_RC=1
done

say "summary"
for s in "${SUMMARY[@]}"; do echo "$s"; done
printf '\n%-60s %12s  %s\n' "benchmark" "value" "unit"
cat "$LOG_DIR"/bench_*.log 2>/dev/null | awk -F'\t' '$1 == "RESULT" {
  name = $2; printf "%-60s %12.1f  %s\n", name, $3, $4 }'
[ "$TEST_RC" = 0 ] && [ "$BENCH_RC" = 0 ]
