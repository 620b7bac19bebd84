// Shared declarations for leaps::channel_moments (CPU and CUDA kernels).
//
// channel_moments(x, channel_dim) returns the per-channel mean and biased variance of x over
// every axis except `channel_dim` (BatchNorm batch statistics).
#pragma once

#include <ATen/ATen.h>
#include <ATen/WrapDimUtils.h>

#include <algorithm>
#include <numeric>
#include <tuple>
#include <vector>

namespace leaps {

// A contiguous tensor seen as (outer, channels, inner): element (o, c, i) lives at
// data[(o * channels + c) * inner + i].
struct ChannelMajorView {
  at::Tensor data;  // contiguous
  int64_t outer;
  int64_t channels;
  int64_t inner;
};

// Returns a contiguous tensor holding the elements of x together with the (outer, channels,
// inner) factorisation around the channel axis. The reduced axes may be reordered (the result
// does not depend on their order), so that:
//   * contiguous inputs are used as they are;
//   * permuted / channels-last inputs (dense, non-overlapping) are used through a permuted
//     view without any copy;
//   * only other non-contiguous inputs (e.g. slices with gaps) are copied.
inline ChannelMajorView channel_major_view(const at::Tensor& x, int64_t channel_dim) {
  TORCH_CHECK(x.dim() >= 1, "channel_moments: expected a tensor with at least one dimension");
  const int64_t ndim = x.dim();
  const int64_t dim = at::maybe_wrap_dim(channel_dim, ndim);

  at::Tensor v = x;
  int64_t cpos = dim;
  std::vector<int64_t> sizes(x.sizes().begin(), x.sizes().end());
  if (!x.is_contiguous()) {
    if (x.is_non_overlapping_and_dense()) {
      // Order axes by decreasing stride: for a dense tensor that is its memory order.
      std::vector<int64_t> perm(ndim);
      std::iota(perm.begin(), perm.end(), 0);
      const auto strides = x.strides();
      std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
        return strides[a] > strides[b];
      });
      v = x.permute(perm);
      if (!v.is_contiguous()) {
        v = v.contiguous();
      }
      cpos = std::find(perm.begin(), perm.end(), dim) - perm.begin();
      for (int64_t k = 0; k < ndim; ++k) {
        sizes[k] = x.size(perm[k]);
      }
    } else {
      v = x.contiguous();
    }
  }
  int64_t outer = 1;
  int64_t inner = 1;
  for (int64_t k = 0; k < cpos; ++k) outer *= sizes[k];
  for (int64_t k = cpos + 1; k < ndim; ++k) inner *= sizes[k];
  return {v, outer, sizes[cpos], inner};
}

inline void check_channel_moments_input(const at::Tensor& x) {
  TORCH_CHECK(x.defined(), "channel_moments: input tensor is undefined");
  TORCH_CHECK(
      at::isFloatingType(x.scalar_type()),
      "channel_moments: expected a floating point tensor (float32, float64, float16 or "
      "bfloat16), got ",
      x.scalar_type());
  TORCH_CHECK(x.dim() >= 1, "channel_moments: expected a tensor with at least one dimension");
}

}  // namespace leaps
