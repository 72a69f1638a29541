// The sum of each row's LANES lane values (consecutive invocations of a 256-invocation workgroup), valid in the
// row's lane 0, through workgroup memory. Prepended to matvec_int8 (which defines LANES) where subgroups are not
// used; row_sum_subgroup.wgsl is the other choice, with the same entry-point inputs: `Ids`, the workgroup-uniform
// built-ins (a struct of its own: one non-uniform member would make the whole struct non-uniform to WGSL's
// uniformity analysis), and `Lane`, the invocation's. Called from uniform control flow (it holds a barrier).
struct Ids {
  @builtin(workgroup_id) wid: vec3<u32>,
};
struct Lane {
  @builtin(local_invocation_id) lid: vec3<u32>,
};

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
