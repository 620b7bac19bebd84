// Contract of the frame_l1 operators, shared by their CPU and Meta kernels (frame_l1.cpp) and
// their CUDA kernels (cuda/frame_l1.cu): input checks and output allocation.
//
//   frame_l1(Tensor z) -> Tensor D                   z: B x T x P x Q, D: float32 B x T x T
//   frame_l1_backward(Tensor z, Tensor W) -> Tensor grad
#pragma once

#include "common.h"

#include <c10/macros/Macros.h>

namespace leaps {

inline void check_frames(const at::Tensor& z, const char* op) {
  check_float_input(z, op);
  TORCH_CHECK(z.dim() == 4, op, ": expected a B x T x P x Q tensor, got ", z.dim(), " dims");
  TORCH_CHECK(z.size(2) * z.size(3) > 0 || z.size(0) * z.size(1) == 0, op,
              ": P * Q must be at least 1");
}

// W: float32 B x T x T on z's device; returned contiguous (it is small).
inline at::Tensor frame_weights(const at::Tensor& z, const at::Tensor& W) {
  const char* op = "frame_l1_backward";
  check_frames(z, op);
  TORCH_CHECK(W.scalar_type() == at::kFloat, op, ": W must be float32");
  TORCH_CHECK(W.dim() == 3 && W.size(0) == z.size(0) && W.size(1) == z.size(1) &&
                  W.size(2) == z.size(1),
              op, ": W must be B x T x T = ", z.size(0), " x ", z.size(1), " x ", z.size(1),
              ", got ", W.sizes());
  TORCH_CHECK(W.device() == z.device(), op, ": W must be on z's device");
  return W.contiguous();
}

inline at::Tensor frame_l1_output(const at::Tensor& z) {
  return at::empty({z.size(0), z.size(1), z.size(1)}, z.options().dtype(at::kFloat));
}

// Index of the pair (i, j), i < j, of T frames in row-major order of the upper triangle.
C10_HOST_DEVICE inline int64_t pair_index(int64_t i, int64_t j, int64_t T) {
  return i * (2 * T - i - 1) / 2 + (j - i - 1);
}

}  // namespace leaps
