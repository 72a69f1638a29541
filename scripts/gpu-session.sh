#!/usr/bin/env bash
# GPU session (run on the device machine from the unpacked .devbin/devbin.tar.gz made by scripts/make-devbin.sh): prebuilt binaries,
# GPU tests, synthetic models, benchmarks. Results go to $OUT (or ./out); a compact table is printed last.
#
#   mkdir -p /tmp/d && tar -C /tmp/d -xzf .devbin/devbin.tar.gz && bash /tmp/d/gpu-session.sh [STAGE...]
#
# Stages (default: tests kernels models):
#   tests      the CUDA tests (*Cuda*)
#   e2e        the stories260K end-to-end test, by default and under E2E_SWITCHES (default VIREO_CUDA_PDL=0);
#              E2E_FIXTURE=stories260K-Q6_K-fallback.gguf runs one fixture
#   fused      the fused-kernel, graph and attention tests
#   kernels    vireo_gpu_bench --kernels --quick (new and old kernels side by side)
#   kernels-all  every weight type
#   models     1B and 8B Q4_K_M: new decode path, with PDL, and the old one (VIREO_CUDA_FUSE/PDL/MV/ATTN=0)
#   long       8B Q4_K_M decode at position 16384
#   types      8B Q8_0 and F16
#   cli        vireo bench --device cuda on 1B and 8B Q4_K_M, and the stories260K greedy CPU/CUDA check
#   batch      the engine tests added with continuous batching (synthetic 1B logits, scheduler), vireo bench
#              --parallel 1,8,32,64 on 1B and 8B Q4_K_M, and the HTTP load test on 1B (needs python3;
#              LOAD_SECONDS=0 skips it)
#   profile    VIREO_CUDA_PROFILE=1 vireo bench: GPU time per kernel group of eager steps, per step size
#              (PROFILE_PRESETS, default llama3.1-8b llama3.2-1b; PROFILE_PARALLEL, default "1 64")
#   ncu        Nsight Compute: per-kernel time and DRAM bytes of a short bench (NCU_PRESET, NCU_COUNT)
#   tiles      the int8 tensor-core tiles of mv.cu: vireo bench --parallel 1,2,3,4,6,8 on 1B and 8B Q4_K_M with
#              VIREO_CUDA_MV_TILES=0 and the default, then Nsight Compute on the 8-sequence tile kernels of 8B;
#              TILES_BINARIES="vireo-a vireo-b" adds other builds of vireo (unpacked next to it) to the A/B; TILES_NCU=0 skips ncu
#   webgpu     --device webgpu on NVIDIA Vulkan: the WebGpu tests (vireo_tests in EXTRA_BINARIES), vireo bench
#              on 1B and 8B Q4_K_M under WEBGPU_VARIANTS beside CUDA, 1B pp512 with and without the f16 prefill
#              tiles, Q8_0 and Q4_K_M (WEBGPU_F16=0 skips), and a per-kernel profile of 8B
#   chain      decode chains (EngineOptions::decode_chain): vireo bench on 1B and 8B Q4_K_M with --chain under
#              CHAIN_VALUES (default "1 8 16"), then --parallel 1,8,32 on 1B with --chain 1 and 8
#   wide       the int8 tiles for 9-64 tokens (VIREO_CUDA_TILE_MAX): vireo bench --parallel 8,16,32,64 on 1B and
#              8B Q4_K_M with TILE_VALUES (default "8 64"), alternating, twice
#   qfrag      qgemm_frag.cu: its GPU tests, its machine code (qfrag.sass, where cuobjdump exists), 16/32/64-token
#              kernel times under QFRAG_KERNEL_VARIANTS (VIREO_CUDA_QFRAG=0 is qgemm.cu), vireo bench --parallel
#              16,32,64 on 8B/1B Q4_K_M under QFRAG_VARIANTS (a comma joins several variables of one variant), and
#              Nsight Compute on 64-token launches (QFRAG_NCU=0 skips)
#   ksplit     one-token matvec launches of few items split over a block (VIREO_CUDA_MV_KSPLIT=0/1/2: never, float weights, all) against the
#              default, alternating, twice: vireo_gpu_bench decode on 8B F16, Q8_0, Q4_K_M and 1B Q4_K_M
#   fold       block boundaries folded into the matvec before them (VIREO_CUDA_NORM_FOLD=1/0) on 8B/1B, and the cost of
#              each kernel kind in a replayed 8B step (VIREO_CUDA_SKIP masks; FOLD_SKIPS overrides the list)
#   next       what session 15 could not measure (no machine after its first call), in one call of ~8 minutes: issue 5's
#              --parallel 1,8,32,64 table on 1B and 8B with the fold on; 1-sequence decode under NEXT_VARIANTS (default:
#              the matvec grid capped, VIREO_CUDA_MV_BPS=8, and attention chunks of 128, VIREO_CUDA_ATTN_CHUNK=128,
#              between two default runs); WebGPU decode on 1B and 8B; the skip masks of an 8B step; Nsight Compute on
#              the four matvec launches of an 8B decode layer (q/k/v, o, gate/up, down: occupancy, DRAM, stalls)
#   chain      chained matvec launches (VIREO_CUDA_CHAIN=1): the fused-layer and end-to-end tests with them, then
#              VIREO_CUDA_CHAIN=0/1 alternating, twice, on 8B and 1B Q4_K_M (-p 512 -n 128 -r 3)
#   sweep      decode under option variants: SWEEP_VARIANTS="VIREO_CUDA_PDL=0 VIREO_CUDA_MV_BPS=4,VIREO_CUDA_PDL=0",
#              SWEEP_PRESETS="llama3.2-1b llama3.1-8b", SWEEP_ARGS (extra vireo_gpu_bench arguments)
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}; mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export VIREO_FIXTURES_DIR=$PWD/fixtures
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv,noheader
ldd ./vireo_gpu_tests | grep -i "not found"
STAGES=${*:-tests kernels models}
M=/tmp/m; mkdir -p $M
synth() {  # preset type -> path
  local f=$M/$1-$2.gguf
  [ -s "$f" ] || ./vireo synth --preset "$1" --type "$2" -o "$f" > /dev/null 2>&1 || echo "synth $1 $2 failed" >&2
  echo "$f"
}
ncu_bin() {  # Nsight Compute's command line tool, or nothing
  command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1
}
OLD="VIREO_CUDA_FUSE=0 VIREO_CUDA_PDL=0 VIREO_CUDA_MV=0 VIREO_CUDA_ATTN=0"
model() {  # label env... -- args
  local label=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  echo "## $label"
  env "${envs[@]}" timeout 150 ./vireo_gpu_bench "$@" > /tmp/model.log 2>&1
  cat /tmp/model.log >> "$OUT/models.log"
  grep -v '^RESULT' /tmp/model.log | grep -E "decode 1|prefill|graphs|loaded|error|failed|warn"
  grep '^RESULT' /tmp/model.log | sed "s/^RESULT\t/RESULT\t$label: /" >> "$OUT/results.tsv"
}
for st in $STAGES; do
  case $st in
    tests)
      timeout ${TESTS_TIMEOUT:-280} ./vireo_gpu_tests --gtest_filter='*Cuda*' --gtest_color=no 2>&1 | tee $OUT/gpu_tests.log |
        grep -E "^\[  (FAILED|PASSED|  OK|SKIPPED) |Failure|error|actual|Expected|Which is|FAILED TEST" | head -60 ;;
    e2e)  # the stories260K end-to-end test on E2E_FIXTURE (default: all); on failure under switches too
      FX=$VIREO_FIXTURES_DIR
      if [ -n "${E2E_FIXTURE:-}" ]; then mkdir -p /tmp/fx; ln -sf $PWD/fixtures/$E2E_FIXTURE /tmp/fx/; FX=/tmp/fx; fi
      e2e() { local t0=$(date +%s.%N); env VIREO_FIXTURES_DIR=$FX "$@" timeout 90 ./vireo_gpu_tests \
                --gtest_filter='*EndToEnd*Cuda*' > /tmp/e2e.log 2>&1; r=$?
              echo "e2e $* -> rc $r, $(grep -c Failure /tmp/e2e.log) failures, $(echo "$(date +%s.%N) - $t0" | bc) s"
              grep -m3 "actual" /tmp/e2e.log; cat /tmp/e2e.log >> $OUT/e2e.log; }
      e2e VIREO_X=1
      # PDL is on by default since it passed here (docs/CUDA-NOTES.md, v3); the run without it stays a check
      for v in ${E2E_SWITCHES:-VIREO_CUDA_PDL=0}; do e2e ${v//,/ }; done ;;
    fused)
      timeout 120 ./vireo_gpu_tests --gtest_filter='*Fused*Cuda*:*Graph*Cuda*:*Attention*Cuda*' 2>&1 | tee $OUT/fused.log |
        grep -E "^\[  (FAILED|PASSED|  OK) |Failure|actual" | head -20 ;;
    kernels|kernels-all)
      q=--quick; [ $st = kernels-all ] && q=
      timeout ${KERNELS_TIMEOUT:-200} ./vireo_gpu_bench --kernels $q 2>&1 | tee $OUT/bench_kernels.log | grep -v '^RESULT'
      grep '^RESULT' $OUT/bench_kernels.log >> $OUT/results.tsv ;;
    models)
      l1=$(synth llama3.2-1b q4_k_m); l8=$(synth llama3.1-8b q4_k_m)
      for f in $l1 $l8; do
        b=$(basename $f .gguf)
        model "$b new" VIREO_X=1 -- --model $f --prefill 512 --decode 64
        model "$b new-pdl" VIREO_CUDA_PDL=0 -- --model $f --prefill 512 --decode 64
        model "$b old" $OLD -- --model $f --prefill 512 --decode 64
      done ;;
    long)
      l8=$(synth llama3.1-8b q4_k_m)
      model "l8b@16K new" VIREO_X=1 -- --model $l8 --prefill 64 --decode 32 --decode-at 16384
      model "l8b@16K old" $OLD -- --model $l8 --prefill 64 --decode 32 --decode-at 16384 ;;
    types)
      for t in q8_0 f16; do
        f=$(synth llama3.1-8b $t)
        model "l8b-$t new" VIREO_X=1 -- --model $f --prefill 128 --decode 32
      done ;;
    cli)
      for f in $(synth llama3.2-1b q4_k_m) $(synth llama3.1-8b q4_k_m); do
        timeout 120 ./vireo bench --device cuda -m $f -p 512 -n 128 -r 3 2>&1 | tail -4 | tee -a $OUT/cli.log
      done
      ./vireo run --device cuda -m fixtures/stories260K-f32.gguf -p "Once upon a time" -n 64 --temp 0 > $OUT/run_cuda.txt
      ./vireo run -m fixtures/stories260K-f32.gguf -p "Once upon a time" -n 64 --temp 0 > $OUT/run_cpu.txt
      cmp $OUT/run_cuda.txt $OUT/run_cpu.txt && echo "stories260K greedy: CUDA == CPU" ;;
    batch)
      timeout 200 ./vireo_gpu_tests --gtest_filter='*Synthetic*Cuda*:*Scheduler*Cuda*' --gtest_color=no 2>&1 |
        tee $OUT/batch_tests.log | grep -E "^\[  (FAILED|PASSED|  OK|SKIPPED) |Failure|actual|Expected|worst" | head -30
      for f in $(synth llama3.2-1b q4_k_m) $(synth llama3.1-8b q4_k_m); do
        timeout 200 ./vireo bench --device cuda -m $f -p 128 -n 128 -r 1 --parallel ${PARALLEL:-1,8,32,64} 2>&1 |
          grep -v "^loading" | tee -a $OUT/parallel.log
      done
      if [ "${LOAD_SECONDS:-20}" != 0 ] && command -v python3 > /dev/null && [ -f load_test.py ]; then
        timeout 200 python3 load_test.py --vireo ./vireo --model $(synth llama3.2-1b q4_k_m) --device cuda \
          --clients ${LOAD_CLIENTS:-1,8,32,64} --duration ${LOAD_SECONDS:-20} --warmup 3 --max-tokens 128 --ctx 512 \
          2>&1 | tee $OUT/load.log
      fi ;;
    profile)
      for p in ${PROFILE_PRESETS:-llama3.1-8b llama3.2-1b}; do
        f=$(synth $p q4_k_m)
        for par in ${PROFILE_PARALLEL:-1 64}; do
          echo "## profile $p, $par sequences (128-token prompts, 32 new tokens each)"
          VIREO_CUDA_PROFILE=1 timeout 200 ./vireo bench --device cuda -m $f -p 128 -n 32 -r 1 --parallel $par \
            > $OUT/profile-$p-x$par.log 2>&1
          grep -E "steps of|total ms" $OUT/profile-$p-x$par.log; grep -E "^ +[0-9.]+ +[0-9]+ .* n=$par " \
            $OUT/profile-$p-x$par.log | head -${PROFILE_ROWS:-14}
        done
      done ;;
    ncu)  # per-kernel GPU time and DRAM bytes (Nsight Compute, kernels serialized) of a short bench on NCU_PRESET
      f=$(synth ${NCU_PRESET:-llama3.1-8b} q4_k_m)
      N=$(ncu_bin)
      timeout ${NCU_TIMEOUT:-240} $N --clock-control none --csv --launch-count ${NCU_COUNT:-2500} \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
        ./vireo bench --device cuda -m $f -p ${NCU_PROMPT:-16} -n ${NCU_TOKENS:-4} -r 1 > $OUT/ncu.csv 2> $OUT/ncu.err
      echo "ncu rc $?: $(wc -l < $OUT/ncu.csv) lines in ncu.csv"; tail -3 $OUT/ncu.err ;;
    tiles)
      for p in llama3.2-1b llama3.1-8b; do
        f=$(synth $p q4_k_m)
        for b in vireo ${TILES_BINARIES:-}; do
          for v in 0 default; do
            [ "$b" != vireo ] && [ $v = 0 ] && continue
            echo "## $p $b tiles=$v"
            env $([ $v = 0 ] && echo VIREO_CUDA_MV_TILES=0) timeout 150 ./$b bench --device cuda -m $f -p 128 -n 128 -r 1 \
              --parallel 1,2,3,4,6,8 2>&1 | grep -E "^cuda" | tee -a $OUT/tiles.log
          done
        done
      done
      N=$(ncu_bin)
      if [ -n "$N" ] && [ "${TILES_NCU:-1}" != 0 ]; then
        timeout 240 $N --kernel-name-base demangled --kernel-name regex:mv_tile_kernel --launch-skip 40 \
          --launch-count 5 --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
          ./vireo bench --device cuda -m $(synth llama3.1-8b q4_k_m) -p 16 -n 4 -r 1 --parallel 8 > $OUT/ncu-tiles.txt 2>&1
        grep -E "mv_tile_kernel|Duration|DRAM Throughput|Registers Per|Achieved Occupancy" $OUT/ncu-tiles.txt
      fi ;;
    webgpu)  # WebGPU through the NVIDIA Vulkan driver (the loader is in lib/): its tests when vireo_tests was packed
      # (EXTRA_BINARIES), then vireo bench on 1B and 8B under WEBGPU_VARIANTS next to CUDA, and a per-kernel profile
      [ -x ./vireo_tests ] && timeout ${WEBGPU_TESTS_TIMEOUT:-150} ./vireo_tests --gtest_filter="${WEBGPU_TESTS:-WebGpu*}" --gtest_color=no 2>&1 |
        tee $OUT/webgpu_tests.log | grep -E "^\[  (FAILED|PASSED|  OK) |Failure|adapter|FAILED TEST" | head -40
      for p in ${WEBGPU_PRESETS:-llama3.2-1b llama3.1-8b}; do
        f=$(synth $p q4_k_m)
        vs=${WEBGPU_VARIANTS:-VIREO_X=1 VIREO_WEBGPU_SUBGROUPS=0 VIREO_WEBGPU_MV_ROWS=16 VIREO_WEBGPU_INT8=0,VIREO_WEBGPU_CHECKS=1}
        [ $p = llama3.1-8b ] && vs=${WEBGPU_VARIANTS_8B:-VIREO_X=1 VIREO_WEBGPU_SUBGROUPS=0 VIREO_WEBGPU_INT8=0,VIREO_WEBGPU_CHECKS=1}
        for v in $vs; do
          echo "## $p webgpu $v"
          env ${v//,/ } timeout 150 ./vireo bench -m $f --device webgpu -p 32 -n 64 -r 2 2>&1 | tee -a $OUT/webgpu_bench.log |
            grep -E "tg64|pp32|dispatch|rror" | head -6
        done
        echo "## $p cuda"; timeout 120 ./vireo bench -m $f --device cuda -p 32 -n 64 -r 2 2>&1 | grep -E "tg64|rror" | head -3
      done
      if [ "${WEBGPU_F16:-1}" = 1 ]; then  # prefill on 1B, pp512: the f16 tiles (shader-f16) against f32 arithmetic
        # (Q8_0), and Q4_K_M's matvec prefill against the tiles in f16 and in f32 (VIREO_WEBGPU_KQ_TILES=1)
        for tv in "q8_0 VIREO_X=1 VIREO_WEBGPU_F16=0" \
                  "q4_k_m VIREO_X=1 VIREO_WEBGPU_KQ_TILES=1 VIREO_WEBGPU_KQ_TILES=1,VIREO_WEBGPU_F16=0"; do
          set -- $tv; f=$(synth llama3.2-1b $1); shift
          for v in "$@"; do
            echo "## llama3.2-1b $(basename $f) webgpu prefill $v"
            env ${v//,/ } timeout 120 ./vireo bench -m $f --device webgpu -p 512 -n 4 -r 2 2>&1 | tee -a $OUT/webgpu_bench.log |
              grep -E "pp512|rror" | head -3
          done
        done
      fi
      [ "${WEBGPU_PROFILE:-1}" = 1 ] || exit 0
      f=$(synth ${WEBGPU_PROFILE_PRESET:-llama3.1-8b} q4_k_m)
      VIREO_WEBGPU_PROFILE=1 timeout 150 ./vireo run -m $f --device webgpu -p "Hello there" -n 32 --temp 0 -c 256 \
        > /dev/null 2> $OUT/webgpu_profile.log; grep -A30 "WebGPU profile" $OUT/webgpu_profile.log | head -32 ;;
    qfrag)
      timeout 240 ./vireo_gpu_tests --gtest_filter='*Matmul*/Cuda:*Fused*/Cuda:*Batched*/Cuda:*Synthetic*/Cuda:*Scheduler*/Cuda' \
        --gtest_color=no 2>&1 | tee $OUT/qfrag_tests.log |
        grep -E "^\[  (FAILED|PASSED|  OK|SKIPPED) |Failure|actual|Expected|worst" | head -40
      for v in ${QFRAG_TEST_VARIANTS:-VIREO_CUDA_QFRAG_MODEL=0 VIREO_CUDA_QFRAG_NT=4}; do
        echo "## tests $v: $(env $v timeout 60 ./vireo_gpu_tests --gtest_filter='*MatmulQgemm*/Cuda:*Scheduler*/Cuda' \
          2>&1 | tee -a $OUT/qfrag_tests.log | grep -E '^\[  (FAILED|PASSED)' | tr '\n' ' ')"
      done
      # The kernels' machine code (instruction mix and the order of the products), where cuobjdump exists
      C=$(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump 2>/dev/null | head -1)
      if [ -n "$C" ]; then
        $C -sass ./vireo_gpu_tests 2>/dev/null | awk '/Function : /{on = /qgemm_frag_kernel/} on' > $OUT/qfrag.sass
        echo "## sass: $(grep -c 'Function :' $OUT/qfrag.sass) kernels, $(wc -l < $OUT/qfrag.sass) lines"
      fi
      for v in ${QFRAG_KERNEL_VARIANTS:-VIREO_CUDA_QFRAG=1}; do
        echo "## kernels $v"
        env ${v//,/ } timeout 100 ./vireo_gpu_bench --kernels --types Q4_K,Q6_K --tokens 16,32,64 --new-only 2>&1 |
          tee -a $OUT/qfrag_kernels.log | grep -E "^matmul (Q4_K|Q6_K) n=(16|32|64) "
      done
      for p in ${QFRAG_PRESETS:-llama3.1-8b llama3.2-1b}; do
        f=$(synth $p q4_k_m)
        for v in ${QFRAG_VARIANTS:-VIREO_CUDA_QFRAG=1 VIREO_CUDA_F16_OUT=0 VIREO_CUDA_ROPE_STORE=0}; do
          echo "## $p $v"
          env ${v//,/ } timeout 150 ./vireo bench --device cuda -m $f -p 128 -n 128 -r 1 --parallel ${PARALLEL:-16,32,64} 2>&1 |
            tee -a $OUT/qfrag_bench.log | grep -vE "^loading|^ *$" | tail -${QFRAG_BENCH_LINES:-8}
        done
      done
      # Nsight Compute on 64-token launches (what stalls the warps: issue, tensor pipe, shared memory, barrier)
      N=$(ncu_bin)
      if [ -n "$N" ] && [ "${QFRAG_NCU:-1}" != 0 ]; then
        timeout 240 $N --kernel-name-base demangled --kernel-name "regex:qgemm_frag_kernel<.*\(int\)8, \(int\)1, " --launch-skip 20 \
          --launch-count 4 --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
          --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
          ./vireo bench --device cuda -m $(synth llama3.1-8b q4_k_m) -p 16 -n 4 -r 1 --parallel 64 > $OUT/ncu-qfrag.txt 2>&1
        grep -E "qgemm_frag_kernel|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Issue Slots Busy|Stall|Executed Ipc" \
          $OUT/ncu-qfrag.txt | head -60
      fi ;;
    ksplit)
      for pt in "llama3.1-8b f16" "llama3.1-8b q8_0" "llama3.1-8b q4_k_m" "llama3.2-1b q4_k_m"; do
        set -- $pt; f=$(synth $1 $2)
        for round in 1 2; do
          for v in VIREO_CUDA_MV_KSPLIT=0 VIREO_CUDA_MV_KSPLIT=2; do
            echo "## $1 $2 $v: $(env $v timeout 60 ./vireo_gpu_bench --model $f --prefill 16 --decode 64 2>&1 |
              tee -a $OUT/ksplit.log | grep -E 'decode 1 seq @|rror' | head -1)"
          done
        done
      done ;;
    chain)
      for p in ${CHAIN_PRESETS:-llama3.2-1b llama3.1-8b}; do
        f=$(synth $p q4_k_m)
        for c in ${CHAIN_VALUES:-1 8 16}; do
          echo "## $p --chain $c"
          timeout 120 ./vireo bench --device cuda -m $f -p 32 -n 128 -r 3 --chain $c 2>&1 | tee -a $OUT/chain.log |
            grep -E "tg128|rror"
        done
      done
      [ "${CHAIN_PARALLEL:-1}" = 1 ] && for c in 1 8; do
        echo "## llama3.2-1b --parallel 1,8,32 --chain $c"
        timeout 150 ./vireo bench --device cuda -m $(synth llama3.2-1b q4_k_m) -p 128 -n 128 -r 1 --parallel 1,8,32 \
          --chain $c 2>&1 | grep -v "^loading" | tee -a $OUT/chain.log | grep -E "^cuda|rror"
      done ;;
    wide)
      for round in $(seq ${WIDE_ROUNDS:-2}); do
        for p in ${WIDE_PRESETS:-llama3.2-1b llama3.1-8b}; do
          for v in ${TILE_VALUES:-8 64}; do
            echo "## round $round $p VIREO_CUDA_TILE_MAX=$v"
            VIREO_CUDA_TILE_MAX=$v timeout 150 ./vireo bench --device cuda -m $(synth $p q4_k_m) -p 128 -n 128 -r 1 \
              --parallel ${WIDE_PARALLEL:-8,16,32,64} 2>&1 | grep -v "^loading" | tee -a $OUT/wide.log | grep -E "^cuda|rror"
          done
        done
      done ;;
    prefill)  # pp512 against the size of the dequantized f16 weight slice (PREFILL_SLICES, in 2^20 elements)
      for p in ${PREFILL_PRESETS:-llama3.1-8b llama3.2-1b}; do
        f=$(synth $p q4_k_m)
        for sl in ${PREFILL_SLICES:-64 4 8 16 32 64}; do
          echo "## $p slice ${sl}Mi: $(VIREO_CUDA_GEMM_SLICE_MI=$sl timeout 100 ./vireo bench --device cuda -m $f -p 512 -n 16 -r 3 2>&1 |
            tee -a $OUT/prefill.log | grep -E 'pp512|rror' | head -2 | tr '\n' ' ')"
        done
      done
      # where a 512-token prefill step's time goes (eager, an event after every kernel group)
      f=$(synth llama3.1-8b q4_k_m)
      VIREO_CUDA_PROFILE=1 timeout 100 ./vireo bench --device cuda -m $f -p 512 -n 2 -r 1 > $OUT/profile-prefill.log 2>&1
      grep -E "steps of|total ms" $OUT/profile-prefill.log; grep -E "^ +[0-9.]+ +[0-9]+ .* n=512 " $OUT/profile-prefill.log | head -20 ;;
    verify)  # the defaults in one pass: the CUDA matmul/fused/batched/model/scheduler tests, issue 5's --parallel table
      # and issue 3's pp512 (8B, -p 512 -n 128 -r 3)
      timeout 200 ./vireo_gpu_tests --gtest_filter='*Matmul*/Cuda:*Fused*/Cuda:*Batched*/Cuda:*Synthetic*/Cuda:*Scheduler*/Cuda:*EndToEnd*/Cuda' \
        --gtest_color=no 2>&1 | tee $OUT/verify_tests.log | grep -E "^\[  (FAILED|PASSED) |Failure" | head -20
      for p in ${VERIFY_PRESETS:-llama3.1-8b llama3.2-1b}; do
        f=$(synth $p q4_k_m)
        echo "## $p --parallel ${VERIFY_PARALLEL:-1,8,16,32,64}"
        timeout 150 ./vireo bench --device cuda -m $f -p 128 -n 128 -r 1 --parallel ${VERIFY_PARALLEL:-1,8,16,32,64} 2>&1 |
          tee -a $OUT/verify_bench.log | grep -E "^cuda|rror"
      done
      echo "## llama3.1-8b -p 512 -n 128 -r 3"
      timeout 120 ./vireo bench --device cuda -m $(synth llama3.1-8b q4_k_m) -p 512 -n 128 -r 3 2>&1 | tee -a $OUT/verify_bench.log |
        grep -E "pp512|tg128|rror" ;;
    fold)  # the folded block boundaries (VIREO_CUDA_NORM_FOLD=1/0, alternating, twice): 8B and 1B -p 512 -n 128 -r 3,
      # 1B --parallel 8; then what each kernel kind costs in a replayed 8B step (VIREO_CUDA_SKIP masks, wrong results)
      for v in 1 0 1 0; do
        for p in llama3.1-8b llama3.2-1b; do
          echo "## $p -p 512 -n 128 -r 3, VIREO_CUDA_NORM_FOLD=$v"
          VIREO_CUDA_NORM_FOLD=$v timeout 90 ./vireo bench --device cuda -m $(synth $p q4_k_m) -p 512 -n 128 -r 3 2>&1 |
            tee -a $OUT/fold_bench.log | grep -E "tg128|rror"
        done
        echo "## llama3.2-1b --parallel 8, VIREO_CUDA_NORM_FOLD=$v"
        VIREO_CUDA_NORM_FOLD=$v timeout 90 ./vireo bench --device cuda -m $(synth llama3.2-1b q4_k_m) -p 128 -n 128 -r 1 \
          --parallel 8 2>&1 | tee -a $OUT/fold_bench.log | grep -E "^cuda|rror"
      done
      f=$(synth llama3.1-8b q4_k_m)
      for v in ${FOLD_SKIPS:-VIREO_X=0 VIREO_CUDA_NORM_FOLD=0 VIREO_CUDA_NORM_FOLD=0,VIREO_CUDA_SKIP=1 VIREO_CUDA_SKIP=2 \
                 VIREO_CUDA_SKIP=4 VIREO_CUDA_SKIP=8 VIREO_CUDA_SKIP=16 VIREO_CUDA_SKIP=32 VIREO_CUDA_SKIP=63}; do
        model "$(basename $f .gguf) $v" ${v//,/ } -- --model $f --prefill 512 --decode 64
      done ;;
    next)
      for p in llama3.2-1b llama3.1-8b; do
        f=$(synth $p q4_k_m)
        echo "## $p --parallel 1,8,32,64"
        timeout 90 ./vireo bench --device cuda -m $f -p 128 -n 128 -r 1 --parallel 1,8,32,64 2>&1 | tee -a $OUT/next.log |
          grep -E "^cuda|rror"
        for v in ${NEXT_VARIANTS:-VIREO_X=1 VIREO_CUDA_MV_BPS=8 VIREO_CUDA_ATTN_CHUNK=128 VIREO_X=1}; do
          echo "## $p -p 512 -n 128 -r 3 $v: $(env ${v//,/ } timeout 60 ./vireo bench --device cuda \
            -m $f -p 512 -n 128 -r 3 2>&1 | tee -a $OUT/next.log | grep -E 'tg128|rror' | tr -s ' ')"
        done
        echo "## $p webgpu: $(timeout 90 ./vireo bench -m $f --device webgpu -p 32 -n 64 -r 2 2>&1 | tee -a $OUT/next.log |
          grep -E 'tg64|dispatch|rror' | tr -s ' ' | tr '\n' ' ')"
      done
      # what each kernel kind costs in a replayed 8B step with the fold on (VIREO_CUDA_SKIP: 2 attention, 4 q/k/v,
      # 8 o, 16 gate/up, 32 down; results wrong)
      f=$(synth llama3.1-8b q4_k_m)
      for v in 0 2 4 8 16 32; do
        echo "## llama3.1-8b VIREO_CUDA_SKIP=$v: $(VIREO_CUDA_SKIP=$v timeout 60 ./vireo_gpu_bench --model $f \
          --prefill 512 --decode 64 2>&1 | tee -a $OUT/next.log | grep -E 'decode 1 seq|rror' | head -1)"
      done
      N=$(ncu_bin)
      if [ -n "$N" ]; then  # a 16-token prompt runs on qgemm, so every mv_kernel launch is a decode step's
        timeout 120 $N --kernel-name-base demangled --kernel-name regex:mv_kernel --launch-skip 200 --launch-count 4 \
          --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
          --section MemoryWorkloadAnalysis ./vireo bench --device cuda -m $f -p 16 -n 4 -r 1 > $OUT/ncu-mv.txt 2>&1
        grep -E "mv_kernel|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Theoretical Occ|Block Limit|Warp Cycles Per Issued" \
          $OUT/ncu-mv.txt | head -60
      fi ;;
    chain)  # chained matvec launches (VIREO_CUDA_CHAIN): their tests, then VIREO_CUDA_CHAIN=0/1 alternating, twice, on
      # 8B and 1B -p 512 -n 128 -r 3
      timeout 120 ./vireo_gpu_tests --gtest_filter='*FusedDecodeLayers*Cuda*' 2>&1 | tee $OUT/chain_tests.log |
        grep -E "^\[  (FAILED|PASSED|  OK) |Failure|actual|Which is" | head -20
      VIREO_CUDA_CHAIN=1 timeout 150 ./vireo_gpu_tests --gtest_filter='*EndToEnd*Cuda*' 2>&1 | tee -a $OUT/chain_tests.log |
        grep -E "^\[  (FAILED|PASSED|  OK|SKIPPED) |Failure|actual|Which is" | head -20
      for v in 0 1 0 1; do
        for p in llama3.1-8b llama3.2-1b; do
          echo "## $p -p 512 -n 128 -r 3 VIREO_CUDA_CHAIN=$v: $(VIREO_CUDA_CHAIN=$v timeout 60 ./vireo bench --device cuda \
            -m $(synth $p q4_k_m) -p 512 -n 128 -r 3 2>&1 | tee -a $OUT/chain_bench.log | grep -E 'tg128|rror' | tr -s ' ')"
        done
      done ;;
    sweep)  # SWEEP_VARIANTS (env settings, one per word; commas separate several), SWEEP_PRESETS
      for p in ${SWEEP_PRESETS:-llama3.2-1b llama3.1-8b}; do
        f=$(synth $p q4_k_m)
        for v in ${SWEEP_VARIANTS:-VIREO_CUDA_PDL=0 VIREO_CUDA_FUSE=0 VIREO_CUDA_MV_BPS=4}; do
          model "$(basename $f .gguf) $v" ${v//,/ } -- --model $f --prefill 64 --decode 48 ${SWEEP_ARGS:-}
        done
      done ;;
  esac
done
echo; echo "== results =="
grep '^RESULT' $OUT/results.tsv 2>/dev/null | awk -F'\t' '{ printf "%-70s %12.1f  %s\n", $2, $3, $4 }' | grep -v "decode x4\|decode x8 \|weight bandwidth" | tail -150
