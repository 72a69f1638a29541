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
  chromium                            # the browser tests (headless, WebGPU on its SwiftShader)
)
# Native WebGPU tests run on Mesa's lavapipe (Vulkan on the CPU). Debian 12's Mesa 22 lacks what wgpu needs;
# bookworm-backports has Mesa 25 (shader-f16; 128 MiB storage bindings). The suite is added to the existing
# Debian source entry.
need_backports_mesa=0
if ! dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q '^2[5-9]\.'; then need_backports_mesa=1; fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ "$need_backports_mesa" = 1 ]; then
  for f in /etc/apt/sources.list.d/debian.sources; do
    [ -f "$f" ] && $SUDO sed -i -E '/^Suites:(.* )?bookworm( |$)/{/bookworm-backports/!s/$/ bookworm-backports/}' "$f"
  done
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports \
    mesa-vulkan-drivers libvulkan1 || echo "note: Mesa from bookworm-backports not installed; WebGPU tests will skip"
fi

# The WASM build compiles PCRE2 (byte-level BPE tokenizers in the browser) from Debian's source package, which
# `apt-get source` fetches once source entries exist: add deb-src to the main Debian entry.
if [ -f /etc/apt/sources.list.d/debian.sources ] && ! grep -q '^Types:.*deb-src' /etc/apt/sources.list.d/debian.sources; then
  $SUDO sed -i '0,/^Types: deb$/s//Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
  $SUDO apt-get update -qq
fi

# The server tests use the official `openai` Python client, which Debian does not package: a virtual environment
# over Debian's Python (it sees python3-pytest / python3-requests) with openai from PyPI.
cd "$(dirname "$0")/.."
# The same environment carries wgpu-native for the WebGPU backend: PyPI's `wgpu` wheel ships the library and its
# C headers (webgpu.h, wgpu.h), which CMake finds in .venv (only the files are used, not the Python module).
# Playwright drives Debian's Chromium in the browser tests (its own browser downloads are never used).
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import openai, playwright' 2>/dev/null ||
   ! ls .venv/lib/python3*/site-packages/wgpu/resources/libwgpu_native-release.so >/dev/null 2>&1; then
  /usr/bin/python3 -m venv --system-site-packages .venv
  .venv/bin/pip install -q --disable-pip-version-check 'openai>=1.0' 'playwright>=1.40'
  .venv/bin/pip install -q --disable-pip-version-check --no-deps 'wgpu==0.32.0'
fi
