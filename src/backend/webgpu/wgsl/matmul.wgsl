// Y[t, col0 + r] = sum_k X[t, k] * W[r, k] for the rows r of one weight chunk (a weight larger than the
// adapter's largest storage binding is split into row chunks, each its own dispatch).
//   matmul      steps of many tokens (prefill): 64 rows x 32 tokens per workgroup, tiled over k in sub-blocks
//   matvec      steps of at most TOKENS tokens, any weight type: 8 rows per workgroup, 32 lanes per row
//   matvec_q4k  the same for Q4_K and Q6_K weights, read in 16-byte vectors and unpacked in registers
//   matvec_q6k

// The dot product of the dequantized sub-block w32 with X[xb ..]. Quantized rows are whole sub-blocks, so the
// loop has a constant bound: the driver unrolls it and keeps w32 in registers (a bound known only at run time
// sends w32 to local memory). Float rows may end in a partial sub-block.
fn dot32(sb: u32, xb: u32) -> f32 {
  var s = 0.0;
  if (WEIGHT_TYPE >= 2u) {
    for (var i = 0u; i < 32u; i++) { s += w32[i] * X[xb + i]; }
  } else {
    let lim = min(32u, P.k - sb * 32u);
    for (var i = 0u; i < lim; i++) { s += w32[i] * X[xb + i]; }
  }
  return s;
}

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

const TOKENS: u32 = 8u;

// Prefill: each workgroup computes a 64-row x 32-token tile of Y. Per sub-block of k (32 elements), 64 threads
// dequantize one row's sub-block each into workgroup memory, all 256 load the 32 tokens' activations, then each
// thread accumulates 4 rows x 2 tokens. Weights are read once per 32 tokens, activations once per 64 rows.
// Grid: (row tile % grid_x, row tile / grid_x, token tile).
const TM: u32 = 64u;
const TN: u32 = 32u;
var<workgroup> w_tile: array<f32, 2112>;  // TM x 33 (padded against bank conflicts)
var<workgroup> x_tile: array<f32, 1056>;  // TN x 33

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.x;
  let r0 = (wid.x + wid.y * P.grid_x) * TM;
  let t0 = wid.z * TN;
  let tr = (tid % 16u) * 4u;  // this thread's rows r0 + tr .. + 3
  let tc = (tid / 16u) * 2u;  // and tokens t0 + tc, + 1
  var acc: array<f32, 8>;
  let nsb = (P.k + 31u) / 32u;
  for (var sb = 0u; sb < nsb; sb++) {
    if (tid < TM) {
      let row = r0 + tid;
      if (row < P.rows) {
        dequant32(row * P.row_words, sb);
        for (var i = 0u; i < 32u; i++) { w_tile[tid * 33u + i] = w32[i]; }
      } else {
        for (var i = 0u; i < 32u; i++) { w_tile[tid * 33u + i] = 0.0; }
      }
    }
    for (var e = tid; e < TN * 32u; e += 256u) {
      let t = t0 + e / 32u;
      let kk = sb * 32u + e % 32u;
      x_tile[(e / 32u) * 33u + e % 32u] = select(0.0, X[t * P.k + kk], t < P.n && kk < P.k);
    }
    workgroupBarrier();
    for (var i = 0u; i < 32u; i++) {
      let x0 = x_tile[tc * 33u + i];
      let x1 = x_tile[(tc + 1u) * 33u + i];
      for (var j = 0u; j < 4u; j++) {
        let w = w_tile[(tr + j) * 33u + i];
        acc[2u * j] += w * x0;
        acc[2u * j + 1u] += w * x1;
      }
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) {
    let row = r0 + tr + j;
    for (var m = 0u; m < 2u; m++) {
      let t = t0 + tc + m;
      if (row < P.rows && t < P.n) { Y[t * P.ldy + P.col0 + row] = acc[2u * j + m]; }
    }
  }
}

// The same product for steps of few tokens (decode; at most TOKENS per z slice): 8 rows per 256-thread
// workgroup, 32 lanes per row, and the reduction covers only the step's tokens. Grid: (row group % grid_x,
// row group / grid_x, token tile).
const MV_ROWS: u32 = 8u;
const MV_LANES: u32 = 32u;
// (The lanes' sums: matvec_finish, in matvec_finish.wgsl or matvec_finish_subgroup.wgsl, prepended by the host.)

@compute @workgroup_size(256)
fn matvec(ids: Ids, lane_ids: Lane) {  // ids.wgsl
  let wid = ids.wid;
  let lid = lane_ids.lid;
  let lane = lid.x % MV_LANES;
  let row = (wid.x + wid.y * P.grid_x) * MV_ROWS + lid.x / MV_LANES;
  let t0 = wid.z * TOKENS;
  let nt = min(TOKENS, P.n - t0);
  var acc: array<f32, 8>;
  if (row < P.rows) {
    let nsb = (P.k + 31u) / 32u;
    for (var sb = lane; sb < nsb; sb += MV_LANES) {
      dequant32(row * P.row_words, sb);
      for (var t = 0u; t < nt; t++) { acc[t] += dot32(sb, (t0 + t) * P.k + sb * 32u); }
    }
  }
  matvec_finish(ids, lid.x, row, t0, nt, acc);
}

// Q4_K decode product without a dequantized copy: 16-byte loads of weights (W4) and activations (X4), 4-bit
// values unpacked in registers. A lane takes one (superblock, sub-block pair) at a time: the superblock's
// header (d, dmin, 12 scale bytes: one vec4) and the pair's 32 nibble bytes (two vec4), i.e. sub-blocks 2c
// (low nibbles) and 2c + 1 (high nibbles), 64 elements. x = d * sc * q - dmin * m, so each sub-block needs
// sum(q * x) and sum(x). Rows are whole superblocks (36 words, 9 vec4); k is a multiple of 256.
@group(0) @binding(0) var<storage, read> W4: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> X4: array<vec4<f32>>;

fn nibbles(w: u32, shift: u32) -> vec4<f32> {
  let v = w >> shift;
  return vec4<f32>(f32(v & 15u), f32((v >> 8u) & 15u), f32((v >> 16u) & 15u), f32((v >> 24u) & 15u));
}

@compute @workgroup_size(256)
fn matvec_q4k(ids: Ids, lane_ids: Lane) {  // ids.wgsl
  let wid = ids.wid;
  let lid = lane_ids.lid;
  let lane = lid.x % MV_LANES;
  let row = (wid.x + wid.y * P.grid_x) * MV_ROWS + lid.x / MV_LANES;
  let t0 = wid.z * TOKENS;
  let nt = min(TOKENS, P.n - t0);
  var acc: array<f32, 8>;
  if (row < P.rows) {
    let items = (P.k / 256u) * 4u;
    let ones = vec4<f32>(1.0);
    for (var it = lane; it < items; it += MV_LANES) {
      let sbk = it / 4u;
      let c = it % 4u;
      let base4 = (row * P.row_words + sbk * 36u) / 4u;
      let hdr = W4[base4];
      let dm = unpack2x16float(hdr.x);
      let sm0 = q4k_scale_min(hdr, 2u * c);
      let sm1 = q4k_scale_min(hdr, 2u * c + 1u);
      let qa = W4[base4 + 1u + 2u * c];
      let qb = W4[base4 + 2u + 2u * c];
      let q = array<u32, 8>(qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w);
      for (var t = 0u; t < nt; t++) {
        let xb4 = ((t0 + t) * P.k + sbk * 256u + c * 64u) / 4u;
        var s0 = 0.0;
        var s1 = 0.0;
        var x0 = 0.0;
        var x1 = 0.0;
        for (var i = 0u; i < 8u; i++) {
          let xl = X4[xb4 + i];
          let xh = X4[xb4 + 8u + i];
          s0 += dot(nibbles(q[i], 0u), xl);
          s1 += dot(nibbles(q[i], 4u), xh);
          x0 += dot(xl, ones);
          x1 += dot(xh, ones);
        }
        acc[t] += dm.x * (sm0.x * s0 + sm1.x * s1) - dm.y * (sm0.y * x0 + sm1.y * x1);
      }
    }
  }
  matvec_finish(ids, lid.x, row, t0, nt, acc);
}

// Q6_K decode product, the same way (rows repacked to 56 words = 14 vec4 per superblock: ql 0-7, qh 8-11,
// scales 12, d 13). A lane takes one (superblock, half n, l-half h) at a time: elements 128n + 32k + 16h + l'
// (k = 0..3, l' = 0..15), i.e. ql vec4s 4n + h (k even) and 4n + 2 + h (k odd; high nibbles for k >= 2), qh
// vec4 8 + 2n + h (2 bits at 2k), one scale per k: scales[8n + 2k + h].
fn q6_vec(lw: u32, hw: u32) -> vec4<f32> {
  return vec4<f32>(f32(i32((lw & 15u) | ((hw & 3u) << 4u)) - 32),
                   f32(i32(((lw >> 8u) & 15u) | (((hw >> 8u) & 3u) << 4u)) - 32),
                   f32(i32(((lw >> 16u) & 15u) | (((hw >> 16u) & 3u) << 4u)) - 32),
                   f32(i32(((lw >> 24u) & 15u) | (((hw >> 24u) & 3u) << 4u)) - 32));
}

@compute @workgroup_size(256)
fn matvec_q6k(ids: Ids, lane_ids: Lane) {  // ids.wgsl
  let wid = ids.wid;
  let lid = lane_ids.lid;
  let lane = lid.x % MV_LANES;
  let row = (wid.x + wid.y * P.grid_x) * MV_ROWS + lid.x / MV_LANES;
  let t0 = wid.z * TOKENS;
  let nt = min(TOKENS, P.n - t0);
  var acc: array<f32, 8>;
  if (row < P.rows) {
    let items = (P.k / 256u) * 4u;
    for (var it = lane; it < items; it += MV_LANES) {
      let sbk = it / 4u;
      let n = (it / 2u) % 2u;
      let h = it % 2u;
      let b4 = (row * P.row_words + sbk * 56u) / 4u;
      let sc = W4[b4 + 12u];
      let d = unpack2x16float(W4[b4 + 13u].x).x;
      let qla = W4[b4 + 4u * n + h];
      let qlb = W4[b4 + 4u * n + 2u + h];
      let qh = W4[b4 + 8u + 2u * n + h];
      let la = array<u32, 4>(qla.x, qla.y, qla.z, qla.w);
      let lb = array<u32, 4>(qlb.x, qlb.y, qlb.z, qlb.w);
      let hh = array<u32, 4>(qh.x, qh.y, qh.z, qh.w);
      let scw = array<u32, 4>(sc.x, sc.y, sc.z, sc.w);
      for (var t = 0u; t < nt; t++) {
        let xb4 = ((t0 + t) * P.k + sbk * 256u + 128u * n + 16u * h) / 4u;
        var total = 0.0;
        for (var k = 0u; k < 4u; k++) {
          let s = 8u * n + 2u * k + h;
          let scale = sbyte(scw[s / 4u], s % 4u);
          let shift = select(0u, 4u, k >= 2u);
          var part = 0.0;
          for (var i = 0u; i < 4u; i++) {
            let lw = select(la[i], lb[i], (k & 1u) == 1u) >> shift;
            part += dot(q6_vec(lw, hh[i] >> (2u * k)), X4[xb4 + 8u * k + i]);
          }
          total += scale * part;
        }
        acc[t] += d * total;
      }
    }
  }
  matvec_finish(ids, lid.x, row, t0, nt, acc);
}
