#!/usr/bin/env bash
# Builds if needed and runs every test: the GoogleTest suite under ctest (reads ../shared/fixtures when present;
# GPU tests skip without a GPU), a short libFuzzer run of the GGUF reader when clang is installed, and, when
# Emscripten is installed, the WASM golden test under Node, then the browser package in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure -j2
if command -v clang++ >/dev/null; then ./scripts/fuzz.sh "${VIREO_FUZZ_SECONDS:-30}" 2>&1 | tail -n 3; fi
if [ -x scripts/test-wasm.sh ]; then ./scripts/test-wasm.sh; fi
./scripts/test-browser.sh
