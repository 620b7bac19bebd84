// Helpers shared by every LEAPS operator and backend (CPU, Meta and CUDA implementations).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace leaps {

// The fused ops take the floating types the losses use (float64 for tests and references).
inline void check_float_input(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.defined(), op, ": input tensor is undefined");
  const auto st = t.scalar_type();
  TORCH_CHECK(
      st == at::kFloat || st == at::kHalf || st == at::kBFloat16 || st == at::kDouble, op,
      ": expected float32, float16, bfloat16 or float64 input, got ", st);
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace leaps
