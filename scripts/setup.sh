#!/usr/bin/env bash
# Installs the dependencies and builds vireo (native CLI, library, tests).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
