// Fused loss operators: schemas, CPU kernels and Meta (shape-only) kernels. The CUDA kernels
// live in cuda/fused_losses.cu; the contract is in fused_losses.h.
//
//   channel_stats(xs, with_m2)          per-(layer, b, c) mean over S and m2 = sum (x - mean)^2
//   channel_stats_backward(xs, a, b?)   grads[l][b,c,s] = a[i] + b[i] * xs[l][b,c,s]
//   frame_l1(z)                         D[b,i,j] = mean_{p,q} |z[b,i,p,q] - z[b,j,p,q]|
//   frame_l1_backward(z, W)             grad[b,t] = mean-scaled sum_t' W[b,t,t'] sign(z[b,t] - z[b,t'])
//
// The CPU kernels aim at correctness with reasonable speed: inputs are read through their strides
// (no copies), values are converted to float, statistics are accumulated in double, and work is
// split into fixed items whose results are combined in a fixed order (results do not depend on
// the thread count).
#include "fused_losses.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>

namespace leaps {
namespace {

constexpr int64_t kGrainElems = 1 << 15;  // elements per parallel task, roughly
constexpr int64_t kChannelBlock = 64;     // channels of one channel_stats work item
constexpr int64_t kFrameChunk = 1024;     // features of one frame_l1 work item

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// ----------------------------------------------------------------------------------------------
// channel_stats

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

// ----------------------------------------------------------------------------------------------
// frame_l1

struct FrameGeom {
  int64_t B, T, Q, F;
  int64_t sb, st, sp, sq;
};

FrameGeom frame_geom(const at::Tensor& z) {
  return {z.size(0), z.size(1), z.size(3), z.size(2) * z.size(3),
          z.stride(0), z.stride(1), z.stride(2), z.stride(3)};
}

// Calls fn(k, offset) for the features f0 + k, k < n, with offset = p * sp + q * sq.
template <typename Fn>
inline void walk_features(const FrameGeom& g, int64_t f0, int64_t n, int64_t sp, int64_t sq, Fn&& fn) {
  int64_t p = f0 / g.Q;
  int64_t q = f0 % g.Q;
  for (int64_t k = 0; k < n; ++k) {
    fn(k, p * sp + q * sq);
    if (++q == g.Q) {
      q = 0;
      ++p;
    }
  }
}

// Runs fn(item, b, f0, n, tile) in parallel over the items (b, chunk of n features from f0);
// tile holds the chunk of all T frames as float, frame t at tile[t * n].
template <typename scalar_t, typename Fn>
void for_each_frame_chunk(const at::Tensor& z, const FrameGeom& g, Fn&& fn) {
  const int64_t nch = ceil_div(g.F, kFrameChunk);
  const scalar_t* zp = z.const_data_ptr<scalar_t>();
  const int64_t grain = std::max<int64_t>(1, kGrainElems / (g.T * kFrameChunk));
  at::parallel_for(0, g.B * nch, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> tile(g.T * kFrameChunk);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / nch;
      const int64_t f0 = (item % nch) * kFrameChunk;
      const int64_t n = std::min(kFrameChunk, g.F - f0);
      for (int64_t t = 0; t < g.T; ++t) {
        const scalar_t* src = zp + b * g.sb + t * g.st;
        float* dst = tile.data() + t * n;
        walk_features(g, f0, n, g.sp, g.sq, [&](int64_t k, int64_t o) { dst[k] = static_cast<float>(src[o]); });
      }
      fn(item, b, f0, n, tile.data());
    }
  });
}

at::Tensor frame_l1_cpu(const at::Tensor& z) {
  check_frames(z, "frame_l1");
  at::Tensor D = frame_l1_output(z);
  if (D.numel() == 0) return D;
  const FrameGeom g = frame_geom(z);
  const int64_t T = g.T;
  const int64_t npairs = T * (T - 1) / 2;
  const int64_t nch = ceil_div(g.F, kFrameChunk);
  // Per-(b, chunk) partial sums, combined below in chunk order: deterministic.
  std::vector<double> part(g.B * nch * npairs);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "frame_l1_cpu", [&] {
    for_each_frame_chunk<scalar_t>(z, g, [&](int64_t item, int64_t, int64_t, int64_t n, const float* tile) {
      for (int64_t i = 0; i < T; ++i) {
        for (int64_t j = i + 1; j < T; ++j) {
          const float* a = tile + i * n;
          const float* c = tile + j * n;
          float s = 0.f;
          for (int64_t k = 0; k < n; ++k) s += std::fabs(a[k] - c[k]);
          part[item * npairs + pair_index(i, j, T)] = s;
        }
      }
    });
  });
  float* d = D.data_ptr<float>();
  for (int64_t b = 0; b < g.B; ++b) {
    for (int64_t i = 0; i < T; ++i) {
      d[(b * T + i) * T + i] = 0.f;
      for (int64_t j = i + 1; j < T; ++j) {
        double s = 0.0;
        for (int64_t c = 0; c < nch; ++c) s += part[(b * nch + c) * npairs + pair_index(i, j, T)];
        const float v = static_cast<float>(s / static_cast<double>(g.F));
        d[(b * T + i) * T + j] = v;
        d[(b * T + j) * T + i] = v;
      }
    }
  }
  return D;
}

at::Tensor frame_l1_backward_cpu(const at::Tensor& z, const at::Tensor& W) {
  const at::Tensor w = frame_weights(z, W);
  at::Tensor grad = at::empty_like(z);
  if (grad.numel() == 0) return grad;
  const FrameGeom g = frame_geom(z);
  const int64_t T = g.T;
  const float inv_f = 1.0f / static_cast<float>(g.F);
  const float* wp = w.const_data_ptr<float>();
  const int64_t gb = grad.stride(0), gt = grad.stride(1), gsp = grad.stride(2), gsq = grad.stride(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "frame_l1_backward_cpu", [&] {
    scalar_t* gp = grad.data_ptr<scalar_t>();
    for_each_frame_chunk<scalar_t>(z, g, [&](int64_t, int64_t b, int64_t f0, int64_t n, const float* tile) {
      const float* wb = wp + b * T * T;
      for (int64_t t = 0; t < T; ++t) {
        scalar_t* dst = gp + b * gb + t * gt;
        walk_features(g, f0, n, gsp, gsq, [&](int64_t k, int64_t o) {
          const float v = tile[t * n + k];
          float acc = 0.f;
          for (int64_t u = 0; u < T; ++u) {
            const float d = v - tile[u * n + k];
            acc += wb[t * T + u] * static_cast<float>((d > 0.f) - (d < 0.f));
          }
          dst[o] = static_cast<scalar_t>(acc * inv_f);
        });
      }
    });
  });
  return grad;
}

at::Tensor frame_l1_meta(const at::Tensor& z) {
  check_frames(z, "frame_l1");
  return frame_l1_output(z);
}

at::Tensor frame_l1_backward_meta(const at::Tensor& z, const at::Tensor& W) {
  frame_weights(z, W);
  return at::empty_like(z);
}

}  // namespace

// channel_moments.cpp owns TORCH_LIBRARY(leaps, ...); a namespace has only one, so add to it.
TORCH_LIBRARY_FRAGMENT(leaps, m) {
  m.def("channel_stats(Tensor[] xs, bool with_m2) -> (Tensor mean, Tensor m2)");
  m.def("channel_stats_backward(Tensor[] xs, Tensor alpha, Tensor? beta) -> Tensor[]");
  m.def("frame_l1(Tensor z) -> Tensor D");
  m.def("frame_l1_backward(Tensor z, Tensor W) -> Tensor grad");
}

TORCH_LIBRARY_IMPL(leaps, CPU, m) {
  m.impl("channel_stats", &channel_stats_cpu);
  m.impl("channel_stats_backward", &channel_stats_backward_cpu);
  m.impl("frame_l1", &frame_l1_cpu);
  m.impl("frame_l1_backward", &frame_l1_backward_cpu);
}

TORCH_LIBRARY_IMPL(leaps, Meta, m) {
  m.impl("channel_stats", &channel_stats_meta);
  m.impl("channel_stats_backward", &channel_stats_backward_meta);
  m.impl("frame_l1", &frame_l1_meta);
  m.impl("frame_l1_backward", &frame_l1_backward_meta);
}

}  // namespace leaps
