// Appended to q8.wgsl + norm.wgsl for the int8 pipelines (webgpu_backend.cpp).
// The same for one-token steps whose output feeds int8 products (matvec_int8.wgsl): rows of whole 32-element
// blocks, at most 256 of them (cols <= 8192). A thread keeps one block in registers, and writes the normalized
// block both as f32 and as int8 (q8.wgsl, prepended).
@group(0) @binding(0) var<storage, read_write> X4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> Y4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> G4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> OUT4: array<vec4<f32>>;
var<workgroup> red32: array<f32, 32>;

fn normalize_block_q8(t: u32, lid: u32, v: array<vec4<f32>, 8>, ss: f32) {
  red[lid] = ss;
  workgroupBarrier();
  if (lid < 32u) {
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) { s += red[8u * lid + i]; }
    red32[lid] = s;
  }
  workgroupBarrier();
  var total = 0.0;
  for (var i = 0u; i < 32u; i++) { total += red32[i]; }
  let scale = 1.0 / sqrt(total / f32(P.cols) + P.eps);
  let nb = P.cols / 32u;
  if (lid < nb) {
    var o: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) {
      o[i] = v[i] * scale * G4[8u * lid + i];
      OUT4[(t * nb + lid) * 8u + i] = o[i];
    }
    store_q8_block(t * nb + lid, o);
  }
}

@compute @workgroup_size(256)
fn rmsnorm_q8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = wid.x;
  let nb = P.cols / 32u;
  var v: array<vec4<f32>, 8>;
  var ss = 0.0;
  if (lid.x < nb) {
    for (var i = 0u; i < 8u; i++) {
      v[i] = X4[(t * nb + lid.x) * 8u + i];
      ss += dot(v[i], v[i]);
    }
  }
  normalize_block_q8(t, lid.x, v, ss);
}

@compute @workgroup_size(256)
fn add_rmsnorm_q8(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = wid.x;
  let nb = P.cols / 32u;
  var v: array<vec4<f32>, 8>;
  var ss = 0.0;
  if (lid.x < nb) {
    for (var i = 0u; i < 8u; i++) {
      let j = (t * nb + lid.x) * 8u + i;
      v[i] = X4[j] + Y4[j];
      X4[j] = v[i];
      ss += dot(v[i], v[i]);
    }
  }
  normalize_block_q8(t, lid.x, v, ss);
}
