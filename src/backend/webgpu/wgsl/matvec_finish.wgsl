var<workgroup> mv_partial: array<f32, 2048>;  // TOKENS * 256

// The end of every matvec kernel in matmul.wgsl: sums each row's 32 lanes for the step's tokens and writes Y,
// through workgroup memory (matvec_finish_subgroup.wgsl: by subgroup shuffles). Called from uniform control flow
// (it holds barriers).
fn matvec_finish(ids: Ids, tid: u32, row: u32, t0: u32, nt: u32, acc: array<f32, 8>) {
  let lane = tid % MV_LANES;
  for (var t = 0u; t < nt; t++) { mv_partial[t * 256u + tid] = acc[t]; }
  workgroupBarrier();
  for (var stride = MV_LANES / 2u; stride > 0u; stride >>= 1u) {
    if (lane < stride) {
      for (var t = 0u; t < nt; t++) { mv_partial[t * 256u + tid] += mv_partial[t * 256u + tid + stride]; }
    }
    workgroupBarrier();
  }
  if (row < P.rows && lane < nt) {
    Y[(t0 + lane) * P.ldy + P.col0 + row] = mv_partial[lane * 256u + tid - lane];
  }
}
