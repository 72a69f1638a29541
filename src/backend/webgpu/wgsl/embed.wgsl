// out[t, :] = table[token[t], :]: the embedding lookup, one thread per 32-element sub-block of a row. A table
// split into row chunks is one dispatch per chunk; each writes the tokens whose row it holds.

struct EmbedParams {
  k: u32,          // row length (elements)
  rows: u32,       // rows of this chunk of the table
  n: u32,          // tokens in the step
  row_words: u32,
  row0: u32,       // first table row of this chunk
};

@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> STEP: array<i32>;  // the step's token ids first
@group(0) @binding(2) var<storage, read_write> OUT: array<f32>;
@group(0) @binding(3) var<uniform> P: EmbedParams;

@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.y;
  let sb = gid.x;
  if (t >= P.n || sb >= (P.k + 31u) / 32u) { return; }
  let tok = u32(STEP[t]);
  if (tok < P.row0 || tok >= P.row0 + P.rows) { return; }
  dequant32((tok - P.row0) * P.row_words, sb);
  for (var i = 0u; i < min(32u, P.k - sb * 32u); i++) { OUT[t * P.k + sb * 32u + i] = w32[i]; }
}
