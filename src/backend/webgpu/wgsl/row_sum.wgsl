// The sum of each row's LANES lane values (consecutive invocations of a 256-invocation workgroup), valid in the
// row's lane 0, through workgroup memory. Prepended to matvec_int8 (which defines LANES), after ids.wgsl, where
// subgroups are not used; row_sum_subgroup.wgsl is the other choice. Called from uniform control flow (it holds a
// barrier).

var<workgroup> partial: array<vec4<f32>, 64>;  // 256 lanes' sums, four to a vector

fn row_sum(ids: Ids, tid: u32, acc: f32) -> f32 {
  partial[tid / 4u][tid % 4u] = acc;
  workgroupBarrier();
  var s = vec4<f32>(0.0);
  if (tid % LANES == 0u) {
    for (var i = 0u; i < LANES / 4u; i++) { s += partial[tid / 4u + i]; }
  }
  return s.x + s.y + s.z + s.w;
}
