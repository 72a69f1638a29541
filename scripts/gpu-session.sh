#!/usr/bin/env bash
# GPU session (run on the device machine from .devbin/, made by scripts/make-devbin.sh): prebuilt binaries,
# GPU tests, synthetic models, benchmarks. Results go to $OUT (or ./out).
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export VIREO_FIXTURES_DIR=$PWD/fixtures
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
ldd ./vireo_gpu_tests | grep -i "not found"
STAGE=${1:-all}
if [ "$STAGE" = all ] || [ "$STAGE" = tests ]; then
  timeout 300 ./vireo_gpu_tests --gtest_filter='*Cuda*' 2>&1 | tee $OUT/gpu_tests.log | grep -E "^\[  (FAILED|PASSED|  OK|SKIPPED) |Failure|error|rel|FAILED TEST" | head -80
fi
if [ "$STAGE" = all ] || [ "$STAGE" = bench ]; then
  mkdir -p /tmp/m
  ./vireo synth --preset llama3.2-1b --type q4_k_m -o /tmp/m/l1b-q4km.gguf 2>&1 | tail -1
  ./vireo synth --preset llama3.1-8b --type q4_k_m -o /tmp/m/l8b-q4km.gguf 2>&1 | tail -1
  timeout 120 ./vireo_gpu_bench --kernels 2>&1 | tee $OUT/bench_kernels.log | grep -v '^RESULT' | tail -40
  for f in /tmp/m/l1b-q4km.gguf /tmp/m/l8b-q4km.gguf; do
    timeout 120 ./vireo_gpu_bench --model $f --prefill 512 --decode 64 2>&1 | tee -a $OUT/bench_models.log | grep -v '^RESULT' | tail -15
    timeout 180 ./vireo bench --device cuda -m $f -p 512 -n 128 -r 3 2>&1 | tail -4
  done
  ./vireo run --device cuda -m fixtures/stories260K-f32.gguf -p "Once upon a time" -n 64 --temp 0 > $OUT/run_cuda.txt
  ./vireo run -m fixtures/stories260K-f32.gguf -p "Once upon a time" -n 64 --temp 0 > $OUT/run_cpu.txt
  cmp $OUT/run_cuda.txt $OUT/run_cpu.txt && echo "stories260K greedy: CUDA == CPU"
fi
