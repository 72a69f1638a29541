// ids.wgsl with the subgroup size (uniform in a compute shader), for the subgroup reductions.
struct Ids {
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(subgroup_size) sg: u32,
};
struct Lane {
  @builtin(local_invocation_id) lid: vec3<u32>,
};
