// Appended to attention.wgsl (which declares the cache, STEP and KvParams) for steps of the Llama layer's shape:
// rope(q), rope(k), kv_store(k, v) in one dispatch, normal-mode rotation (pairs 2i, 2i + 1) only. One thread per
// (token, pair): the q pairs of the rotated part, then every k/v pair; a k pair is rotated (when inside
// rope_dim), written back to K and, with the v pair at the same place, stored into the cache. The angles are
// computed exactly as rope.wgsl computes them (rope_angle.wgsl, prepended to both).

@group(0) @binding(2) var<storage, read_write> KW: array<f32>;
@group(0) @binding(8) var<storage, read_write> QW: array<f32>;
@group(0) @binding(13) var<storage, read> FREQ: array<f32>;

fn rotate_pair(x: ptr<function, vec2<f32>>, pos: i32, i: u32) {
  let angle = reduce_angle(f32(pos) * FREQ[i]);
  let c = cos(angle);
  let s = sin(angle);
  let v = *x;
  *x = vec2<f32>(v.x * c - v.y * s, v.x * s + v.y * c);
}

@compute @workgroup_size(256)
fn rope_kv_store(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let id = (wid.x + wid.y * P.grid_x) * 256u + lid.x;
  let q_pairs = P.n_heads * P.half;  // per token
  let kv_pairs = P.kv_dim / 2u;
  if (id >= P.n * (q_pairs + kv_pairs)) { return; }
  let t = id / (q_pairs + kv_pairs);
  let j = id % (q_pairs + kv_pairs);
  let pos = STEP[P.cap + t];
  let hp = P.head_dim / 2u;  // pairs per head
  if (j < q_pairs) {
    let e = t * P.q_cols + (j / P.half) * P.head_dim + 2u * (j % P.half);
    var x = vec2<f32>(QW[e], QW[e + 1u]);
    rotate_pair(&x, pos, j % P.half);
    QW[e] = x.x;
    QW[e + 1u] = x.y;
    return;
  }
  let p = j - q_pairs;  // pair p of the k/v row: elements 2p, 2p + 1
  let e = t * P.kv_dim + 2u * p;
  var k = vec2<f32>(KW[e], KW[e + 1u]);
  if (p % hp < P.half) {
    rotate_pair(&k, pos, p % hp);
    KW[e] = k.x;
    KW[e + 1u] = k.y;
  }
  store_kv_pair(t, p, k, vec2<f32>(V[e], V[e + 1u]));
}
