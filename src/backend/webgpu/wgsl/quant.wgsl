// Weight formats as the WebGPU kernels read them: every row is a whole number of u32 words, and
// dequant32(row_word, sb) writes sub-block `sb` (32 consecutive elements) of the row starting at word
// `row_word` into w32. The host repacks GGUF blocks whose size is not a multiple of 4 bytes (see
// webgpu_backend.cpp, repack_for_webgpu); the element order inside a block is GGUF's (src/quant/quant_ref.cpp).
// WEIGHT_TYPE is prepended by the host: 0 F32, 1 F16, 2 Q8_0, 3 Q4_0, 4 Q4_K, 5 Q6_K.

var<private> w32: array<f32, 32>;

fn wbyte(word: u32, k: u32) -> u32 { return (word >> (8u * k)) & 255u; }
fn sbyte(word: u32, k: u32) -> f32 { return f32(bitcast<i32>(word << (24u - 8u * k)) >> 24u); }

// F32: 32 words per sub-block.
fn dequant32_f32(row_word: u32, sb: u32) {
  let b = row_word + sb * 32u;
  for (var i = 0u; i < 32u; i++) { w32[i] = bitcast<f32>(W[b + i]); }
}

// F16: 16 words (pairs of halves) per sub-block.
fn dequant32_f16(row_word: u32, sb: u32) {
  let b = row_word + sb * 16u;
  for (var i = 0u; i < 16u; i++) {
    let h = unpack2x16float(W[b + i]);
    w32[2u * i] = h.x;
    w32[2u * i + 1u] = h.y;
  }
}

// Q8_0, repacked to 9 words: d (f16, low half of word 0), then the 32 int8 values. x = q * d.
fn dequant32_q8_0(row_word: u32, sb: u32) {
  let b = row_word + sb * 9u;
  let d = unpack2x16float(W[b]).x;
  for (var i = 0u; i < 8u; i++) {
    let w = W[b + 1u + i];
    for (var k = 0u; k < 4u; k++) { w32[4u * i + k] = sbyte(w, k) * d; }
  }
}

// Q4_0, repacked to 5 words: d, then 16 bytes; element e < 16 is the low nibble of byte e, e >= 16 the high
// nibble of byte e - 16. x = (q - 8) * d.
fn dequant32_q4_0(row_word: u32, sb: u32) {
  let b = row_word + sb * 5u;
  let d = unpack2x16float(W[b]).x;
  for (var i = 0u; i < 4u; i++) {
    let w = W[b + 1u + i];
    for (var k = 0u; k < 4u; k++) {
      let q = wbyte(w, k);
      w32[4u * i + k] = (f32(q & 15u) - 8.0) * d;
      w32[16u + 4u * i + k] = (f32(q >> 4u) - 8.0) * d;
    }
  }
}

// Q4_K, GGUF layout (36 words per 256 elements): d|dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles.
// Sub-block j: pair c = j / 2 uses bytes 32c..32c+31, the low nibbles for even j, the high ones for odd j.
fn dequant32_q4_k(row_word: u32, sb: u32) {
  let b = row_word + (sb / 8u) * 36u;
  let j = sb % 8u;
  let dm = unpack2x16float(W[b]);
  var sc: u32;
  var m: u32;
  if (j < 4u) {
    sc = wbyte(W[b + 1u + j / 4u], j % 4u) & 63u;
    m = wbyte(W[b + 1u + (j + 4u) / 4u], (j + 4u) % 4u) & 63u;
  } else {
    let s_j4 = wbyte(W[b + 1u + (j + 4u) / 4u], (j + 4u) % 4u);
    let s_jm4 = wbyte(W[b + 1u + (j - 4u) / 4u], (j - 4u) % 4u);
    let s_j = wbyte(W[b + 1u + j / 4u], j % 4u);
    sc = (s_j4 & 15u) | ((s_jm4 >> 6u) << 4u);
    m = (s_j4 >> 4u) | ((s_j >> 6u) << 4u);
  }
  let d = dm.x * f32(sc);
  let mm = dm.y * f32(m);
  let q0 = b + 4u + (j / 2u) * 8u;
  let shift = (j % 2u) * 4u;
  for (var i = 0u; i < 8u; i++) {
    let w = W[q0 + i] >> shift;
    for (var k = 0u; k < 4u; k++) { w32[4u * i + k] = d * f32((w >> (8u * k)) & 15u) - mm; }
  }
}

// Q6_K, GGUF layout padded to 56 words (14 vec4) per 256 elements: ql[128] (words 0-31), qh[64] (32-47), int8
// scales[16] (48-51), d (low half of word 52). Element e = 128n + 32k + l: low 4 bits in ql[64n + 32(k & 1) + l] (low
// nibble for k < 2), high 2 bits in qh[32n + l] at bit 2k; x = d * scales[e / 16] * (q - 32).
fn dequant32_q6_k(row_word: u32, sb: u32) {
  let b = row_word + (sb / 8u) * 56u;
  let s = sb % 8u;
  let n = s / 4u;
  let k = s % 4u;
  let d = unpack2x16float(W[b + 52u]).x;
  let sc_word = W[b + 48u + s / 2u];
  let d0 = d * sbyte(sc_word, (2u * s) % 4u);
  let d1 = d * sbyte(sc_word, (2u * s + 1u) % 4u);
  let ql0 = b + (64u * n + 32u * (k & 1u)) / 4u;
  let qh0 = b + 32u + (32u * n) / 4u;
  let lo_shift = select(0u, 4u, k >= 2u);
  for (var i = 0u; i < 8u; i++) {
    let lw = W[ql0 + i] >> lo_shift;
    let hw = W[qh0 + i] >> (2u * k);
    for (var t = 0u; t < 4u; t++) {
      let q = i32(((lw >> (8u * t)) & 15u) | (((hw >> (8u * t)) & 3u) << 4u)) - 32;
      let l = 4u * i + t;
      w32[l] = select(d0, d1, l >= 16u) * f32(q);
    }
  }
}

fn dequant32(row_word: u32, sb: u32) {
  switch (WEIGHT_TYPE) {
    case 0u: { dequant32_f32(row_word, sb); }
    case 1u: { dequant32_f16(row_word, sb); }
    case 2u: { dequant32_q8_0(row_word, sb); }
    case 3u: { dequant32_q4_0(row_word, sb); }
    case 4u: { dequant32_q4_k(row_word, sb); }
    default: { dequant32_q6_k(row_word, sb); }
  }
}
