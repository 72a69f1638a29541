// The sum of each row's LANES lane values (consecutive invocations of a 256-invocation workgroup), valid in the
// row's lane 0, through workgroup memory. Prepended to matvec_int8 (which defines LANES) where subgroups are not
// used; row_sum_subgroup.wgsl is the other choice, with the same `Ids` (the entry point's built-in inputs).
// Called from uniform control flow (it holds a barrier).
struct Ids {
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
};

var<workgroup> partial: array<vec4<f32>, 64>;  // 256 lanes' sums, four to a vector

fn row_sum(ids: Ids, acc: f32) -> f32 {
  let tid = ids.lid.x;
  partial[tid / 4u][tid % 4u] = acc;
  workgroupBarrier();
  var s = vec4<f32>(0.0);
  if (tid % LANES == 0u) {
    for (var i = 0u; i < LANES / 4u; i++) { s += partial[tid / 4u + i]; }
  }
  return s.x + s.y + s.z + s.w;
}
