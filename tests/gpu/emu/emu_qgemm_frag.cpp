// The CUDA backend's qgemm_frag.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/qgemm_frag.cu"
