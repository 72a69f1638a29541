// The CUDA backend's attention_decode.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/attention_decode.cu"
