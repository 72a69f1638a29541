#!/usr/bin/env bash
# Builds the GGUF libFuzzer target with clang (ASan + UBSan) and runs it.
#
#   scripts/fuzz.sh [SECONDS] [extra libFuzzer flags...]      (default 60 s)
#
# Seeds are generated at run time from the fixture models (../shared/fixtures/models/*.gguf, shrunk to one row
# per tensor) plus writer-made files; the growing corpus and any crash files stay in the build dir, which is
# not committed. Environment: VIREO_FUZZ_BUILD (build dir, default build-fuzz), VIREO_FUZZ_JOBS (build jobs,
# default 1), VIREO_FIXTURES (fixtures dir, default ../shared/fixtures).
# Reproduce a crash: build-fuzz/fuzz_gguf build-fuzz/fuzz-artifacts/crash-<hash>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
build=${VIREO_FUZZ_BUILD:-$root/build-fuzz}
jobs=${VIREO_FUZZ_JOBS:-1}
fixtures=${VIREO_FIXTURES:-$root/../shared/fixtures}

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DVIREO_BUILD_FUZZ=ON -DVIREO_BUILD_TESTS=OFF -DVIREO_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$build" --target fuzz_gguf fuzz_gguf_seeds -j "$jobs"

seeds=$build/fuzz-seeds
corpus=$build/fuzz-corpus
artifacts=$build/fuzz-artifacts
rm -rf "$seeds"
mkdir -p "$seeds" "$corpus" "$artifacts"
shopt -s nullglob
models=("$fixtures"/models/*.gguf)
[[ ${#models[@]} -gt 0 ]] || echo "note: no fixture models under $fixtures/models; using writer-made seeds only"
"$build/fuzz_gguf_seeds" "$seeds" "${models[@]}"

# -max_len covers the largest seed (a shrunk fixture with its full vocabulary is ~20 KB).
exec "$build/fuzz_gguf" "$corpus" "$seeds" \
  -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
  -use_value_profile=1 -print_final_stats=1 -artifact_prefix="$artifacts/" "$@"
