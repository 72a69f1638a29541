// The angle reduction of RoPE, prepended to rope.wgsl and rope_kv.wgsl so that both rotate bit for bit alike.
// cos/sin of a large angle: reduce to [-pi, pi] first (two-part 2*pi, the first part exact in few bits), since
// GPU sin/cos are only accurate near zero.
fn reduce_angle(a: f32) -> f32 {
  let k = round(a * 0.15915494309189535);
  return (a - k * 6.28125) - k * 0.0019353071795864769;
}
