// Q4_K's header as a vec4 of words (d and dmin, then 12 bytes of 6-bit scales and mins), read by the decode
// products of matmul.wgsl and matvec_int8.wgsl (the host prepends this file to both).
fn q4k_byte(hdr: vec4<u32>, i: u32) -> u32 {  // scale byte i (0-11) of the header
  let w = select(select(hdr.w, hdr.z, i < 8u), hdr.y, i < 4u);
  return (w >> (8u * (i % 4u))) & 255u;
}

// (scale, min) of sub-block j, as the 6-bit values GGUF packs into 12 bytes.
fn q4k_scale_min(hdr: vec4<u32>, j: u32) -> vec2<f32> {
  if (j < 4u) { return vec2<f32>(f32(q4k_byte(hdr, j) & 63u), f32(q4k_byte(hdr, j + 4u) & 63u)); }
  let a = q4k_byte(hdr, j + 4u);
  return vec2<f32>(f32((a & 15u) | ((q4k_byte(hdr, j - 4u) >> 6u) << 4u)),
                   f32((a >> 4u) | ((q4k_byte(hdr, j) >> 6u) << 4u)));
}
