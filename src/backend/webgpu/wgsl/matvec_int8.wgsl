// Decode products over int8 activations (one token): Y[col0 + r] = sum_k X[k] * W[r, k] for Q4_K and Q6_K rows,
// with the weights' 4/6-bit values and the activations multiplied four at a time by dot4I8Packed (WGSL's packed
// 4x8-bit dot product: one instruction where the f32 kernels in matmul.wgsl spend a dozen per four elements).
//   quantize_x      X (f32, k per token) -> XQ (int8, packed four to a word) and XS (per 32 elements: the scale s,
//                   and s times the sums of the first 16, last 16 and all 32 values; q8.wgsl)
//   matvec_multi_i8 one token, up to three Q4_K / Q6_K weights (Q6_K: the 224-byte repacked blocks, as in
//                   matmul.wgsl) of the same activation in one dispatch (q/k/v, gate/up; often just one)
// Rows are whole 256-element superblocks, so the 32-element activation blocks line up with the weights'
// sub-blocks (Q4_K: one scale per 32; Q6_K: one per 16, a half block of XS).

struct QuantizeParams {
  k: u32,  // elements per token
  pad: u32,
  n: u32,  // tokens
};

@group(0) @binding(0) var<storage, read> W4: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> XQ: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: QuantizeParams;
@group(0) @binding(4) var<storage, read> XS: array<vec4<f32>>;

@group(0) @binding(5) var<storage, read> X4: array<vec4<f32>>;

// One invocation per 32-element block (q8.wgsl, prepended, writes it).
@compute @workgroup_size(256)
fn quantize_x(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = gid.x;
  if (b >= P.n * (P.k / 32u)) { return; }
  var v: array<vec4<f32>, 8>;
  for (var i = 0u; i < 8u; i++) { v[i] = X4[b * 8u + i]; }
  store_q8_block(b, v);
}

// 8 rows per 256-invocation workgroup, 32 lanes per row; a row's lanes add up in row_sum (row_sum.wgsl through
// workgroup memory, or row_sum_subgroup.wgsl with subgroup shuffles; the host prepends one of them).
const ROWS: u32 = 8u;
const LANES: u32 = 32u;

// Q4_K: a lane takes one (superblock, sub-block pair c) at a time: the header (d, dmin, 12 scale bytes: one
// vec4) and 32 nibble bytes (two vec4) holding sub-block 2c in the low nibbles and 2c + 1 in the high ones.
// x = d * sc * q - dmin * m, so sub-block j adds d sc_j s_j dot(q, xq) - dmin m_j (s_j sum(xq)).
fn q4k_item(hdr: vec4<u32>, qa: vec4<u32>, qb: vec4<u32>, xb: u32, c: u32) -> f32 {
  let xa0 = XQ[2u * xb];
  let xa1 = XQ[2u * xb + 1u];
  let xb0 = XQ[2u * xb + 2u];
  let xb1 = XQ[2u * xb + 3u];
  let s0 = XS[xb];
  let s1 = XS[xb + 1u];
  let m = 0x0F0F0F0Fu;
  let d0 = dot4I8Packed(qa.x & m, xa0.x) + dot4I8Packed(qa.y & m, xa0.y) + dot4I8Packed(qa.z & m, xa0.z) +
           dot4I8Packed(qa.w & m, xa0.w) + dot4I8Packed(qb.x & m, xa1.x) + dot4I8Packed(qb.y & m, xa1.y) +
           dot4I8Packed(qb.z & m, xa1.z) + dot4I8Packed(qb.w & m, xa1.w);
  let d1 = dot4I8Packed((qa.x >> 4u) & m, xb0.x) + dot4I8Packed((qa.y >> 4u) & m, xb0.y) +
           dot4I8Packed((qa.z >> 4u) & m, xb0.z) + dot4I8Packed((qa.w >> 4u) & m, xb0.w) +
           dot4I8Packed((qb.x >> 4u) & m, xb1.x) + dot4I8Packed((qb.y >> 4u) & m, xb1.y) +
           dot4I8Packed((qb.z >> 4u) & m, xb1.z) + dot4I8Packed((qb.w >> 4u) & m, xb1.w);
  let dm = unpack2x16float(hdr.x);
  let sm0 = q4k_scale_min(hdr, 2u * c);
  let sm1 = q4k_scale_min(hdr, 2u * c + 1u);
  return dm.x * (sm0.x * s0.x * f32(d0) + sm1.x * s1.x * f32(d1)) - dm.y * (sm0.y * s0.w + sm1.y * s1.w);
}

// Q6_K (rows repacked to 56 words = 14 vec4 per superblock: ql 0-7, qh 8-11, scales 12, d 13): a lane takes one
// (superblock, half n, l-half h) at a time: elements 128n + 32k + 16h + l (k = 0..3, l = 0..15), i.e. ql vec4s
// 4n + h (k even) and 4n + 2 + h (k odd; high nibbles for k >= 2), qh vec4 8 + 2n + h (2 bits at 2k), scale
// byte 8n + 2k + h. The 6-bit values q (0..63) stand for q - 32: each 16 adds
// d sc (s dot(q, xq) - 32 s sum(xq)), with s sum(xq) the half-block sum XS holds.
fn q6_dot(lw: vec4<u32>, hw: vec4<u32>, shift: u32, hshift: u32, x: vec4<u32>) -> i32 {
  let m = 0x0F0F0F0Fu;
  let h = 0x03030303u;
  return dot4I8Packed(((lw.x >> shift) & m) | (((hw.x >> hshift) & h) << 4u), x.x) +
         dot4I8Packed(((lw.y >> shift) & m) | (((hw.y >> hshift) & h) << 4u), x.y) +
         dot4I8Packed(((lw.z >> shift) & m) | (((hw.z >> hshift) & h) << 4u), x.z) +
         dot4I8Packed(((lw.w >> shift) & m) | (((hw.w >> hshift) & h) << 4u), x.w);
}

fn q6_scale(sc: vec4<u32>, i: u32) -> f32 {  // signed scale byte i (0-15)
  let w = select(select(sc.w, sc.z, i < 12u), select(sc.y, sc.x, i < 4u), i < 8u);
  return f32(bitcast<i32>(w << (24u - 8u * (i % 4u))) >> 24u);
}

fn q6k_item(qla: vec4<u32>, qlb: vec4<u32>, qh: vec4<u32>, sc: vec4<u32>, dword: vec4<u32>, xb: u32, n: u32,
            h: u32) -> f32 {
  let x0 = XQ[2u * xb + h];  // activation block xb + k, half h: XQ vec4 2 (xb + k) + h
  let x1 = XQ[2u * xb + 2u + h];
  let x2 = XQ[2u * xb + 4u + h];
  let x3 = XQ[2u * xb + 6u + h];
  let e0 = XS[xb];
  let e1 = XS[xb + 1u];
  let e2 = XS[xb + 2u];
  let e3 = XS[xb + 3u];
  let sb = 8u * n + h;
  let t = q6_scale(sc, sb) * (e0.x * f32(q6_dot(qla, qh, 0u, 0u, x0)) - 32.0 * select(e0.y, e0.z, h == 1u)) +
          q6_scale(sc, sb + 2u) * (e1.x * f32(q6_dot(qlb, qh, 0u, 2u, x1)) - 32.0 * select(e1.y, e1.z, h == 1u)) +
          q6_scale(sc, sb + 4u) * (e2.x * f32(q6_dot(qla, qh, 4u, 4u, x2)) - 32.0 * select(e2.y, e2.z, h == 1u)) +
          q6_scale(sc, sb + 6u) * (e3.x * f32(q6_dot(qlb, qh, 4u, 6u, x3)) - 32.0 * select(e3.y, e3.z, h == 1u));
  return unpack2x16float(dword.x).x * t;
}

// @weight-binding-functions begin: the host appends copies of this section for the fused kernel's other weight
// bindings (W4 renamed W4_1, W4_2; the functions' names get the same suffix).
// This lane's part of row `row` (row_words u32 words per row, k elements) of a Q4_K / Q6_K weight.
fn q4k_lane_W4(row: u32, lane: u32, row_words: u32, k: u32) -> f32 {
  var acc = 0.0;
  let row4 = row * (row_words / 4u);
  for (var it = lane; it < (k / 256u) * 4u; it += LANES) {
    let b4 = row4 + (it / 4u) * 9u;
    let c = it % 4u;
    acc += q4k_item(W4[b4], W4[b4 + 1u + 2u * c], W4[b4 + 2u + 2u * c], (it / 4u) * 8u + 2u * c, c);
  }
  return acc;
}
fn q6k_lane_W4(row: u32, lane: u32, row_words: u32, k: u32) -> f32 {
  var acc = 0.0;
  let row4 = row * (row_words / 4u);
  for (var it = lane; it < (k / 256u) * 4u; it += LANES) {
    let n = (it / 2u) % 2u;
    let h = it % 2u;
    let b4 = row4 + (it / 4u) * 14u;
    acc += q6k_item(W4[b4 + 4u * n + h], W4[b4 + 4u * n + 2u + h], W4[b4 + 8u + 2u * n + h], W4[b4 + 12u],
                    W4[b4 + 13u], (it / 4u) * 8u + 4u * n, n, h);
  }
  return acc;
}
// @weight-binding-functions end

// Up to three products of the same int8 activation (each weight in one binding; the host binds small dummy
// buffers for weights not there): the workgroups of weight 0 come first, then those of weight 1 and 2. Bit s
// of `kinds`: weight s is Q6_K (else Q4_K).
struct MultiParams {
  k: u32,
  rows0: u32,
  segments: u32,
  row_words0: u32,
  kinds: u32,
  col0_0: u32,
  grid_x: u32,
  rows1: u32,
  row_words1: u32,
  col0_1: u32,
  rows2: u32,
  row_words2: u32,
  col0_2: u32,
};
@group(0) @binding(3) var<uniform> MP: MultiParams;
@group(0) @binding(8) var<storage, read> W4_1: array<vec4<u32>>;
@group(0) @binding(9) var<storage, read> W4_2: array<vec4<u32>>;
@group(0) @binding(10) var<storage, read_write> Y_1: array<f32>;
@group(0) @binding(11) var<storage, read_write> Y_2: array<f32>;

@compute @workgroup_size(256)
fn matvec_multi_i8(ids: Ids, lane_ids: Lane) {  // the built-in inputs (row_sum*.wgsl)
  let wid = ids.wid;
  let lid = lane_ids.lid;
  let g = wid.x + wid.y * MP.grid_x;
  let g0 = (MP.rows0 + ROWS - 1u) / ROWS;
  let g1 = (MP.rows1 + ROWS - 1u) / ROWS;
  let seg = select(select(2u, 1u, g < g0 + g1), 0u, g < g0);
  let rows = select(select(MP.rows2, MP.rows1, seg == 1u), MP.rows0, seg == 0u);
  let row = (g - select(select(g0 + g1, g0, seg == 1u), 0u, seg == 0u)) * ROWS + lid.x / LANES;
  let q6k = ((MP.kinds >> seg) & 1u) == 1u;
  let lane = lid.x % LANES;
  var acc = 0.0;
  if (row < rows) {
    // (if/else, not select: select would run both)
    if (seg == 0u) {
      if (q6k) { acc = q6k_lane_W4(row, lane, MP.row_words0, MP.k); } else { acc = q4k_lane_W4(row, lane, MP.row_words0, MP.k); }
    } else if (seg == 1u) {
      if (q6k) { acc = q6k_lane_W4_1(row, lane, MP.row_words1, MP.k); } else { acc = q4k_lane_W4_1(row, lane, MP.row_words1, MP.k); }
    } else {
      if (q6k) { acc = q6k_lane_W4_2(row, lane, MP.row_words2, MP.k); } else { acc = q4k_lane_W4_2(row, lane, MP.row_words2, MP.k); }
    }
  }
  let s = row_sum(ids, lid.x, acc);
  if (lane == 0u && row < rows) {
    if (seg == 0u) { Y[MP.col0_0 + row] = s; }
    else if (seg == 1u) { Y_1[MP.col0_1 + row] = s; }
    else { Y_2[MP.col0_2 + row] = s; }
  }
}
