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
cp models/stories260K.gguf tests/server/load_test.py .devbin/
L=/lib/x86_64-linux-gnu
cp $L/libpcre2-8.so.0 $L/libstdc++.so.6 $L/libcpp-httplib.so.0.11 $L/libssl.so.3 $L/libcrypto.so.3 $L/libz.so.1 \
   $L/libbrotlidec.so.1 $L/libbrotlienc.so.1 $L/libbrotlicommon.so.1 .devbin/lib/
F=../shared/fixtures
if [ -d "$F" ]; then cp "$F"/models/stories260K-*.gguf .devbin/fixtures/ && cp "$F"/golden/* .devbin/fixtures/golden/; fi
du -sh .devbin
