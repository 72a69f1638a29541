// The CUDA backend's cuda_backend.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/cuda_backend.cu"
