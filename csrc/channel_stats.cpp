// channel_stats operators: CPU kernels and Meta (shape-only) kernels. The schemas are defined in
// ops.cpp, the contract is in channel_stats.h, the CUDA kernels are in cuda/channel_stats.cu and
// the autograd formula is in leaps/ops.py (these implementations are autograd-free).
//
//   channel_stats(xs, with_m2)          per-(layer, b, c) mean over S and m2 = sum (x - mean)^2
//   channel_stats_backward(xs, a, b?)   grads[l][b,c,s] = a[i] + b[i] * xs[l][b,c,s]
//
// The CPU kernels aim at correctness with reasonable speed: inputs are read through their strides
// (no copies), values are converted to double for the statistics, and work is split into fixed
// (b, block of channels) items whose results do not depend on the thread count.
#include "channel_stats.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

namespace leaps {
namespace {

constexpr int64_t kGrainElems = 1 << 15;  // elements per parallel task, roughly
constexpr int64_t kChannelBlock = 64;     // channels of one work item

struct LayerGeom {
  int64_t B, C, S;
  int64_t sb, sc, ss;
  bool c_inner;  // channels are closer in memory than samples (channels-last / tokens)
};

LayerGeom layer_geom(const at::Tensor& x) {
  return {x.size(0), x.size(1), x.size(2), x.stride(0), x.stride(1), x.stride(2),
          x.stride(1) < x.stride(2)};
}

// Calls fn(c, s) for c < nc, s < S, walking memory in order: along s for NCDHW-like rows, along c
// for channels-last layouts (where one row is spread over the whole tensor).
template <typename Fn>
inline void for_each_cs(int64_t nc, int64_t S, bool c_inner, Fn&& fn) {
  if (c_inner) {
    for (int64_t s = 0; s < S; ++s)
      for (int64_t c = 0; c < nc; ++c) fn(c, s);
  } else {
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t s = 0; s < S; ++s) fn(c, s);
  }
}

// Runs fn(b, c0, nc) in parallel over the (b, block of channels) items of one layer.
template <typename Fn>
void for_each_block(const LayerGeom& g, Fn&& fn) {
  const int64_t ncb = ceil_div(g.C, kChannelBlock);
  const int64_t grain =
      std::max<int64_t>(1, kGrainElems / std::max<int64_t>(1, std::min(g.C, kChannelBlock) * g.S));
  at::parallel_for(0, g.B * ncb, grain, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / ncb;
      const int64_t c0 = (item % ncb) * kChannelBlock;
      fn(b, c0, std::min(kChannelBlock, g.C - c0));
    }
  });
}

std::tuple<at::Tensor, at::Tensor> channel_stats_cpu(at::TensorList xs, bool with_m2) {
  const int64_t n = stats_rows(xs, "channel_stats");
  auto [mean, m2] = stats_outputs(xs, n, with_m2);
  float* mean_out = mean.data_ptr<float>();
  float* m2_out = with_m2 ? m2.data_ptr<float>() : nullptr;
  int64_t off = 0;
  for (const auto& x : xs) {
    const LayerGeom g = layer_geom(x);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_stats_cpu", [&] {
      const scalar_t* data = x.const_data_ptr<scalar_t>();
      for_each_block(g, [&](int64_t b, int64_t c0, int64_t nc) {
        const scalar_t* base = data + b * g.sb + c0 * g.sc;
        auto value = [&](int64_t c, int64_t s) { return static_cast<double>(base[c * g.sc + s * g.ss]); };
        // Two passes over the block: the mean, then the centred squares (stable for |mean| >> std).
        double mu[kChannelBlock] = {};
        for_each_cs(nc, g.S, g.c_inner, [&](int64_t c, int64_t s) { mu[c] += value(c, s); });
        const int64_t row = off + b * g.C + c0;
        for (int64_t c = 0; c < nc; ++c) {
          mu[c] /= static_cast<double>(g.S);
          mean_out[row + c] = static_cast<float>(mu[c]);
        }
        if (m2_out != nullptr) {
          double dev[kChannelBlock] = {};
          for_each_cs(nc, g.S, g.c_inner, [&](int64_t c, int64_t s) {
            const double d = value(c, s) - mu[c];
            dev[c] += d * d;
          });
          for (int64_t c = 0; c < nc; ++c) m2_out[row + c] = static_cast<float>(dev[c]);
        }
      });
    });
    off += g.B * g.C;
  }
  return std::make_tuple(mean, m2);
}

std::vector<at::Tensor> channel_stats_backward_cpu(
    at::TensorList xs, const at::Tensor& alpha, const std::optional<at::Tensor>& beta) {
  const int64_t n = stats_rows(xs, "channel_stats_backward");
  auto [a, b_opt] = stats_coeffs(xs, n, alpha, beta);
  const float* ap = a.const_data_ptr<float>();
  const float* bp = b_opt ? b_opt->const_data_ptr<float>() : nullptr;
  std::vector<at::Tensor> grads = empty_like_all(xs);
  int64_t off = 0;
  for (size_t l = 0; l < xs.size(); ++l) {
    const at::Tensor& x = xs[l];
    const at::Tensor& out = grads[l];
    const LayerGeom g = layer_geom(x);
    const int64_t ob = out.stride(0), oc = out.stride(1), os = out.stride(2);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "channel_stats_backward_cpu", [&] {
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* gp = out.data_ptr<scalar_t>();
      for_each_block(g, [&](int64_t b, int64_t c0, int64_t nc) {
        const int64_t row = off + b * g.C + c0;
        for_each_cs(nc, g.S, g.c_inner, [&](int64_t c, int64_t s) {
          const int64_t ch = c0 + c;
          float v = ap[row + c];
          if (bp != nullptr) {  // without beta the values of x are never read
            v += bp[row + c] * static_cast<float>(xp[b * g.sb + ch * g.sc + s * g.ss]);
          }
          gp[b * ob + ch * oc + s * os] = static_cast<scalar_t>(v);
        });
      });
    });
    off += g.B * g.C;
  }
  return grads;
}

std::tuple<at::Tensor, at::Tensor> channel_stats_meta(at::TensorList xs, bool with_m2) {
  return stats_outputs(xs, stats_rows(xs, "channel_stats"), with_m2);
}

std::vector<at::Tensor> channel_stats_backward_meta(
    at::TensorList xs, const at::Tensor& alpha, const std::optional<at::Tensor>& beta) {
  stats_coeffs(xs, stats_rows(xs, "channel_stats_backward"), alpha, beta);
  return empty_like_all(xs);
}

}  // namespace

TORCH_LIBRARY_IMPL(leaps, CPU, m) {
  m.impl("channel_stats", &channel_stats_cpu);
  m.impl("channel_stats_backward", &channel_stats_backward_cpu);
}

TORCH_LIBRARY_IMPL(leaps, Meta, m) {
  m.impl("channel_stats", &channel_stats_meta);
  m.impl("channel_stats_backward", &channel_stats_backward_meta);
}

}  // namespace leaps
