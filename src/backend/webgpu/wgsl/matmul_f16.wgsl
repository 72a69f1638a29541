// Prefill product in f16 arithmetic, for adapters with "shader-f16" (the host opens the module with
// `enable f16;` and appends this to matmul.wgsl, whose bindings, tile size and dequant32 it uses). The same
// 64-row x 32-token tile per workgroup as `matmul`, two 32-element sub-blocks of k per barrier pair (128 threads
// dequantize a row's sub-block each), and the tiles hold halves laid out so that a thread's 4 rows are one
// vec4<f16> and its 2 tokens one vec2<f16>: per k, two loads and two vec4<f16> fused multiply-adds (8 products).
// Precision: products and the running sum over one sub-block are f16 (11-bit significand); each sub-block's sum
// is added into an f32 accumulator, so the error does not grow with k.
const KSB: u32 = 2u;                                  // sub-blocks per stage
var<workgroup> w_tile_h: array<vec4<f16>, 1024>;      // [KSB * 32 k][16 row quads]
var<workgroup> x_tile_h: array<vec2<f16>, 1088>;      // [KSB * 32 k][16 token pairs + 1 pad]

@compute @workgroup_size(256)
fn matmul_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.x;
  let r0 = (wid.x + wid.y * P.grid_x) * TM;
  let t0 = wid.z * TN;
  let tq = tid % 16u;  // this thread's rows r0 + 4 tq .. + 3
  let tp = tid / 16u;  // and tokens t0 + 2 tp, + 1
  var acc0 = vec4<f32>();  // token 2 tp, rows 4 tq .. + 3
  var acc1 = vec4<f32>();  // token 2 tp + 1
  let nsb = (P.k + 31u) / 32u;
  for (var sb0 = 0u; sb0 < nsb; sb0 += KSB) {
    if (tid < TM * KSB) {
      let lr = tid % TM;             // the row this thread dequantizes
      let ls = tid / TM;             // and which of the stage's sub-blocks
      let row = r0 + lr;
      let sb = sb0 + ls;
      let w_at = ls * 32u * 16u + lr / 4u;
      if (row < P.rows && sb < nsb) {
        dequant32(row * P.row_words, sb);
        for (var i = 0u; i < 32u; i++) { w_tile_h[w_at + i * 16u][lr % 4u] = f16(w32[i]); }
      } else {
        for (var i = 0u; i < 32u; i++) { w_tile_h[w_at + i * 16u][lr % 4u] = 0.0h; }
      }
    }
    // Activations: consecutive threads read consecutive k of one token pair (coalesced); the pad keeps the
    // transposed writes off each other's banks.
    for (var e = tid; e < KSB * 32u * (TN / 2u); e += 256u) {
      let kl = e % (KSB * 32u);
      let p = e / (KSB * 32u);
      let kk = sb0 * 32u + kl;
      let t = t0 + 2u * p;
      let a = select(0.0, X[t * P.k + kk], t < P.n && kk < P.k);
      let b = select(0.0, X[(t + 1u) * P.k + kk], t + 1u < P.n && kk < P.k);
      x_tile_h[kl * 17u + p] = vec2<f16>(f16(a), f16(b));
    }
    workgroupBarrier();
    for (var s = 0u; s < KSB; s++) {
      // Zeroed explicitly: naga hoists a loop's `var` to the function's start, so an implicit zero is once.
      var part0 = vec4<f16>(0.0h);
      var part1 = vec4<f16>(0.0h);
      for (var i = 0u; i < 32u; i++) {
        let kl = s * 32u + i;
        let w = w_tile_h[kl * 16u + tq];
        let x = x_tile_h[kl * 17u + tp];
        part0 = fma(w, vec4<f16>(x.x), part0);
        part1 = fma(w, vec4<f16>(x.y), part1);
      }
      acc0 += vec4<f32>(part0);
      acc1 += vec4<f32>(part1);
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) {
    let row = r0 + 4u * tq + j;
    let t = t0 + 2u * tp;
    if (row < P.rows && t < P.n) { Y[t * P.ldy + P.col0 + row] = acc0[j]; }
    if (row < P.rows && t + 1u < P.n) { Y[(t + 1u) * P.ldy + P.col0 + row] = acc1[j]; }
  }
}
