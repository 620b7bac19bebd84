// Shared declarations for the fused loss operators (CPU kernels in fused_losses.cpp, CUDA
// kernels in cuda/fused_losses.cu): input checks and output allocation, so that the CPU, Meta
// and CUDA implementations agree on the contract.
//
//   channel_stats(Tensor[] xs, bool with_m2) -> (Tensor mean, Tensor m2)
//   channel_stats_backward(Tensor[] xs, Tensor alpha, Tensor? beta) -> Tensor[]
//   frame_l1(Tensor z) -> Tensor D
//   frame_l1_backward(Tensor z, Tensor W) -> Tensor grad
//
// Rows of the statistics are numbered layer-major, then b, then c: row off_l + b * C_l + c with
// off_l = sum_{k<l} B_k * C_k (xs[l] is B_l x C_l x S_l).
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <optional>
#include <tuple>
#include <vector>

namespace leaps {

inline void check_float_input(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.defined(), op, ": input tensor is undefined");
  const auto st = t.scalar_type();
  TORCH_CHECK(
      st == at::kFloat || st == at::kHalf || st == at::kBFloat16 || st == at::kDouble, op,
      ": expected float32, float16, bfloat16 or float64 input, got ", st);
}

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
