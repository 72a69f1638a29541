#!/usr/bin/env bash
# Builds the core for WebAssembly with Emscripten (Debian's `emscripten` package) in build-wasm/, runs the
# stories260K golden tests under Node (tools/wasm/vireo_wasm_golden.cpp) against ../shared/fixtures, and puts the
# browser build (vireo-web.js + .wasm) into web/dist/ for the package in web/. `--build-only`: no Node run.
# Skips (exit 0) when emcc or node is not installed; the driver itself skips when the fixtures are absent.
#
# PCRE2 (byte-level BPE pre-tokenizers) has no wasm32 build in Debian. VIREO_WASM_PCRE2 chooses:
#   fetch (default) build it with Emscripten from Debian's source package (`apt-get source pcre2`, fetched once
#                   into build-wasm/pcre2/src; needs deb-src entries, which scripts/install-deps.sh adds)
#   auto            build it only when its source is already in build-wasm/pcre2/src, else go without
#   off             go without: the WASM tokenizer then loads SentencePiece vocabs only
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
jobs="${VIREO_JOBS:-$(nproc)}"
mode="${VIREO_WASM_PCRE2:-fetch}"
start=$SECONDS

pcre2_dir="$PWD/build-wasm/pcre2"
pcre2_src() { find "$pcre2_dir/src" -mindepth 2 -maxdepth 2 -name CMakeLists.txt -path '*/pcre2-*' 2>/dev/null |
                head -n1 | xargs -r dirname; }
if [ "$mode" = fetch ] && [ -z "$(pcre2_src)" ]; then
  mkdir -p "$pcre2_dir/src"
  # The candidate version's source may be missing from the mirror: try each version apt knows, newest first.
  for v in $(apt-cache showsrc pcre2 2>/dev/null | awk '/^Version:/ {print $2}' | sort -rV | uniq); do
    if (cd "$pcre2_dir/src" && apt-get source -qq "pcre2=$v" >/dev/null 2>&1); then break; fi
    rm -rf "${pcre2_dir:?}/src/"*
  done
  [ -n "$(pcre2_src)" ] || echo "test-wasm: could not fetch the pcre2 source package (deb-src entries?): going without"
fi
# PCRE2 for wasm32 into $pcre2_dir/install$1, compiled with the extra C flags $2 (the threaded build needs
# -pthread in every object it links).
build_pcre2() {
  local inst="$pcre2_dir/install$1" bld="$pcre2_dir/build$1"
  if [ ! -f "$inst/lib/libpcre2-8.a" ] || [ ! -f "$inst/include/pcre2.h" ]; then
    echo "test-wasm: building PCRE2 for wasm32 ${2:+($2) }from $(pcre2_src)"
    emcmake cmake -S "$(pcre2_src)" -B "$bld" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
      -DBUILD_STATIC_LIBS=ON -DPCRE2_BUILD_PCRE2_8=ON -DPCRE2_BUILD_PCRE2_16=OFF -DPCRE2_BUILD_PCRE2_32=OFF \
      -DPCRE2_SUPPORT_JIT=OFF -DPCRE2_SUPPORT_UNICODE=ON -DPCRE2_BUILD_PCRE2GREP=OFF -DPCRE2_BUILD_TESTS=OFF \
      -DCMAKE_C_FLAGS="$2" -DCMAKE_INSTALL_PREFIX="$inst" >/dev/null
    cmake --build "$bld" --target pcre2-8-static -j "$jobs" >/dev/null
    mkdir -p "$inst/include" "$inst/lib"
    cp "$bld/pcre2.h" "$inst/include/"
    cp "$bld/libpcre2-8.a" "$inst/lib/"
  fi
}
pcre2_prefix=""
pcre2_prefix_mt=""
if [ "$mode" != off ] && [ -n "$(pcre2_src)" ]; then
  build_pcre2 "" ""
  build_pcre2 "-mt" "-pthread"
  pcre2_prefix="$pcre2_dir/install"
  pcre2_prefix_mt="$pcre2_dir/install-mt"
fi

gen=()
if command -v ninja >/dev/null 2>&1 && [ ! -f build-wasm/Makefile ]; then gen=(-G Ninja); fi
emcmake cmake -S . -B build-wasm "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DVIREO_WASM_PCRE2_PREFIX="$pcre2_prefix" >/dev/null
cmake --build build-wasm --target vireo_wasm_golden vireo_web -j "$jobs"
# The threaded CPU module (vireo-web-mt: -pthread, for cross-origin isolated pages) in its own build tree.
emcmake cmake -S . -B build-wasm-mt "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DVIREO_WASM_THREADS=ON \
  -DVIREO_BUILD_TESTS=OFF -DVIREO_BUILD_BENCH=OFF -DVIREO_WASM_PCRE2_PREFIX="$pcre2_prefix_mt" >/dev/null
cmake --build build-wasm-mt --target vireo_web -j "$jobs"
mkdir -p web/dist
cp build-wasm/vireo-web.js build-wasm/vireo-web.wasm web/dist/
cp build-wasm-mt/vireo-web-mt.js build-wasm-mt/vireo-web-mt.wasm build-wasm-mt/vireo-web-mt.worker.js web/dist/
echo "test-wasm: build took $((SECONDS - start)) s (browser build in web/dist)"
if [ "${1:-}" = --build-only ]; then exit 0; fi

# Linked with -sSINGLE_FILE=1 (no .wasm fetch) and -sNODERAWFS=1 (host paths).
node build-wasm/vireo_wasm_golden.js ../shared/fixtures
