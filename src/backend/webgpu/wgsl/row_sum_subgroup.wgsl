// row_sum (see row_sum.wgsl) with subgroup shuffles: a butterfly over each run of `sg` invocations (the
// subgroup size, a power of two, up to LANES) leaves the run's sum in all its lanes. Where a subgroup spans a
// whole row (sg >= LANES, e.g. NVIDIA's 32) that is the row's sum, with no workgroup memory and no barrier;
// smaller subgroups (lavapipe's 8) add their runs' sums in workgroup memory after one barrier. Assumes, as every
// implementation does, that a subgroup is a run of consecutive local invocation indices. The host prepends
// `enable subgroups;` where the implementation wants it, and ids_subgroup.wgsl. Called from uniform control flow
// (subgroup_size is uniform in a compute shader).
var<workgroup> run_sums: array<f32, 256>;

fn row_sum(ids: Ids, tid: u32, acc: f32) -> f32 {
  let run = min(ids.sg, LANES);
  var v = acc;
  for (var off = run / 2u; off > 0u; off >>= 1u) { v += subgroupShuffleXor(v, off); }
  if (run == LANES) { return v; }
  if (tid % run == 0u) { run_sums[tid / run] = v; }
  workgroupBarrier();
  var s = 0.0;
  if (tid % LANES == 0u) {
    for (var i = 0u; i < LANES / run; i++) { s += run_sums[tid / run + i]; }
  }
  return s;
}
