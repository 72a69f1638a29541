// Chained decode steps (Backend::end_step_chain): after step `step` of a chain, each row's chosen id (IDS, one a
// row, every token a row) is kept in CHAIN and becomes that row's token of the next step, one position further.
// STEP is the step buffer: tokens | positions | slots | logit rows, `cap` words each. A row the device could not
// draw (-1) feeds token 0: the host drops that row's later ids.

struct ChainParams {
  n: u32,
  step: u32,
  cap: u32,
};

@group(0) @binding(0) var<storage, read_write> STEP: array<i32>;
@group(0) @binding(1) var<storage, read> IDS: array<i32>;
@group(0) @binding(2) var<storage, read_write> CHAIN: array<i32>;
@group(0) @binding(3) var<uniform> P: ChainParams;

@compute @workgroup_size(64)
fn chain_next(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= P.n) { return; }
  let id = IDS[i];
  CHAIN[P.step * P.n + i] = id;
  STEP[i] = max(id, 0);
  STEP[P.cap + i] = STEP[P.cap + i] + 1;
}
