#!/usr/bin/env bash
# Packs prebuilt CUDA binaries, the runtime libraries they need and the stories260K fixtures into .devbin/
# (git-ignored) for a GPU machine that has the driver and CUDA toolkit but not Debian's -dev packages.
# Then run there: bash .devbin/gpu-session.sh [tests|bench|all]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-cuda}
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$B" vireo_cli vireo_gpu_tests vireo_gpu_bench
rm -rf .devbin && mkdir -p .devbin/lib .devbin/fixtures/golden
cp "$B/vireo" "$B/vireo_gpu_tests" "$B/vireo_gpu_bench" scripts/gpu-session.sh .devbin/
cp /lib/x86_64-linux-gnu/libpcre2-8.so.0 /lib/x86_64-linux-gnu/libstdc++.so.6 .devbin/lib/
F=../shared/fixtures
if [ -d "$F" ]; then cp "$F"/models/stories260K-*.gguf .devbin/fixtures/ && cp "$F"/golden/* .devbin/fixtures/golden/; fi
du -sh .devbin
