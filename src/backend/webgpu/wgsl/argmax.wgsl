// For each logits row, the id of its largest value (ties: the lowest id; NaN never wins), one workgroup per row.

struct ArgmaxParams {
  cols: u32,
  rows: u32,
};

@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read_write> IDS: array<i32>;
@group(0) @binding(2) var<uniform> P: ArgmaxParams;

const WG: u32 = 256u;
var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

@compute @workgroup_size(256)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = wid.x;
  var bv = 0.0;
  var bi = 0xffffffffu;  // none yet: the first non-NaN value is taken, -inf included (as the host's argmax)
  for (var c = lid.x; c < P.cols; c += WG) {
    let v = L[r * P.cols + c];
    if (v == v && (bi == 0xffffffffu || v > bv)) { bv = v; bi = c; }
  }
  best_v[lid.x] = bv;
  best_i[lid.x] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid.x < s) {
      let ov = best_v[lid.x + s];
      let oi = best_i[lid.x + s];
      if (oi != 0xffffffffu && (best_i[lid.x] == 0xffffffffu || ov > best_v[lid.x] ||
                                (ov == best_v[lid.x] && oi < best_i[lid.x]))) {
        best_v[lid.x] = ov;
        best_i[lid.x] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid.x == 0u) { IDS[r] = select(i32(best_i[0]), 0, best_i[0] == 0xffffffffu); }
}
