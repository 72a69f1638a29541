// The CUDA backend's matvec_q32.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/matvec_q32.cu"
