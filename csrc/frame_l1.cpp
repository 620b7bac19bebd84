// frame_l1 operators: CPU kernels and Meta (shape-only) kernels. The schemas are defined in
// ops.cpp, the contract is in frame_l1.h, the CUDA kernels are in cuda/frame_l1.cu and the
// autograd formula is in leaps/ops.py (these implementations are autograd-free).
//
//   frame_l1(z)                         D[b,i,j] = mean_{p,q} |z[b,i,p,q] - z[b,j,p,q]|
//   frame_l1_backward(z, W)             grad[b,t] = mean-scaled sum_t' W[b,t,t'] sign(z[b,t] - z[b,t'])
//
// The CPU kernels read z through its strides (no copies), convert each chunk of features of all
// T frames to float, and combine the per-(b, chunk) partial sums in chunk order, in double, so
// results do not depend on the thread count.
#include "frame_l1.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace leaps {
namespace {

constexpr int64_t kGrainElems = 1 << 15;  // elements per parallel task, roughly
constexpr int64_t kFrameChunk = 1024;     // features of one work item

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

TORCH_LIBRARY_IMPL(leaps, CPU, m) {
  m.impl("frame_l1", &frame_l1_cpu);
  m.impl("frame_l1_backward", &frame_l1_backward_cpu);
}

TORCH_LIBRARY_IMPL(leaps, Meta, m) {
  m.impl("frame_l1", &frame_l1_meta);
  m.impl("frame_l1_backward", &frame_l1_backward_meta);
}

}  // namespace leaps
