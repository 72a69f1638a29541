// matvec_finish (see matvec_finish.wgsl) with subgroup shuffles, as row_sum_subgroup.wgsl does it: a butterfly
// over each run of min(subgroup size, MV_LANES) lanes leaves the run's sums of the step's tokens in all its
// lanes; where a run is a whole row that is the row's sum (no workgroup memory, no barrier), else the runs'
// sums meet in workgroup memory after one barrier. Needs ids_subgroup.wgsl (and `enable subgroups;` where the
// implementation wants it). Called from uniform control flow (nt and the subgroup size are uniform).
var<workgroup> mv_runs: array<f32, 512>;  // TOKENS x (256 / 4): the runs' sums, for subgroups of 4 and up

fn matvec_finish(ids: Ids, tid: u32, row: u32, t0: u32, nt: u32, acc: array<f32, 8>) {
  let lane = tid % MV_LANES;
  let run = min(ids.sg, MV_LANES);
  var sums: array<f32, 8>;
  for (var t = 0u; t < nt; t++) {
    var v = acc[t];
    for (var off = run / 2u; off > 0u; off >>= 1u) { v += subgroupShuffleXor(v, off); }
    sums[t] = v;
  }
  if (run == MV_LANES) {
    if (row < P.rows && lane < nt) { Y[(t0 + lane) * P.ldy + P.col0 + row] = sums[lane]; }
    return;
  }
  if (tid % run == 0u) {
    for (var t = 0u; t < nt; t++) { mv_runs[t * 64u + tid / run] = sums[t]; }
  }
  workgroupBarrier();
  if (row < P.rows && lane < nt) {
    var s = 0.0;
    for (var i = 0u; i < MV_LANES / run; i++) { s += mv_runs[lane * 64u + (tid - lane) / run + i]; }
    Y[(t0 + lane) * P.ldy + P.col0 + row] = s;
  }
}
