#!/usr/bin/env bash
# Runs the browser package (web/) in Debian's Chromium, headless, with WebGPU on SwiftShader, driven by Playwright
# (tests/browser/test_browser.py; artifacts such as the demo screenshot land in build/browser-artifacts/).
# Needs web/dist (scripts/test-wasm.sh builds it). Skips (exit 0) without Chromium, Playwright or web/dist.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  echo "test-browser: chromium not installed (apt-get install chromium): browser tests skipped"; exit 0
fi
if ! .venv/bin/python -c 'import playwright' 2>/dev/null; then
  echo "test-browser: playwright not in .venv (scripts/install-deps.sh): browser tests skipped"; exit 0
fi
if [ ! -f web/dist/vireo-web.wasm ]; then
  echo "test-browser: web/dist not built (scripts/test-wasm.sh): browser tests skipped"; exit 0
fi
# Node checks of the package's pure-JS parts first (no browser needed).
node tests/browser/sha256_test.mjs
# Playwright's driver must not download browsers; every run is bounded.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
timeout "${VIREO_BROWSER_TIMEOUT:-900}" .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/browser "$@"
