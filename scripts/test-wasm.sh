#!/usr/bin/env bash
# Builds the core for WebAssembly with Emscripten (Debian's `emscripten` package) in build-wasm/ and runs the
# stories260K golden tests under Node (tools/wasm/vireo_wasm_golden.cpp) against ../shared/fixtures.
# Skips (exit 0) when emcc or node is not installed; the driver itself skips when the fixtures are absent.
# VIREO_JOBS sets the build parallelism (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v emcc >/dev/null 2>&1 || ! command -v emcmake >/dev/null 2>&1; then
  echo "test-wasm: emcc not found (apt-get install emscripten): WASM build and test skipped"
  exit 0
fi
if ! command -v node >/dev/null 2>&1; then
  echo "test-wasm: node not found (apt-get install nodejs): WASM build and test skipped"
  exit 0
fi

# Emscripten 3.1.6's JS tools find acorn & co. only through NODE_PATH.
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"

gen=()
if command -v ninja >/dev/null 2>&1 && [ ! -f build-wasm/Makefile ]; then gen=(-G Ninja); fi
start=$SECONDS
emcmake cmake -S . -B build-wasm "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-wasm --target vireo_wasm_golden -j "${VIREO_JOBS:-$(nproc)}"
echo "test-wasm: build took $((SECONDS - start)) s"

# Linked with -sSINGLE_FILE=1 (no .wasm fetch) and -sNODERAWFS=1 (host paths).
node build-wasm/vireo_wasm_golden.js ../shared/fixtures
