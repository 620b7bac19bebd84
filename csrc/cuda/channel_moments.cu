// CUDA implementation of leaps::channel_moments (see ../channel_moments.cpp for the contract).
//
// The input is seen as a contiguous (outer, C, inner) array (channel_major_view). Each thread
// keeps a Welford state (float, or double for float64 input); states are merged inside a block
// and written as per-(channel, split) partials, which a last kernel merges in a fixed order in
// double precision, so results are deterministic.
//   * inner >= kRunMin ("runs"): one block per (channel, split of the channel's elements);
//     threads walk the contiguous runs, so loads are coalesced.
//   * inner <  kRunMin (channels-last, I == 1): the data is a (outer x C*inner) row-major
//     matrix; 32 x 8 thread blocks reduce 32 adjacent columns over a split of the rows.
#include "../channel_moments.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
// Only c10/cuda headers (not ATen/cuda/CUDAContext.h, which pulls in cuBLAS / cuSPARSE
// headers): the kernels need nothing but the CUDA runtime.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

namespace leaps {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kRunMin = 32;
constexpr int kColX = 32;
constexpr int kColY = 8;

template <typename acc_t>
struct Welford {
  acc_t mean;
  acc_t m2;
  int64_t n;
};

template <typename acc_t>
__device__ __forceinline__ void welford_add(Welford<acc_t>& w, acc_t x) {
  w.n += 1;
  const acc_t d = x - w.mean;
  w.mean += d / static_cast<acc_t>(w.n);
  w.m2 += d * (x - w.mean);
}

template <typename acc_t>
__device__ __forceinline__ Welford<acc_t> welford_combine(const Welford<acc_t>& a, const Welford<acc_t>& b) {
  if (a.n == 0) return b;
  if (b.n == 0) return a;
  const int64_t n = a.n + b.n;
  const acc_t d = b.mean - a.mean;
  const acc_t fb = static_cast<acc_t>(b.n) / static_cast<acc_t>(n);
  Welford<acc_t> r;
  r.n = n;
  r.mean = a.mean + d * fb;
  r.m2 = a.m2 + b.m2 + d * d * static_cast<acc_t>(a.n) * fb;
  return r;
}

// One block per (channel c, split s): grid.x = C * S.
template <typename scalar_t, typename acc_t>
__global__ void moments_runs_kernel(
    const scalar_t* __restrict__ x,
    int64_t O,
    int64_t C,
    int64_t I,
    int64_t S,
    acc_t* __restrict__ pmean,
    acc_t* __restrict__ pm2,
    int64_t* __restrict__ pn) {
  __shared__ acc_t sh_mean[kThreads];
  __shared__ acc_t sh_m2[kThreads];
  __shared__ int64_t sh_n[kThreads];

  const int64_t c = blockIdx.x / S;
  const int64_t s = blockIdx.x % S;
  const int64_t N = O * I;
  const int64_t per = (N + S - 1) / S;
  const int64_t j0 = s * per;
  const int64_t j1 = j0 + per < N ? j0 + per : N;

  Welford<acc_t> w{acc_t(0), acc_t(0), 0};
  int64_t j = j0 + threadIdx.x;
  if (j < j1) {
    int64_t o = j / I;
    int64_t i = j % I;
    const int64_t step_o = blockDim.x / I;
    const int64_t step_i = blockDim.x % I;
    for (; j < j1; j += blockDim.x) {
      welford_add(w, static_cast<acc_t>(x[(o * C + c) * I + i]));
      o += step_o;
      i += step_i;
      if (i >= I) {
        i -= I;
        ++o;
      }
    }
  }
  sh_mean[threadIdx.x] = w.mean;
  sh_m2[threadIdx.x] = w.m2;
  sh_n[threadIdx.x] = w.n;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      Welford<acc_t> a{sh_mean[threadIdx.x], sh_m2[threadIdx.x], sh_n[threadIdx.x]};
      Welford<acc_t> b{
          sh_mean[threadIdx.x + stride], sh_m2[threadIdx.x + stride], sh_n[threadIdx.x + stride]};
      Welford<acc_t> r = welford_combine(a, b);
      sh_mean[threadIdx.x] = r.mean;
      sh_m2[threadIdx.x] = r.m2;
      sh_n[threadIdx.x] = r.n;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    pmean[c * S + s] = sh_mean[0];
    pm2[c * S + s] = sh_m2[0];
    pn[c * S + s] = sh_n[0];
  }
}

// Column kernel: the data is an O x K (K = C * I) row-major matrix. Block (kColX, kColY);
// grid.x covers columns, grid.y = S splits of the rows. Partial of column k = c * I + i and
// split s is stored at c * (I * S) + i * S + s.
template <typename scalar_t, typename acc_t>
__global__ void moments_cols_kernel(
    const scalar_t* __restrict__ x,
    int64_t O,
    int64_t K,
    int64_t I,
    int64_t S,
    acc_t* __restrict__ pmean,
    acc_t* __restrict__ pm2,
    int64_t* __restrict__ pn) {
  __shared__ acc_t sh_mean[kColY][kColX];
  __shared__ acc_t sh_m2[kColY][kColX];
  __shared__ int64_t sh_n[kColY][kColX];

  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const int64_t k = static_cast<int64_t>(blockIdx.x) * kColX + tx;
  const int64_t s = blockIdx.y;
  const int64_t per = (O + S - 1) / S;
  const int64_t o0 = s * per;
  const int64_t o1 = o0 + per < O ? o0 + per : O;

  Welford<acc_t> w{acc_t(0), acc_t(0), 0};
  if (k < K) {
    for (int64_t o = o0 + ty; o < o1; o += kColY) {
      welford_add(w, static_cast<acc_t>(x[o * K + k]));
    }
  }
  sh_mean[ty][tx] = w.mean;
  sh_m2[ty][tx] = w.m2;
  sh_n[ty][tx] = w.n;
  __syncthreads();
  if (ty == 0 && k < K) {
    Welford<acc_t> r{sh_mean[0][tx], sh_m2[0][tx], sh_n[0][tx]};
    for (int y = 1; y < kColY; ++y) {
      r = welford_combine(r, Welford<acc_t>{sh_mean[y][tx], sh_m2[y][tx], sh_n[y][tx]});
    }
    const int64_t c = k / I;
    const int64_t i = k % I;
    const int64_t idx = c * (I * S) + i * S + s;
    pmean[idx] = r.mean;
    pm2[idx] = r.m2;
    pn[idx] = r.n;
  }
}

// One thread per channel merges its Q partials in order, in double.
template <typename scalar_t, typename acc_t>
__global__ void moments_finalize_kernel(
    const acc_t* __restrict__ pmean,
    const acc_t* __restrict__ pm2,
    const int64_t* __restrict__ pn,
    int64_t C,
    int64_t Q,
    scalar_t* __restrict__ mean_out,
    scalar_t* __restrict__ var_out) {
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  Welford<double> r{0.0, 0.0, 0};
  for (int64_t q = 0; q < Q; ++q) {
    const int64_t idx = c * Q + q;
    r = welford_combine(
        r, Welford<double>{static_cast<double>(pmean[idx]), static_cast<double>(pm2[idx]), pn[idx]});
  }
  const double var = r.n > 0 ? fmax(r.m2 / static_cast<double>(r.n), 0.0) : 0.0;
  mean_out[c] = static_cast<scalar_t>(r.mean);
  var_out[c] = static_cast<scalar_t>(var);
}

std::tuple<at::Tensor, at::Tensor> channel_moments_cuda(const at::Tensor& x, int64_t channel_dim) {
  check_channel_moments_input(x);
  TORCH_CHECK(x.is_cuda(), "channel_moments_cuda: expected a CUDA tensor");
  const c10::cuda::CUDAGuard guard(x.device());
  const ChannelMajorView v = channel_major_view(x, channel_dim);
  const int64_t O = v.outer;
  const int64_t C = v.channels;
  const int64_t I = v.inner;

  at::Tensor mean = at::empty({C}, x.options());
  at::Tensor var = at::empty({C}, x.options());
  if (C == 0) {
    return std::make_tuple(mean, var);
  }
  if (O == 0 || I == 0) {
    mean.fill_(std::numeric_limits<double>::quiet_NaN());
    var.fill_(std::numeric_limits<double>::quiet_NaN());
    return std::make_tuple(mean, var);
  }

  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, x.device().index()));
  const int64_t target_blocks = static_cast<int64_t>(std::max(sms, 1)) * 4;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.data.scalar_type(), "channel_moments_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto acc_dtype = c10::CppTypeToScalarType<acc_t>::value;
    const scalar_t* data = v.data.const_data_ptr<scalar_t>();
    int64_t Q = 0;
    at::Tensor pmean, pm2, pn;
    if (I >= kRunMin) {
      const int64_t N = O * I;
      const int64_t max_split = std::max<int64_t>(1, N / (kThreads * 16));
      const int64_t S = std::min(max_split, std::max<int64_t>(1, (target_blocks + C - 1) / C));
      Q = S;
      pmean = at::empty({C * Q}, x.options().dtype(acc_dtype));
      pm2 = at::empty({C * Q}, x.options().dtype(acc_dtype));
      pn = at::empty({C * Q}, x.options().dtype(at::kLong));
      moments_runs_kernel<scalar_t, acc_t><<<static_cast<unsigned int>(C * S), kThreads, 0, stream>>>(
          data, O, C, I, S, pmean.data_ptr<acc_t>(), pm2.data_ptr<acc_t>(), pn.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    } else {
      const int64_t K = C * I;
      const int64_t gx = (K + kColX - 1) / kColX;
      const int64_t max_split = std::max<int64_t>(1, std::min<int64_t>(65535, O / (kColY * 16)));
      const int64_t S = std::min(max_split, std::max<int64_t>(1, (target_blocks + gx - 1) / gx));
      Q = I * S;
      pmean = at::empty({C * Q}, x.options().dtype(acc_dtype));
      pm2 = at::empty({C * Q}, x.options().dtype(acc_dtype));
      pn = at::empty({C * Q}, x.options().dtype(at::kLong));
      const dim3 block(kColX, kColY);
      const dim3 grid(static_cast<unsigned int>(gx), static_cast<unsigned int>(S));
      moments_cols_kernel<scalar_t, acc_t><<<grid, block, 0, stream>>>(
          data, O, K, I, S, pmean.data_ptr<acc_t>(), pm2.data_ptr<acc_t>(), pn.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const int fin_threads = 128;
    const unsigned int fin_blocks = static_cast<unsigned int>((C + fin_threads - 1) / fin_threads);
    moments_finalize_kernel<scalar_t, acc_t><<<fin_blocks, fin_threads, 0, stream>>>(
        pmean.const_data_ptr<acc_t>(),
        pm2.const_data_ptr<acc_t>(),
        pn.const_data_ptr<int64_t>(),
        C,
        Q,
        mean.data_ptr<scalar_t>(),
        var.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return std::make_tuple(mean, var);
}

}  // namespace

TORCH_LIBRARY_IMPL(leaps, CUDA, m) {
  m.impl("channel_moments", &channel_moments_cuda);
}

}  // namespace leaps
