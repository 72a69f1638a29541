// The CUDA backend's matvec_float.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/matvec_float.cu"
