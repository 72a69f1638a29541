// The CUDA backend's gemm.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/gemm.cu"
