// RMSNorm, one workgroup per token: out = x / sqrt(mean(x^2) + eps) * g. add_rmsnorm first adds y into the
// residual stream x (x += y), then normalizes it.

struct NormParams {
  cols: u32,
  n: u32,
  eps: f32,
};

@group(0) @binding(0) var<storage, read_write> X: array<f32>;
@group(0) @binding(1) var<storage, read> Y: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<f32>;
@group(0) @binding(4) var<uniform> P: NormParams;

const WG: u32 = 256u;
var<workgroup> red: array<f32, 256>;

fn normalize_row(t: u32, lid: u32, partial_ss: f32) {
  red[lid] = partial_ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let scale = 1.0 / sqrt(red[0] / f32(P.cols) + P.eps);
  for (var i = lid; i < P.cols; i += WG) { OUT[t * P.cols + i] = X[t * P.cols + i] * scale * G[i]; }
}

@compute @workgroup_size(256)
fn rmsnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = wid.x;
  var ss = 0.0;
  for (var i = lid.x; i < P.cols; i += WG) { let v = X[t * P.cols + i]; ss += v * v; }
  normalize_row(t, lid.x, ss);
}

@compute @workgroup_size(256)
fn add_rmsnorm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = wid.x;
  var ss = 0.0;
  for (var i = lid.x; i < P.cols; i += WG) {
    let v = X[t * P.cols + i] + Y[t * P.cols + i];
    X[t * P.cols + i] = v;
    ss += v * v;
  }
  normalize_row(t, lid.x, ss);
}
