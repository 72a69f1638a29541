#!/usr/bin/env bash
# Installs everything vireo needs to build and test on Debian 12 (bookworm). Safe to run again.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
pkgs=(
  build-essential cmake ninja-build pkg-config git
  libcli11-dev nlohmann-json3-dev libpcre2-dev libfmt-dev libcpp-httplib-dev libicu-dev
  python3 python3-venv python3-pytest python3-requests  # the server's test suite (tests/server)
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev            # libFuzzer target and sanitizers
  emscripten nodejs                   # the WASM build and its test under Node
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The server tests use the official `openai` Python client, which Debian does not package: a virtual environment
# over Debian's Python (it sees python3-pytest / python3-requests) with openai from PyPI.
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import openai' 2>/dev/null; then
  /usr/bin/python3 -m venv --system-site-packages .venv
  .venv/bin/pip install -q --disable-pip-version-check 'openai>=1.0'
fi
