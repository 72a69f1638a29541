// Measures how fast this machine's CPU threads can read DRAM (the decode roofline's denominator).
#pragma once

namespace vireo::cpu {

// Bytes per second read by `threads` threads streaming a buffer of `buffer_bytes` (best of a few passes).
// Decode streams the weights once per token, so the fair ceiling is a buffer of the weights' size, in huge
// pages like the repacked weights: on hosts with very large last-level caches a small model's weights partly
// stay cached, and the figure then includes that.
double measure_read_bandwidth(int threads, double buffer_bytes = 1024.0 * 1024 * 1024);

}  // namespace vireo::cpu
