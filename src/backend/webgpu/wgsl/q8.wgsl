// int8 activations for the one-token products of matvec_int8.wgsl, written by whichever kernel produces the
// activation (quantize_x, the q8 variants of the norms and of SwiGLU). Per 32-element block b: XQ_out vec4s
// 2b and 2b + 1 hold q = round(x / s) packed four to a word, s = max|x| / 127; XS_out[b] = (s, s * sum of the
// first 16 q, s * sum of the last 16, s * sum of all 32).

@group(0) @binding(6) var<storage, read_write> XQ_out: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read_write> XS_out: array<vec4<f32>>;

fn store_q8_block(b: u32, v: array<vec4<f32>, 8>) {
  var amax = 0.0;
  for (var i = 0u; i < 8u; i++) {
    let a = abs(v[i]);
    amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
  }
  let s = amax / 127.0;
  let inv = select(0.0, 127.0 / amax, amax > 0.0);
  var words: array<u32, 8>;
  var lo = 0;
  var hi = 0;
  for (var i = 0u; i < 8u; i++) {
    let q = vec4<i32>(round(v[i] * inv));
    words[i] = pack4xI8Clamp(q);
    let sum = q.x + q.y + q.z + q.w;
    if (i < 4u) { lo += sum; } else { hi += sum; }
  }
  XQ_out[2u * b] = vec4<u32>(words[0], words[1], words[2], words[3]);
  XQ_out[2u * b + 1u] = vec4<u32>(words[4], words[5], words[6], words[7]);
  XS_out[b] = vec4<f32>(s, s * f32(lo), s * f32(hi), s * f32(lo + hi));
}
