#!/usr/bin/env bash
# Packs prebuilt CUDA binaries, the runtime libraries they need and the stories260K fixtures into .devbin/
# (git-ignored) for a GPU machine that has the driver and CUDA toolkit but not Debian's -dev packages.
# Everything is packed into .devbin/devbin.tar.gz (the binaries and libraries exceed the 64 MiB a device call
# carries uncompressed). Run there (carry .devbin):
#   mkdir -p /tmp/d && tar -C /tmp/d -xzf .devbin/devbin.tar.gz && bash /tmp/d/gpu-session.sh [STAGE...]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-cuda}
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$B" vireo_cli vireo_gpu_tests vireo_gpu_bench
S=$(mktemp -d)
rm -rf .devbin && mkdir -p .devbin "$S/lib" "$S/fixtures/golden"
cp "$B/vireo" "$B/vireo_gpu_tests" "$B/vireo_gpu_bench" scripts/gpu-session.sh "$S"/
cp models/stories260K.gguf tests/server/load_test.py "$S"/
# other builds of the CLI to compare on the GPU machine (gpu-session.sh tiles: TILES_BINARIES)
for x in ${EXTRA_BINARIES:-}; do cp "$x" "$S"/; done
# symbols are not needed there (cuobjdump reads the fatbin); without them vireo_tests fits beside the rest
for x in "$S"/vireo*; do strip --strip-unneeded "$x"; done
L=/lib/x86_64-linux-gnu
cp $L/libpcre2-8.so.0 $L/libstdc++.so.6 $L/libcpp-httplib.so.0.11 $L/libssl.so.3 $L/libcrypto.so.3 $L/libz.so.1 \
   $L/libbrotlidec.so.1 $L/libbrotlienc.so.1 $L/libbrotlicommon.so.1 $L/libicuuc.so.72 $L/libicudata.so.72 "$S"/lib/
# wgpu-native, when the build found it (.venv's PyPI wgpu): the binaries link it for --device webgpu.
# and the Vulkan loader it opens (the NVIDIA driver brings the ICD but not always the loader).
for w in .venv/lib/python3*/site-packages/wgpu/resources/libwgpu_native-release.so; do [ -f "$w" ] && cp "$w" "$S"/lib/; done
[ -f $L/libvulkan.so.1 ] && cp -L $L/libvulkan.so.1 "$S"/lib/
F=../shared/fixtures
if [ -d "$F" ]; then cp "$F"/models/stories260K-*.gguf "$S"/fixtures/ && cp "$F"/golden/* "$S"/fixtures/golden/; fi
tar -C "$S" -cf - . | gzip -9 > .devbin/devbin.tar.gz && rm -rf "$S"
du -sh .devbin/devbin.tar.gz
