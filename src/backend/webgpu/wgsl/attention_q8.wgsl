// Appended to q8.wgsl + attention.wgsl for the int8 pipelines: attention_merge for one-token steps whose output
// feeds int8 products (the o projection). The workgroup's head (head_dim a multiple of 32, at most 256) is
// merged into workgroup memory, then written as f32 and, a 32-element block per invocation, as int8.
var<workgroup> merged: array<vec4<f32>, 64>;

@compute @workgroup_size(64)
fn attention_merge_q8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let h = wid.x;
  let t = wid.y;
  let hd = P.head_dim;
  let pos = u32(STEP[P.cap + t]);
  let chunk = split_chunk(pos);
  let n_chunks = (pos + chunk) / chunk;  // ceil((pos + 1) / chunk)
  let r0 = (t * P.n_heads + h) * P.splits;
  var big_m = -3.0e38;
  for (var s = 0u; s < n_chunks; s++) { big_m = max(big_m, PML[2u * (r0 + s)]); }
  var big_l = 0.0;
  for (var s = 0u; s < n_chunks; s++) { big_l += PML[2u * (r0 + s) + 1u] * exp(PML[2u * (r0 + s)] - big_m); }
  for (var d = lid.x; d < hd; d += 64u) {
    var acc = 0.0;
    for (var s = 0u; s < n_chunks; s++) { acc += PO[(r0 + s) * hd + d] * exp(PML[2u * (r0 + s)] - big_m); }
    let o = acc / big_l;
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
