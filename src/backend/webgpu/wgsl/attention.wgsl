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

// One thread per (token, pair of elements): K/V rows of the step go to their slot and position.
@compute @workgroup_size(256)
fn kv_store(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let id = (wid.x + wid.y * P.grid_x) * 256u + lid.x;
  let half = P.kv_dim / 2u;
  if (id >= P.n * half) { return; }
  let t = id / half;
  let i = id % half;
  let pos = u32(STEP[P.cap + t]);
  let slot = u32(STEP[2u * P.cap + t]);
  let row = (slot * P.n_ctx + pos) * P.kv_dim;
  let src = t * P.kv_dim + 2u * i;
  if (KV_F16) {
    KC[row / 2u + i] = pack2x16float(vec2<f32>(K[src], K[src + 1u]));
    VC[row / 2u + i] = pack2x16float(vec2<f32>(V[src], V[src + 1u]));
  } else {
    KC[row + 2u * i] = bitcast<u32>(K[src]);
    KC[row + 2u * i + 1u] = bitcast<u32>(K[src + 1u]);
    VC[row + 2u * i] = bitcast<u32>(V[src]);
    VC[row + 2u * i + 1u] = bitcast<u32>(V[src + 1u]);
  }
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
var<workgroup> red: array<f32, 64>;
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
    red[j] = s;
    workgroupBarrier();
    for (var st = TILE / 2u; st > 0u; st >>= 1u) {
      if (j < st) { red[j] = max(red[j], red[j + st]); }
      workgroupBarrier();
    }
    let m_new = max(m, red[0]);
    workgroupBarrier();
    let p = select(0.0, exp(s - m_new), key <= pos);
    p_sh[j] = p;
    red[j] = p;
    workgroupBarrier();
    for (var st = TILE / 2u; st > 0u; st >>= 1u) {
      if (j < st) { red[j] += red[j + st]; }
      workgroupBarrier();
    }
    let corr = exp(m - m_new);
    l = l * corr + red[0];
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
