// The CUDA backend's elementwise.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/elementwise.cu"
