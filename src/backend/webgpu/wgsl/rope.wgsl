// Rotary position embedding (rope_angle.wgsl prepended), in place, one thread per (token, head, frequency). FREQ[i] holds
// base^(-2i/rope_dim) / factor_i, computed once on the host exactly as the CPU reference does. Normal mode
// rotates the pairs (2i, 2i+1), NeoX mode (i, i + rope_dim/2).

struct RopeParams {
  cols: u32,      // row length of X (n_heads * head_dim)
  n: u32,         // tokens
  n_heads: u32,
  head_dim: u32,
  half: u32,      // rope_dim / 2
  neox: u32,
  grid_x: u32,
  cap: u32,
};

@group(0) @binding(0) var<storage, read_write> X: array<f32>;
@group(0) @binding(1) var<storage, read> FREQ: array<f32>;
@group(0) @binding(2) var<storage, read> STEP: array<i32>;  // tokens | positions | ...
@group(0) @binding(3) var<uniform> P: RopeParams;

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let id = (wid.x + wid.y * P.grid_x) * 256u + lid.x;
  let per_token = P.n_heads * P.half;
  if (id >= P.n * per_token) { return; }
  let t = id / per_token;
  let h = (id % per_token) / P.half;
  let i = id % P.half;
  let angle = reduce_angle(f32(STEP[P.cap + t]) * FREQ[i]);
  let c = cos(angle);
  let s = sin(angle);
  let base = t * P.cols + h * P.head_dim;
  let a = base + select(2u * i, i, P.neox != 0u);
  let b = base + select(2u * i + 1u, i + P.half, P.neox != 0u);
  let x0 = X[a];
  let x1 = X[b];
  X[a] = x0 * c - x1 * s;
  X[b] = x0 * s + x1 * c;
}
