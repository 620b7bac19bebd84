// Device helpers shared by the CUDA kernels of the LEAPS operators (cuda/*.cu). Everything is
// internal to each translation unit (an unnamed namespace): the .cu files share no symbols.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace leaps {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;

template <typename T>
__device__ __forceinline__ float to_f(T v) {
  return static_cast<float>(v);
}

inline unsigned int blocks_for(int64_t n, int threads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
}

}  // namespace
}  // namespace leaps
