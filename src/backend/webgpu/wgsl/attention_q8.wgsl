// Appended to q8.wgsl + attention.wgsl for the int8 pipelines: attention_merge for one-token steps whose output
// feeds int8 products (the o projection). The workgroup's head (head_dim a multiple of 32, at most 256) is
// merged into workgroup memory, then written as f32 and, a 32-element block per invocation, as int8.
var<workgroup> merged: array<vec4<f32>, 64>;

@compute @workgroup_size(64)
fn attention_merge_q8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let h = wid.x;
  let t = wid.y;
  let hd = P.head_dim;
  let m = merge_stats(h, t);
  for (var d = lid.x; d < hd; d += 64u) {
    let o = merged_value(m, d);
    O[t * P.q_cols + h * hd + d] = o;
    merged[d / 4u][d % 4u] = o;
  }
  workgroupBarrier();
  if (lid.x < hd / 32u) {
    var v: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) { v[i] = merged[8u * lid.x + i]; }
    store_q8_block((t * P.q_cols + h * hd) / 32u + lid.x, v);
  }
}
