// The CUDA backend's attention_prefill.cu compiled for the CPU emulator (see src/backend/cuda/emu/emu_runtime.h).
#include "backend/cuda/attention_prefill.cu"
