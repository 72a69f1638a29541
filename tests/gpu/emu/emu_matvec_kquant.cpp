// The CUDA backend's matvec_kquant.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/matvec_kquant.cu"
