// Prefill product in f16 arithmetic, for adapters with "shader-f16" (the host opens the module with
// `enable f16;` and appends this to matmul.wgsl, whose bindings and dequant32 it uses). The same 64-row x
// 32-token tile as `matmul`, but the tiles hold halves: a thread's 4 rows x 2 tokens are four vec2<f16> fused
// multiply-adds per k (two products each), and every workgroup-memory read brings two tokens' values.
// Precision: products and the running sum over one 32-element sub-block are f16 (11-bit significand); each
// sub-block's sum is added into an f32 accumulator, so the error does not grow with k.
var<workgroup> w_tile_h: array<f16, 2112>;        // TM x 33 (padded against bank conflicts)
var<workgroup> x_tile_h: array<vec2<f16>, 528>;   // TN / 2 token pairs x 33: (token 2p, token 2p + 1) at k

@compute @workgroup_size(256)
fn matmul_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.x;
  let r0 = (wid.x + wid.y * P.grid_x) * TM;
  let t0 = wid.z * TN;
  let tr = (tid % 16u) * 4u;  // this thread's rows r0 + tr .. + 3
  let tp = tid / 16u;         // and token pair t0 + 2 tp, + 1
  var acc: array<vec2<f32>, 4>;
  let nsb = (P.k + 31u) / 32u;
  for (var sb = 0u; sb < nsb; sb++) {
    if (tid < TM) {
      let row = r0 + tid;
      if (row < P.rows) {
        dequant32(row * P.row_words, sb);
        for (var i = 0u; i < 32u; i++) { w_tile_h[tid * 33u + i] = f16(w32[i]); }
      } else {
        for (var i = 0u; i < 32u; i++) { w_tile_h[tid * 33u + i] = 0.0h; }
      }
    }
    for (var e = tid; e < (TN / 2u) * 32u; e += 256u) {
      let p = e / 32u;
      let kk = sb * 32u + e % 32u;
      let t = t0 + 2u * p;
      let a = select(0.0, X[t * P.k + kk], t < P.n && kk < P.k);
      let b = select(0.0, X[(t + 1u) * P.k + kk], t + 1u < P.n && kk < P.k);
      x_tile_h[p * 33u + e % 32u] = vec2<f16>(f16(a), f16(b));
    }
    workgroupBarrier();
    // Zeroed explicitly: naga hoists a loop's `var` to the function's start, so an implicit zero happens once.
    var part = array<vec2<f16>, 4>(vec2<f16>(), vec2<f16>(), vec2<f16>(), vec2<f16>());
    for (var i = 0u; i < 32u; i++) {
      let x = x_tile_h[tp * 33u + i];
      for (var j = 0u; j < 4u; j++) { part[j] = fma(vec2<f16>(w_tile_h[(tr + j) * 33u + i]), x, part[j]); }
    }
    for (var j = 0u; j < 4u; j++) { acc[j] += vec2<f32>(part[j]); }
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) {
    let row = r0 + tr + j;
    for (var m = 0u; m < 2u; m++) {
      let t = t0 + 2u * tp + m;
      if (row < P.rows && t < P.n) { Y[t * P.ldy + P.col0 + row] = acc[j][m]; }
    }
  }
}
