#!/usr/bin/env bash
# Builds if needed and runs every test: the GoogleTest suite under ctest (reads ../shared/fixtures when present)
# and, when Emscripten is installed, the WASM golden test under Node.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure -j2
if [ -x scripts/test-wasm.sh ]; then ./scripts/test-wasm.sh; fi
