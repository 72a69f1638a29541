// Sampling on the GPU, so that a sampled decode step reads back one id per row. Each logits row's token is drawn
// as the host's Sampler draws it (runtime/sampler.cpp): the candidates are the tokens within `margin` of the
// row's largest logit; then top-k (largest first, ties to the lower id), softmax at `temperature`, min-p, top-p
// over the sorted set, and the draw at the host's uniform `u`. The host sums in double where this kernel sums
// in f32, so a draw that lands within rounding of a boundary may pick the neighbour; elsewhere they agree.
// temperature <= 0: the argmax (ties to the lowest id; NaN never wins; a row of NaNs gives 0).
// One workgroup per row. The candidates are kept in workgroup memory (CAP of them): a row with more gets -1
// unless a top-k of at most CAP cuts them, found by a radix select over the values' bits; the host then reads
// that row and draws it with the same uniform.

struct SampleParams {
  cols: u32,
  rows: u32,
  first_row: u32,  // ROWS[first_row + r] is row r's (a chain's step s reads its rows at s * rows)
};

// runtime/backend.h DeviceSampleRow
struct RowParams {
  temperature: f32,
  top_p: f32,
  min_p: f32,
  margin: f32,
  top_k: i32,
  u: f32,
  pad0: u32,
  pad1: u32,
};

@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read> ROWS: array<RowParams>;
@group(0) @binding(2) var<storage, read_write> IDS: array<i32>;
@group(0) @binding(3) var<uniform> P: SampleParams;

// WG, best_v/best_i and reduce_best(): reduce.wgsl, prepended.
const CAP: u32 = 1024u;
const NONE: u32 = 0xffffffffu;

var<workgroup> cand_v: array<f32, 1024>;  // candidate logits, then their probabilities
var<workgroup> cand_i: array<u32, 1024>;  // candidate ids
var<workgroup> counts: array<u32, 256>;   // per-thread counts, then their exclusive prefix sums
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> fill: atomic<u32>;
var<workgroup> pub_v: f32;                // values thread 0 hands to the whole workgroup
var<workgroup> pub_u: u32;
var<workgroup> pub_w: u32;

// a before b: larger value first, then lower id (the host's strict order)
fn before(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
  return av > bv || (av == bv && ai < bi);
}

// An order-preserving u32 key of a non-NaN f32 (-0 and +0 equal, as the comparisons above see them).
fn key_of(v: f32) -> u32 {
  let b = select(bitcast<u32>(v), 0u, v == 0.0);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// counts[lid] = n; afterwards counts[] holds the exclusive prefix sums. Returns the total (uniform).
fn scan_counts(lid: u32, n: u32) -> u32 {
  counts[lid] = n;
  workgroupBarrier();
  if (lid == 0u) {
    var sum = 0u;
    for (var i = 0u; i < WG; i++) {
      let t = counts[i];
      counts[i] = sum;
      sum += t;
    }
    pub_u = sum;
  }
  return workgroupUniformLoad(&pub_u);
}

// Sorts cand_v/cand_i[0, n) by before() (bitonic over the next power of two, padded past the end).
fn sort_candidates(lid: u32, n: u32) {
  var n2 = 1u;
  while (n2 < n) { n2 <<= 1u; }
  for (var i = n + lid; i < n2; i += WG) {
    cand_v[i] = bitcast<f32>(0xff800000u | (n & 0u));  // -inf (made at run time), after every real candidate
    cand_i[i] = NONE;
  }
  workgroupBarrier();
  for (var k = 2u; k <= n2; k <<= 1u) {
    for (var j = k >> 1u; j > 0u; j >>= 1u) {
      for (var i = lid; i < n2; i += WG) {
        let l = i ^ j;
        if (l > i) {
          let up = (i & k) == 0u;  // this pair's half sorts in before() order, the other half reversed
          let swap = select(before(cand_v[i], cand_i[i], cand_v[l], cand_i[l]),
                            before(cand_v[l], cand_i[l], cand_v[i], cand_i[i]), up);
          if (swap) {
            let tv = cand_v[i];
            let ti = cand_i[i];
            cand_v[i] = cand_v[l];
            cand_i[i] = cand_i[l];
            cand_v[l] = tv;
            cand_i[l] = ti;
          }
        }
      }
      workgroupBarrier();
    }
  }
}

@compute @workgroup_size(256)
fn sample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let r = wid.x;
  let lid = lid3.x;
  let rp = ROWS[P.first_row + r];
  let base = r * P.cols;

  // ---- the row's largest logit (lowest id on ties, NaN skipped) ----
  var bv = 0.0;
  var bi = NONE;
  for (var c = lid; c < P.cols; c += WG) {
    let v = L[base + c];
    if (v == v && (bi == NONE || v > bv)) { bv = v; bi = c; }
  }
  reduce_best(lid, bv, bi);
  if (lid == 0u) {
    pub_v = best_v[0];
    pub_w = best_i[0];
  }
  let top_i = workgroupUniformLoad(&pub_w);
  let top_v = workgroupUniformLoad(&pub_v);
  // Greedy, every logit NaN (0, the host's argmax), or a largest logit of -inf (the host's draw then returns its
  // first candidate: the lowest id that is not NaN).
  if (rp.temperature <= 0.0 || top_i == NONE || bitcast<u32>(top_v) == 0xff800000u) {
    if (lid == 0u) { IDS[r] = select(i32(top_i), 0, top_i == NONE); }
    return;
  }

  // ---- candidates: each thread owns a contiguous stretch, so prefix sums keep them in id order ----
  let floor_l = top_v - rp.margin;
  let chunk = (P.cols + WG - 1u) / WG;
  let c0 = min(lid * chunk, P.cols);
  let c1 = min(c0 + chunk, P.cols);
  var mine = 0u;
  for (var c = c0; c < c1; c++) {
    if (L[base + c] >= floor_l) { mine++; }
  }
  let found = scan_counts(lid, mine);
  let k = u32(max(rp.top_k, 0));
  var n = found;        // candidates kept in cand_v/cand_i
  var sorted = false;
  if (found <= CAP) {
    var o = counts[lid];
    for (var c = c0; c < c1; c++) {
      let v = L[base + c];
      if (v >= floor_l) {
        cand_v[o] = v;
        cand_i[o] = c;
        o++;
      }
    }
    workgroupBarrier();
    if ((k > 0u && k < found) || rp.top_p < 1.0) {
      sort_candidates(lid, found);
      sorted = true;
      if (k > 0u && k < found) { n = k; }
    }
  } else if (k > 0u && k <= CAP) {
    // ---- radix select, 8 bits at a time from the top: the key of the k-th largest candidate ----
    var prefix = 0u;
    var want = k;  // how many of the candidates whose key starts with `prefix` are still to be taken
    for (var d = 0u; d < 4u; d++) {
      let shift = 24u - 8u * d;
      let high = select(0xffffffffu << (shift + 8u), 0u, d == 0u);  // the digits already fixed
      atomicStore(&hist[lid], 0u);
      workgroupBarrier();
      for (var c = lid; c < P.cols; c += WG) {
        let v = L[base + c];
        if (v >= floor_l) {
          let key = key_of(v);
          if ((key & high) == prefix) { atomicAdd(&hist[(key >> shift) & 0xffu], 1u); }
        }
      }
      workgroupBarrier();
      if (lid == 0u) {
        var above = 0u;
        var b = 255u;
        loop {
          let h = atomicLoad(&hist[b]);
          if (above + h >= want || b == 0u) { break; }
          above += h;
          b--;
        }
        pub_u = prefix | (b << shift);
        pub_w = want - above;
      }
      prefix = workgroupUniformLoad(&pub_u);
      want = workgroupUniformLoad(&pub_w);
    }
    // Everything above the k-th key, and the lowest-id `want` of the candidates equal to it.
    var equal = 0u;
    for (var c = c0; c < c1; c++) {
      let v = L[base + c];
      if (v >= floor_l && key_of(v) == prefix) { equal++; }
    }
    if (lid == 0u) { atomicStore(&fill, 0u); }
    _ = scan_counts(lid, equal);
    var e = counts[lid];
    for (var c = c0; c < c1; c++) {
      let v = L[base + c];
      if (v >= floor_l) {
        let key = key_of(v);
        var take = key > prefix;
        if (key == prefix) {
          take = e < want;
          e++;
        }
        if (take) {
          let o = atomicAdd(&fill, 1u);
          cand_v[o] = v;
          cand_i[o] = c;
        }
      }
    }
    workgroupBarrier();
    n = k;
    sort_candidates(lid, n);
    sorted = true;
  } else {
    if (lid == 0u) { IDS[r] = -1; }
    return;
  }

  // ---- softmax at the temperature (unnormalized: the largest is 1) ----
  let inv_t = 1.0 / rp.temperature;
  for (var i = lid; i < n; i += WG) { cand_v[i] = exp((cand_v[i] - top_v) * inv_t); }
  workgroupBarrier();

  // ---- min-p, top-p and the draw: short sequential passes, in the host's order ----
  if (lid == 0u) {
    if (rp.min_p > 0.0) {  // drop p < min_p (order kept); if that drops all, keep the most likely
      var w = 0u;
      for (var i = 0u; i < n; i++) {
        if (!(cand_v[i] < rp.min_p)) {
          cand_v[w] = cand_v[i];
          cand_i[w] = cand_i[i];
          w++;
        }
      }
      if (w == 0u) {
        for (var i = 0u; i < n; i++) {
          if (cand_v[i] == 1.0) {
            cand_v[0] = 1.0;
            cand_i[0] = cand_i[i];
            break;
          }
        }
        w = 1u;
      }
      n = w;
    }
    if (rp.top_p < 1.0 && sorted) {  // the smallest prefix holding top_p of the mass
      var total = 0.0;
      for (var i = 0u; i < n; i++) { total += cand_v[i]; }
      let goal = rp.top_p * total;
      var cum = 0.0;
      var keep = n;
      for (var i = 0u; i < n; i++) {
        cum += cand_v[i];
        if (cum >= goal) {
          keep = i + 1u;
          break;
        }
      }
      n = max(keep, 1u);
    }
    var total = 0.0;
    for (var i = 0u; i < n; i++) { total += cand_v[i]; }
    let x = rp.u * total;
    var cum = 0.0;
    var pick = NONE;
    for (var i = 0u; i < n; i++) {
      cum += cand_v[i];
      if (x < cum) {
        pick = i;
        break;
      }
    }
    if (pick == NONE) {  // rounding left x past the last boundary: the last candidate with nonzero probability
      for (var i = n; i > 0u; i--) {
        if (cand_v[i - 1u] > 0.0) {
          pick = i - 1u;
          break;
        }
      }
    }
    IDS[r] = i32(cand_i[select(pick, 0u, pick == NONE)]);
  }
}
