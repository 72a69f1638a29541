// For each logits row, the id of its largest value (ties: the lowest id; NaN never wins), one workgroup per row.

struct ArgmaxParams {
  cols: u32,
  rows: u32,
};

@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read_write> IDS: array<i32>;
@group(0) @binding(2) var<uniform> P: ArgmaxParams;

// WG, best_v/best_i, better() and reduce_best(): reduce.wgsl, prepended.

@compute @workgroup_size(256)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wid.x;
  var bv = 0.0;
  var bi = 0xffffffffu;  // none yet: the first non-NaN value is taken, -inf included (as the host's argmax)
  for (var c = lid.x; c < P.cols; c += WG) {
    let v = L[r * P.cols + c];
    if (v == v && (bi == 0xffffffffu || v > bv)) { bv = v; bi = c; }
  }
  reduce_best(lid.x, bv, bi);
  if (lid.x == 0u) { IDS[r] = select(i32(best_i[0]), 0, best_i[0] == 0xffffffffu); }
}

// For each logits row r, the tokens whose logit is at least (row max - MARGINS[r]), ids ascending, as the
// host's select_candidates() picks them: OUT[r * (1 + 2 cap)] = their count (-1 when more than `cap` or none),
// then `cap` values (f32 bits) and `cap` ids. One workgroup per row; each thread owns a contiguous stretch of
// the row, so a prefix sum over the threads' counts keeps the ids in order.

struct CandidateParams {
  cols: u32,
  rows: u32,
  cap: u32,
};

@group(0) @binding(3) var<storage, read> CL: array<f32>;
@group(0) @binding(4) var<storage, read_write> OUT: array<u32>;
@group(0) @binding(5) var<storage, read> MARGINS: array<f32>;
@group(0) @binding(6) var<uniform> CP: CandidateParams;

var<workgroup> red: array<f32, 256>;
var<workgroup> counts: array<u32, 256>;
var<workgroup> total: u32;

@compute @workgroup_size(256)
fn candidates(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wid.x;
  let base = r * CP.cols;
  // -inf, made at run time: WGSL constant expressions reject infinities (Tint refuses the plain bitcast).
  var m = bitcast<f32>(0xff800000u | (CP.cols & 0u));  // NaN never wins
  for (var c = lid.x; c < CP.cols; c += WG) {
    let v = CL[base + c];
    if (v == v) { m = max(m, v); }
  }
  red[lid.x] = m;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) { red[lid.x] = max(red[lid.x], red[lid.x + s]); }
    workgroupBarrier();
  }
  let floor_l = red[0] - MARGINS[r];
  let chunk = (CP.cols + WG - 1u) / WG;
  let c0 = min(lid.x * chunk, CP.cols);
  let c1 = min(c0 + chunk, CP.cols);
  var n = 0u;
  for (var c = c0; c < c1; c++) {
    if (CL[base + c] >= floor_l) { n++; }
  }
  counts[lid.x] = n;
  workgroupBarrier();
  if (lid.x == 0u) {
    var sum = 0u;
    for (var i = 0u; i < WG; i++) {
      let t = counts[i];
      counts[i] = sum;
      sum += t;
    }
    total = sum;
  }
  workgroupBarrier();
  let found = workgroupUniformLoad(&total);
  let out0 = r * (1u + 2u * CP.cap);
  if (found == 0u || found > CP.cap) {
    if (lid.x == 0u) { OUT[out0] = 0xffffffffu; }
    return;
  }
  var k = counts[lid.x];
  for (var c = c0; c < c1; c++) {
    let v = CL[base + c];
    if (v >= floor_l) {
      OUT[out0 + 1u + k] = bitcast<u32>(v);
      OUT[out0 + 1u + CP.cap + k] = c;
      k++;
    }
  }
  if (lid.x == 0u) { OUT[out0] = found; }
}

// Argmax of long rows in two dispatches, so that a 128K-entry vocabulary is scanned by many workgroups:
// argmax_partial: workgroup (chunk, row) writes its chunk's best (value, id) to PART[(row * chunks + chunk) * 2];
// argmax_final: one workgroup per row picks the best of the row's chunks (same rule: NaN never wins, ties go
// to the lowest id, a row of NaNs gives 0).

struct ArgmaxSplitParams {
  cols: u32,
  rows: u32,
  chunks: u32,
  chunk_cols: u32,
};

@group(0) @binding(0) var<storage, read> SL: array<f32>;
@group(0) @binding(1) var<storage, read_write> SIDS: array<i32>;
@group(0) @binding(7) var<storage, read_write> PART: array<u32>;
@group(0) @binding(8) var<uniform> SP: ArgmaxSplitParams;

@compute @workgroup_size(256)
fn argmax_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let chunk = wid.x;
  let r = wid.y;
  let c0 = chunk * SP.chunk_cols;
  let c1 = min(c0 + SP.chunk_cols, SP.cols);
  var bv = 0.0;
  var bi = 0xffffffffu;
  for (var c = c0 + lid.x; c < c1; c += WG) {
    let v = SL[r * SP.cols + c];
    if (v == v && (bi == 0xffffffffu || v > bv)) { bv = v; bi = c; }
  }
  reduce_best(lid.x, bv, bi);
  if (lid.x == 0u) {
    PART[(r * SP.chunks + chunk) * 2u] = bitcast<u32>(best_v[0]);
    PART[(r * SP.chunks + chunk) * 2u + 1u] = best_i[0];
  }
}

@compute @workgroup_size(256)
fn argmax_final(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wid.x;
  var bv = 0.0;
  var bi = 0xffffffffu;
  for (var k = lid.x; k < SP.chunks; k += WG) {
    let v = bitcast<f32>(PART[(r * SP.chunks + k) * 2u]);
    let i = PART[(r * SP.chunks + k) * 2u + 1u];
    if (better(v, i, bv, bi)) { bv = v; bi = i; }
  }
  reduce_best(lid.x, bv, bi);
  if (lid.x == 0u) { SIDS[r] = select(i32(best_i[0]), 0, best_i[0] == 0xffffffffu); }
}
