// The KV cache and attention over it. KV_F16 is prepended by the host: true stores keys/values as f16 pairs
// packed in u32 words (pack2x16float: no shader-f16 feature needed), false as f32. Layout of one layer's cache:
// [slot][position][kv_dim].

struct KvParams {
  kv_dim: u32,
  n: u32,          // tokens
  n_ctx: u32,
  cap: u32,        // capacity of each array in the step buffer
  n_heads: u32,
  n_kv_heads: u32,
  head_dim: u32,
  scale: f32,
  q_cols: u32,
  grid_x: u32,
  splits: u32,     // attention_split / attention_merge: the most chunks a token's positions are cut into
  half: u32,       // rope_kv_store (rope_kv.wgsl): rope_dim / 2
};

@group(0) @binding(0) var<storage, read_write> KC: array<u32>;
@group(0) @binding(1) var<storage, read_write> VC: array<u32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read> STEP: array<i32>;  // tokens | positions | slots | logit rows
@group(0) @binding(5) var<uniform> P: KvParams;
@group(0) @binding(6) var<storage, read> KR: array<u32>;
@group(0) @binding(7) var<storage, read> VR: array<u32>;
@group(0) @binding(8) var<storage, read> Q: array<f32>;
@group(0) @binding(9) var<storage, read_write> O: array<f32>;

// Stores pair p (elements 2p, 2p + 1) of token t's key and value rows at the token's slot and position.
fn store_kv_pair(t: u32, p: u32, k: vec2<f32>, v: vec2<f32>) {
  let pos = u32(STEP[P.cap + t]);
  let slot = u32(STEP[2u * P.cap + t]);
  let row = (slot * P.n_ctx + pos) * P.kv_dim;
  if (KV_F16) {
    KC[row / 2u + p] = pack2x16float(k);
    VC[row / 2u + p] = pack2x16float(v);
  } else {
    KC[row + 2u * p] = bitcast<u32>(k.x);
    KC[row + 2u * p + 1u] = bitcast<u32>(k.y);
    VC[row + 2u * p] = bitcast<u32>(v.x);
    VC[row + 2u * p + 1u] = bitcast<u32>(v.y);
  }
}

// One thread per (token, pair of elements): K/V rows of the step go to their slot and position.
@compute @workgroup_size(256)
fn kv_store(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let id = (wid.x + wid.y * P.grid_x) * 256u + lid.x;
  let half = P.kv_dim / 2u;
  if (id >= P.n * half) { return; }
  let t = id / half;
  let i = id % half;
  let src = t * P.kv_dim + 2u * i;
  store_kv_pair(t, i, vec2<f32>(K[src], K[src + 1u]), vec2<f32>(V[src], V[src + 1u]));
}

fn cache_at(is_k: bool, e: u32) -> f32 {
  if (KV_F16) {
    let w = select(VR[e / 2u], KR[e / 2u], is_k);
    let h = unpack2x16float(w);
    return select(h.x, h.y, (e & 1u) == 1u);
  }
  return bitcast<f32>(select(VR[e], KR[e], is_k));
}

const TILE: u32 = 64u;
var<workgroup> q_sh: array<f32, 256>;
var<workgroup> p_sh: array<f32, 64>;
var<workgroup> pos_sh: u32;

// One workgroup per (token, query head): causal softmax(q·K/sqrt(d))·V over the token's slot, positions
// 0..pos, in tiles of 64 keys with a running max and sum (online softmax), so no score buffer is needed.
// Thread j scores key j of a tile; thread d accumulates output dims d, d+64, d+128, d+192.
@compute @workgroup_size(64)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = wid.x;
  let h = wid.y;
  let j = lid.x;
  let hd = P.head_dim;
  let kvh = h / (P.n_heads / P.n_kv_heads);
  if (j == 0u) { pos_sh = u32(STEP[P.cap + t]); }
  let pos = workgroupUniformLoad(&pos_sh);  // the same for the whole workgroup: the loop below has barriers
  let slot = u32(STEP[2u * P.cap + t]);
  let base = slot * P.n_ctx * P.kv_dim + kvh * hd;
  for (var d = j; d < hd; d += TILE) { q_sh[d] = Q[t * P.q_cols + h * hd + d]; }
  workgroupBarrier();

  var m = -3.0e38;
  var l = 0.0;
  var o = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var start = 0u; start <= pos; start += TILE) {
    let key = start + j;
    var s = -3.0e38;
    if (key <= pos) {
      var dot = 0.0;
      let kb = base + key * P.kv_dim;
      for (var d = 0u; d < hd; d++) { dot += q_sh[d] * cache_at(true, kb + d); }
      s = dot * P.scale;
    }
    rg_sh[j] = s;
    workgroupBarrier();
    reduce_group(j, 1u, true);
    let m_new = max(m, rg_sh[0]);
    workgroupBarrier();
    let p = select(0.0, exp(s - m_new), key <= pos);
    p_sh[j] = p;
    rg_sh[j] = p;
    workgroupBarrier();
    reduce_group(j, 1u, false);
    let corr = exp(m - m_new);
    l = l * corr + rg_sh[0];
    m = m_new;
    let nk = min(TILE, pos + 1u - start);
    for (var c = 0u; c < 4u; c++) {
      let d = j + c * TILE;
      if (d < hd) {
        var acc = o[c] * corr;
        for (var kk = 0u; kk < nk; kk++) { acc += p_sh[kk] * cache_at(false, base + (start + kk) * P.kv_dim + d); }
        o[c] = acc;
      }
    }
    workgroupBarrier();
  }
  for (var c = 0u; c < 4u; c++) {
    let d = j + c * TILE;
    if (d < hd) { O[t * P.q_cols + h * hd + d] = o[c] / l; }
  }
}

// ---- decode: split over the KV length, then a merge (flash decoding) ----
// A decode step has few tokens, so one workgroup per (token, head) leaves most of a large GPU idle. Here a
// token's positions 0..pos are cut into chunks (at most P.splits, at least one tile of 64 each, sized from pos
// at run time so a recorded step stays right at any position) and a workgroup handles one chunk for all the
// query heads that share one KV head (each key and value row is read once for the group). Each workgroup writes
// its partial output with its running max and sum; attention_merge combines the chunks of a (token, head).
@group(0) @binding(11) var<storage, read_write> PO: array<f32>;   // [token][head][split][head_dim]
@group(0) @binding(12) var<storage, read_write> PML: array<f32>;  // [token][head][split] (max, sum)

const MAX_GROUP: u32 = 8u;
var<workgroup> qg_sh: array<f32, 2048>;  // [group head][head_dim]: MAX_GROUP x 256
var<workgroup> pg_sh: array<f32, 512>;   // [group head][key of the tile]: probabilities
var<workgroup> rg_sh: array<f32, 512>;   // [group head][key of the tile]: reductions (attention: head 0 only)
var<workgroup> tok_sh: vec2<u32>;        // position, slot

fn split_chunk(pos: u32) -> u32 {
  let per = (pos + P.splits) / P.splits;  // ceil((pos + 1) / splits)
  return max(TILE, (per + TILE - 1u) / TILE * TILE);
}

// Key j of the tile, head g of the group: the tree reductions over the 64 keys of every head at once (the
// per-(token, head) kernel above uses it with one head).
fn reduce_group(j: u32, group: u32, is_max: bool) {
  for (var st = TILE / 2u; st > 0u; st >>= 1u) {
    if (j < st) {
      for (var g = 0u; g < group; g++) {
        let a = rg_sh[g * TILE + j];
        let b = rg_sh[g * TILE + j + st];
        rg_sh[g * TILE + j] = select(a + b, max(a, b), is_max);
      }
    }
    workgroupBarrier();
  }
}

// Grid: x = chunk, y = KV head, z = token. Thread j scores key j of each tile against the group's heads; for
// the output, thread j owns dims j, j + 64, j + 128, j + 192 of every head of the group.
@compute @workgroup_size(64)
fn attention_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let split = wid.x;
  let kvh = wid.y;
  let t = wid.z;
  let j = lid.x;
  let hd = P.head_dim;
  let group = P.n_heads / P.n_kv_heads;
  if (j == 0u) { tok_sh = vec2<u32>(u32(STEP[P.cap + t]), u32(STEP[2u * P.cap + t])); }
  let tok = workgroupUniformLoad(&tok_sh);
  let pos = tok.x;
  let chunk = split_chunk(pos);
  let start = split * chunk;
  let end = min(pos + 1u, start + chunk);
  let h0 = kvh * group;
  if (start >= end) { return; }  // past the token's last chunk: the merge does not read it
  let base = tok.y * P.n_ctx * P.kv_dim + kvh * hd;
  for (var i = j; i < group * hd; i += TILE) {
    qg_sh[i] = Q[t * P.q_cols + (h0 + i / hd) * hd + i % hd] * P.scale;
  }
  workgroupBarrier();

  var m: array<f32, MAX_GROUP>;
  var l: array<f32, MAX_GROUP>;
  var o: array<f32, 32>;  // [group head][4 dims]
  for (var g = 0u; g < MAX_GROUP; g++) { m[g] = -3.0e38; l[g] = 0.0; }
  for (var i = 0u; i < 32u; i++) { o[i] = 0.0; }
  for (var t0 = start; t0 < end; t0 += TILE) {
    let key = t0 + j;
    let valid = key < end;
    var sc: array<f32, MAX_GROUP>;
    for (var g = 0u; g < MAX_GROUP; g++) { sc[g] = 0.0; }
    if (valid) {
      let kb = base + key * P.kv_dim;
      for (var d = 0u; d < hd; d += 2u) {
        var kv: vec2<f32>;
        if (KV_F16) {
          kv = unpack2x16float(KR[(kb + d) / 2u]);  // kb and d are even: one word holds dims d, d + 1
        } else {
          kv = vec2<f32>(bitcast<f32>(KR[kb + d]), bitcast<f32>(KR[kb + d + 1u]));
        }
        for (var g = 0u; g < group; g++) {
          sc[g] += qg_sh[g * hd + d] * kv.x + qg_sh[g * hd + d + 1u] * kv.y;
        }
      }
    }
    for (var g = 0u; g < group; g++) { rg_sh[g * TILE + j] = select(-3.0e38, sc[g], valid); }
    workgroupBarrier();
    reduce_group(j, group, true);
    var m_new: array<f32, MAX_GROUP>;
    for (var g = 0u; g < group; g++) { m_new[g] = max(m[g], rg_sh[g * TILE]); }
    workgroupBarrier();
    for (var g = 0u; g < group; g++) {
      let p = select(0.0, exp(sc[g] - m_new[g]), valid);
      pg_sh[g * TILE + j] = p;
      rg_sh[g * TILE + j] = p;
    }
    workgroupBarrier();
    reduce_group(j, group, false);
    for (var g = 0u; g < group; g++) {
      let corr = exp(m[g] - m_new[g]);
      l[g] = l[g] * corr + rg_sh[g * TILE];
      m[g] = m_new[g];
      for (var c = 0u; c < 4u; c++) { o[g * 4u + c] *= corr; }
    }
    let nk = min(TILE, end - t0);
    for (var c = 0u; c < 4u; c++) {
      let d = j + c * TILE;
      if (d < hd) {
        for (var kk = 0u; kk < nk; kk++) {
          let v = cache_at(false, base + (t0 + kk) * P.kv_dim + d);
          for (var g = 0u; g < group; g++) { o[g * 4u + c] += pg_sh[g * TILE + kk] * v; }
        }
      }
    }
    workgroupBarrier();
  }
  for (var g = 0u; g < group; g++) {
    let row = (t * P.n_heads + h0 + g) * P.splits + split;
    for (var c = 0u; c < 4u; c++) {
      let d = j + c * TILE;
      if (d < hd) { PO[row * hd + d] = o[g * 4u + c]; }
    }
    if (j == 0u) {
      PML[2u * row] = m[g];
      PML[2u * row + 1u] = l[g];
    }
  }
}

// Grid: x = head, y = token. out = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M) over the token's chunks.
// The merge of one (head h, token t): the splits' partial outputs scaled to their common maximum.
struct MergeStats {
  r0: u32,        // the first partial row
  n_chunks: u32,
  big_m: f32,     // largest partial maximum
  big_l: f32,     // the softmax denominator at big_m
};

fn merge_stats(h: u32, t: u32) -> MergeStats {
  let pos = u32(STEP[P.cap + t]);
  let chunk = split_chunk(pos);
  let n_chunks = (pos + chunk) / chunk;  // ceil((pos + 1) / chunk)
  let r0 = (t * P.n_heads + h) * P.splits;
  var big_m = -3.0e38;
  for (var s = 0u; s < n_chunks; s++) { big_m = max(big_m, PML[2u * (r0 + s)]); }
  var big_l = 0.0;
  for (var s = 0u; s < n_chunks; s++) { big_l += PML[2u * (r0 + s) + 1u] * exp(PML[2u * (r0 + s)] - big_m); }
  return MergeStats(r0, n_chunks, big_m, big_l);
}

fn merged_value(m: MergeStats, d: u32) -> f32 {
  var acc = 0.0;
  for (var s = 0u; s < m.n_chunks; s++) { acc += PO[(m.r0 + s) * P.head_dim + d] * exp(PML[2u * (m.r0 + s)] - m.big_m); }
  return acc / m.big_l;
}

@compute @workgroup_size(64)
fn attention_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let m = merge_stats(wid.x, wid.y);
  for (var d = lid.x; d < P.head_dim; d += TILE) {
    O[wid.y * P.q_cols + wid.x * P.head_dim + d] = merged_value(m, d);
  }
}

// Copies `words` u32 words of keys and values from one offset of this layer's cache to another (prefix
// caching across slots; WebGPU cannot copy a buffer region onto the same buffer).
struct CopyParams {
  words: u32,
  src: u32,
  dst: u32,
  grid_x: u32,
};
@group(0) @binding(10) var<uniform> CP: CopyParams;

@compute @workgroup_size(256)
fn kv_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.x + wid.y * CP.grid_x) * 256u + lid.x;
  if (i < CP.words) {
    KC[CP.dst + i] = KC[CP.src + i];
    VC[CP.dst + i] = VC[CP.src + i];
  }
}
