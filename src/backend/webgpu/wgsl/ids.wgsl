// The built-in inputs of the matrix-vector entry points, in two structs: `Ids`, the workgroup-uniform ones, and
// `Lane`, the invocation's (WGSL's uniformity analysis counts a struct with one non-uniform member as non-uniform,
// and the subgroup variant's barriers depend on Ids). ids_subgroup.wgsl adds the subgroup size; the host
// prepends one of the two with the matching reductions (row_sum*.wgsl, matvec_finish*.wgsl).
struct Ids {
  @builtin(workgroup_id) wid: vec3<u32>,
};
struct Lane {
  @builtin(local_invocation_id) lid: vec3<u32>,
};
