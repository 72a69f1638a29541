// Measures how fast this machine's CPU threads can read DRAM (the decode roofline's denominator).
#pragma once

namespace vireo::cpu {

// Bytes per second read by `threads` threads streaming a buffer far larger than the caches (best of a few passes).
double measure_read_bandwidth(int threads, double buffer_mib = 1024);

}  // namespace vireo::cpu
