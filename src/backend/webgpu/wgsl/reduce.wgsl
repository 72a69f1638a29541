// The best (value, id) of a 256-thread workgroup, shared by the argmax and sampling kernels (prepended to their
// modules): larger value first, ties to the lower id, id 0xffffffff (none) never wins; NaN must not be passed in.

const WG: u32 = 256u;
var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != 0xffffffffu && (bi == 0xffffffffu || v > bv || (v == bv && i < bi));
}

// Leaves the workgroup's best in best_v[0], best_i[0]. Called from uniform control flow (it holds barriers).
fn reduce_best(lid: u32, v: f32, i: u32) {
  best_v[lid] = v;
  best_i[lid] = i;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s && better(best_v[lid + s], best_i[lid + s], best_v[lid], best_i[lid])) {
      best_v[lid] = best_v[lid + s];
      best_i[lid] = best_i[lid + s];
    }
    workgroupBarrier();
  }
}
