// Contract of the channel_stats operators, shared by their CPU and Meta kernels
// (channel_stats.cpp) and their CUDA kernels (cuda/channel_stats.cu): input checks and output
// allocation, so that every implementation agrees on shapes, dtypes and errors.
//
//   channel_stats(Tensor[] xs, bool with_m2) -> (Tensor mean, Tensor m2)
//   channel_stats_backward(Tensor[] xs, Tensor alpha, Tensor? beta) -> Tensor[]
//
// Rows of the statistics are numbered layer-major, then b, then c: row off_l + b * C_l + c with
// off_l = sum_{k<l} B_k * C_k (xs[l] is B_l x C_l x S_l).
#pragma once

#include "common.h"

#include <optional>
#include <tuple>
#include <vector>

namespace leaps {

// Checks the layer list and returns the number of rows N = sum_l B_l * C_l.
inline int64_t stats_rows(at::TensorList xs, const char* op) {
  TORCH_CHECK(!xs.empty(), op, ": expected at least one tensor");
  int64_t n = 0;
  for (const auto& x : xs) {
    check_float_input(x, op);
    TORCH_CHECK(x.dim() == 3, op, ": expected B x C x S tensors, got ", x.dim(), " dims");
    TORCH_CHECK(x.device() == xs[0].device(), op, ": all tensors must be on one device");
    TORCH_CHECK(x.size(2) > 0 || x.size(0) * x.size(1) == 0, op, ": S must be at least 1");
    n += x.size(0) * x.size(1);
  }
  return n;
}

inline std::tuple<at::Tensor, at::Tensor> stats_outputs(at::TensorList xs, int64_t n, bool with_m2) {
  const auto opts = xs[0].options().dtype(at::kFloat);
  return std::make_tuple(at::empty({n}, opts), at::empty({with_m2 ? n : 0}, opts));
}

// alpha / beta: float32, 1-D of length n, on the device of the layers. Returns them
// contiguous (they are small: one value per row).
inline std::tuple<at::Tensor, std::optional<at::Tensor>> stats_coeffs(
    at::TensorList xs, int64_t n, const at::Tensor& alpha, const std::optional<at::Tensor>& beta) {
  const char* op = "channel_stats_backward";
  auto check = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.scalar_type() == at::kFloat, op, ": ", name, " must be float32");
    TORCH_CHECK(t.dim() == 1 && t.size(0) == n, op, ": ", name, " must be 1-D of length ", n,
                ", got ", t.sizes());
    TORCH_CHECK(t.device() == xs[0].device(), op, ": ", name, " must be on the layers' device");
  };
  check(alpha, "alpha");
  std::optional<at::Tensor> b;
  if (beta.has_value() && beta->defined()) {
    check(*beta, "beta");
    b = beta->contiguous();
  }
  return std::make_tuple(alpha.contiguous(), b);
}

// Gradients keep the dtype and (for dense inputs) the strides of the layers; empty_like gives
// non-dense inputs a contiguous layout.
inline std::vector<at::Tensor> empty_like_all(at::TensorList xs) {
  std::vector<at::Tensor> out;
  out.reserve(xs.size());
  for (const auto& x : xs) out.push_back(at::empty_like(x));
  return out;
}

}  // namespace leaps
