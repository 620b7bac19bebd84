// CUDA kernels of the frame_l1 operators (contract in ../frame_l1.h, CPU reference in
// ../frame_l1.cpp, schemas in ../ops.cpp). Inputs are read through their strides (no copies);
// all accumulation is in float; results are deterministic (no float atomics, fixed orders).
//
// frame_l1 / frame_l1_backward: one block per (b, chunk of features) loads the chunk of all T
// frames into shared memory. Forward: one warp per frame pair, per-chunk partial sums, then a
// tiny kernel sums the chunks in order. Backward: one thread per (frame, feature) of the chunk.
#include "../frame_l1.h"
#include "common.cuh"

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

namespace leaps {
namespace {

constexpr int kSharedFloats = 12288;  // 48 KiB: frame tiles stay under the default
constexpr int kMaxFrames = 64;        // leaps.ops.CUDA_MAX_FRAMES

struct FrameGeom {
  int64_t T, Q, F;
  int64_t sb, st, sp, sq;  // strides of z
  int64_t nch, ch;         // chunks of features per b, features per chunk
};

// Memory offset of feature f = p * Q + q inside one frame.
__device__ __forceinline__ int64_t feature_offset(int64_t f, int64_t Q, int64_t sp, int64_t sq) {
  const int64_t p = f / Q;
  return p * sp + (f - p * Q) * sq;
}

// Loads the chunk of all T frames of batch b into tile[t * ch + k] (zeros past the end).
template <typename scalar_t>
__device__ __forceinline__ void load_frames(const scalar_t* z, const FrameGeom& g, int64_t b, int64_t f0, float* tile) {
  for (int64_t k = threadIdx.x; k < g.ch; k += blockDim.x) {
    const int64_t f = f0 + k;
    const bool ok = f < g.F;
    const scalar_t* src = z + b * g.sb + (ok ? feature_offset(f, g.Q, g.sp, g.sq) : 0);
    for (int64_t t = 0; t < g.T; ++t) tile[t * g.ch + k] = ok ? to_f(src[t * g.st]) : 0.f;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// Block (b, chunk): part[(b * nch + chunk) * npairs + pair] = sum over the chunk of |z_i - z_j|.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) frame_l1_kernel(const scalar_t* __restrict__ z, FrameGeom g, float* __restrict__ part) {
  extern __shared__ float tile[];
  const int64_t b = blockIdx.x / g.nch;
  load_frames(z, g, b, (blockIdx.x % g.nch) * g.ch, tile);
  __syncthreads();
  const int T = static_cast<int>(g.T);
  const int npairs = T * (T - 1) / 2;
  const int lane = threadIdx.x % kWarp;
  int i = 0;
  int j = 1;  // pair (i, j) of index `pair`, advanced incrementally
  for (int pair = 0, target = threadIdx.x / kWarp; pair < npairs; ++pair) {
    if (pair == target) {
      const float* a = tile + i * g.ch;
      const float* c = tile + j * g.ch;
      float s = 0.f;
      for (int64_t k = lane; k < g.ch; k += kWarp) s += fabsf(a[k] - c[k]);
      s = warp_sum(s);
      if (lane == 0) part[static_cast<int64_t>(blockIdx.x) * npairs + pair] = s;
      target += blockDim.x / kWarp;
    }
    if (++j == T) {
      ++i;
      j = i + 1;
    }
  }
}

// D[b, i, j] = sum of the chunk partials (in chunk order) / F; symmetric, zero diagonal.
__global__ void frame_l1_finish_kernel(const float* __restrict__ part, FrameGeom g, int64_t B, float* __restrict__ D) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t T = g.T;
  if (idx >= B * T * T) return;
  const int64_t b = idx / (T * T);
  const int64_t i = (idx / T) % T;
  const int64_t j = idx % T;
  float s = 0.f;
  if (i != j) {
    const int64_t npairs = T * (T - 1) / 2;
    const int64_t pair = i < j ? pair_index(i, j, T) : pair_index(j, i, T);
    for (int64_t c = 0; c < g.nch; ++c) s += part[(b * g.nch + c) * npairs + pair];
    s /= static_cast<float>(g.F);
  }
  D[idx] = s;
}

// Block (b, chunk): grad[b, t, f] = sum_u W[b, t, u] * sign(z[b, t, f] - z[b, u, f]) / F.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) frame_l1_backward_kernel(
    const scalar_t* __restrict__ z, FrameGeom g, const float* __restrict__ W, scalar_t* __restrict__ grad,
    int64_t gb, int64_t gt, int64_t gp, int64_t gq) {
  extern __shared__ float smem[];
  const int64_t T = g.T;
  float* w = smem;               // T x T
  float* tile = smem + T * T;    // T x ch
  const int64_t b = blockIdx.x / g.nch;
  const int64_t f0 = (blockIdx.x % g.nch) * g.ch;
  for (int64_t k = threadIdx.x; k < T * T; k += blockDim.x) w[k] = W[b * T * T + k];
  load_frames(z, g, b, f0, tile);
  __syncthreads();
  const float inv_f = 1.0f / static_cast<float>(g.F);
  for (int64_t idx = threadIdx.x; idx < T * g.ch; idx += blockDim.x) {
    const int64_t t = idx / g.ch;
    const int64_t k = idx - t * g.ch;
    const int64_t f = f0 + k;
    if (f >= g.F) continue;
    const float v = tile[idx];
    float acc = 0.f;
    for (int64_t u = 0; u < T; ++u) {
      const float d = v - tile[u * g.ch + k];
      acc += w[t * T + u] * static_cast<float>((d > 0.f) - (d < 0.f));
    }
    grad[b * gb + t * gt + feature_offset(f, g.Q, gp, gq)] = static_cast<scalar_t>(acc * inv_f);
  }
}

// Chunk size so that the T frame tiles plus `reserve` floats fit in kSharedFloats.
FrameGeom frame_geom(const at::Tensor& z, int64_t reserve) {
  const int64_t T = z.size(1);
  TORCH_CHECK(T <= kMaxFrames, "frame_l1 (CUDA): at most ", kMaxFrames, " frames, got ", T);
  FrameGeom g{};
  g.T = T;
  g.Q = z.size(3);
  g.F = z.size(2) * z.size(3);
  g.sb = z.stride(0);
  g.st = z.stride(1);
  g.sp = z.stride(2);
  g.sq = z.stride(3);
  g.ch = std::clamp<int64_t>((kSharedFloats - reserve) / T / kWarp * kWarp, kWarp, 1024);
  g.nch = (g.F + g.ch - 1) / g.ch;
  TORCH_CHECK(z.size(0) * g.nch < (int64_t{1} << 31), "frame_l1 (CUDA): input too large");
  return g;
}

at::Tensor frame_l1_cuda(const at::Tensor& z) {
  check_frames(z, "frame_l1");
  const c10::cuda::CUDAGuard guard(z.device());
  at::Tensor D = frame_l1_output(z);
  if (D.numel() == 0) return D;
  const int64_t B = z.size(0);
  const FrameGeom g = frame_geom(z, 0);
  const int64_t npairs = g.T * (g.T - 1) / 2;
  at::Tensor part = at::empty({std::max<int64_t>(1, B * g.nch * npairs)}, D.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (npairs > 0) {
    const size_t smem = static_cast<size_t>(g.T * g.ch) * sizeof(float);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "frame_l1_cuda", [&] {
      frame_l1_kernel<scalar_t><<<static_cast<unsigned int>(B * g.nch), kThreads, smem, stream>>>(
          z.const_data_ptr<scalar_t>(), g, part.data_ptr<float>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  frame_l1_finish_kernel<<<blocks_for(D.numel(), kThreads), kThreads, 0, stream>>>(
      part.const_data_ptr<float>(), g, B, D.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return D;
}

at::Tensor frame_l1_backward_cuda(const at::Tensor& z, const at::Tensor& W) {
  const at::Tensor w = frame_weights(z, W);
  const c10::cuda::CUDAGuard guard(z.device());
  at::Tensor grad = at::empty_like(z);
  if (grad.numel() == 0) return grad;
  const int64_t T = z.size(1);
  const FrameGeom g = frame_geom(z, T * T);
  const size_t smem = static_cast<size_t>(T * T + T * g.ch) * sizeof(float);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "frame_l1_backward_cuda", [&] {
    frame_l1_backward_kernel<scalar_t><<<static_cast<unsigned int>(z.size(0) * g.nch), kThreads, smem, stream>>>(
        z.const_data_ptr<scalar_t>(), g, w.const_data_ptr<float>(), grad.data_ptr<scalar_t>(),
        grad.stride(0), grad.stride(1), grad.stride(2), grad.stride(3));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(leaps, CUDA, m) {
  m.impl("frame_l1", &frame_l1_cuda);
  m.impl("frame_l1_backward", &frame_l1_backward_cuda);
}

}  // namespace leaps
