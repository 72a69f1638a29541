// Y[t, col0 + r] = sum_k X[t, k] * W[r, k] for the rows r of one weight chunk (a weight larger than the
// adapter's largest storage binding is split into row chunks, each its own dispatch).
// One workgroup computes one row for up to TOKENS tokens: each thread dequantizes its sub-blocks of the row
// once and multiplies them with every token's activations; a tree reduction in workgroup memory sums the
// threads. Grid: (row % grid_x, row / grid_x, token tile).

struct MatmulParams {
  k: u32,          // row length (elements)
  rows: u32,       // rows in this chunk
  n: u32,          // tokens in the step
  row_words: u32,  // u32 words per row
  ldy: u32,        // Y row stride (elements)
  col0: u32,       // first output column of this chunk
  grid_x: u32,
};

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: MatmulParams;

const WG: u32 = 64u;
const TOKENS: u32 = 8u;
var<workgroup> partial: array<f32, 512>;  // TOKENS * WG

@compute @workgroup_size(64)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wid.x + wid.y * P.grid_x;
  let t0 = wid.z * TOKENS;
  let nt = min(TOKENS, P.n - t0);
  var acc: array<f32, 8>;
  if (row < P.rows) {
    let nsb = (P.k + 31u) / 32u;  // float rows may end in a partial sub-block (zero-padded in W)
    for (var sb = lid.x; sb < nsb; sb += WG) {
      dequant32(row * P.row_words, sb);
      let lim = min(32u, P.k - sb * 32u);
      for (var t = 0u; t < nt; t++) {
        let xb = (t0 + t) * P.k + sb * 32u;
        var s = 0.0;
        for (var i = 0u; i < lim; i++) { s += w32[i] * X[xb + i]; }
        acc[t] += s;
      }
    }
  }
  for (var t = 0u; t < TOKENS; t++) { partial[t * WG + lid.x] = acc[t]; }
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid.x < stride) {
      for (var t = 0u; t < TOKENS; t++) { partial[t * WG + lid.x] += partial[t * WG + lid.x + stride]; }
    }
    workgroupBarrier();
  }
  if (row < P.rows && lid.x < nt) {
    Y[(t0 + lid.x) * P.ldy + P.col0 + row] = partial[lid.x * WG];
  }
}
