// Small per-element ops: SwiGLU, residual add, bias add, gathering the rows that want logits.
// One thread per element; the grid is (x, y) with x * y * 256 >= element count (x at most 65535).

struct EwParams {
  cols: u32,      // elements per row
  n: u32,         // rows
  grid_x: u32,    // workgroups along x
  cap: u32,       // capacity of each array in the step buffer
};

@group(0) @binding(0) var<storage, read_write> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> P: EwParams;
@group(0) @binding(4) var<storage, read> STEP: array<i32>;  // tokens | positions | slots | logit rows

fn element(wid: vec3<u32>, lid: vec3<u32>) -> u32 { return (wid.x + wid.y * P.grid_x) * 256u + lid.x; }

fn silu_mul(g: f32, u: f32) -> f32 { return g / (1.0 + exp(-g)) * u; }

// C = silu(A) * B
@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = element(wid, lid);
  if (i < P.cols * P.n) { C[i] = silu_mul(A[i], B[i]); }
}

// A = silu(A) * B
@compute @workgroup_size(256)
fn swiglu_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = element(wid, lid);
  if (i < P.cols * P.n) { A[i] = silu_mul(A[i], B[i]); }
}

// A += B
@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = element(wid, lid);
  if (i < P.cols * P.n) { A[i] += B[i]; }
}

// A[t, :] += B (one bias row for every token)
@compute @workgroup_size(256)
fn add_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = element(wid, lid);
  if (i < P.cols * P.n) { A[i] += B[i % P.cols]; }
}

// C[r, :] = B[logit_rows[r], :]
@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = element(wid, lid);
  if (i < P.cols * P.n) {
    let r = i / P.cols;
    C[i] = B[u32(STEP[3u * P.cap + r]) * P.cols + i % P.cols];
  }
}
