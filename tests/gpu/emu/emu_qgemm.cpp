// The CUDA backend's qgemm.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/qgemm.cu"
