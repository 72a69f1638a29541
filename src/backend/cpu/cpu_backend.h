// The CPU backend: computes each op as it is called, using the pool's threads.
// It is also the readable reference the GPU backends are tested against.
#pragma once
#include <memory>

#include "runtime/backend.h"

namespace vireo {

std::unique_ptr<Backend> make_cpu_backend(int n_threads);

}  // namespace vireo
