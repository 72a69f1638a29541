// Appended to q8.wgsl + elementwise.wgsl for the int8 pipelines (webgpu_backend.cpp).
// SwiGLU for one-token steps whose output feeds int8 products (matvec_int8.wgsl): a thread per 32-element block
// writes it as f32 and as int8 (q8.wgsl, prepended). Grid: (blocks + 63) / 64 workgroups along x.
@group(0) @binding(0) var<storage, read_write> A4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> B4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> C4: array<vec4<f32>>;

fn silu_mul4(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> { return g / (1.0 + exp(-g)) * u; }

fn swiglu_block(b: u32) -> array<vec4<f32>, 8> {
  var o: array<vec4<f32>, 8>;
  for (var i = 0u; i < 8u; i++) { o[i] = silu_mul4(A4[8u * b + i], B4[8u * b + i]); }
  return o;
}

@compute @workgroup_size(64)
fn swiglu_q8(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = gid.x;
  if (b >= P.cols * P.n / 32u) { return; }
  let o = swiglu_block(b);
  for (var i = 0u; i < 8u; i++) { C4[8u * b + i] = o[i]; }
  store_q8_block(b, o);
}

@compute @workgroup_size(64)
fn swiglu_inplace_q8(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = gid.x;
  if (b >= P.cols * P.n / 32u) { return; }
  let o = swiglu_block(b);
  for (var i = 0u; i < 8u; i++) { A4[8u * b + i] = o[i]; }
  store_q8_block(b, o);
}
