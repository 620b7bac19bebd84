// CUDA kernels of the channel_stats operators (contract in ../channel_stats.h, CPU reference in
// ../channel_stats.cpp, schemas in ../ops.cpp). Inputs are read through their strides (no
// copies); all accumulation is in float; results are deterministic (no float atomics, fixed
// reduction orders).
//
// channel_stats / channel_stats_backward: one launch covers every layer ("multi-tensor apply").
// The host builds a table of per-layer descriptors (pointers, sizes, strides, output offsets and
// the layer's first work item), copies it to the device with one non-blocking copy from pinned
// memory on the current stream (no synchronisation, so CUDA graph capture works), and a block
// finds its layer by binary search over the first-item column, then decodes (b, channel block,
// split of S) from its index inside the layer. Two layouts:
//   * rows (stride(S) is the smallest, e.g. NCDHW): a group of tpr threads (32..256) walks one
//     row, with 16-byte vector loads when the row is contiguous and aligned.
//   * cols (stride(C) < stride(S), channels-last / tokens): 32 channels x 8 lanes along S, so a
//     warp reads 32 adjacent channels.
// Each thread keeps a Welford state; the states of one row are merged (Chan) in a fixed order.
// Long rows are split along S; the split states go to a workspace and a second small kernel
// merges them in order.
#include "../channel_stats.h"
#include "common.cuh"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

namespace leaps {
namespace {

constexpr int kColChannels = 32;                    // channels of one cols-layout item
constexpr int kColLanes = kThreads / kColChannels;  // threads along S per channel (cols layout)
constexpr int64_t kSplitElems = 16384;              // S-split of a long row (rows layout)
constexpr int64_t kColSplit = kSplitElems / kColChannels;  // S-split in the cols layout

enum DType : int32_t { kF32 = 0, kF16 = 1, kBF16 = 2, kF64 = 3 };

int32_t dtype_code(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return kF32;
    case at::kHalf: return kF16;
    case at::kBFloat16: return kBF16;
    default: return kF64;  // the only other type the checks let through
  }
}

// Per-layer descriptor, shared by host and device (plain data, copied byte for byte).
struct LayerDesc {
  const void* x;
  void* out;                 // gradient (backward only)
  int64_t B, C, S;
  int64_t sb, sc, ss;        // strides of x
  int64_t ob, oc, os;        // strides of out
  int64_t row0;              // first row (off_l)
  int64_t item0;             // first work item (block)
  int64_t part0;             // first workspace slot (forward with nsplit > 1)
  int64_t ncb;               // channel blocks per b
  int64_t split_len;         // elements of S per split
  int32_t nsplit;            // splits of S per row
  int32_t tpr;               // rows layout: threads per row (channels per item: kThreads / tpr); 0: cols
  int32_t dtype;
  int32_t vec;               // rows layout, forward: elements per vector load (1: scalar loads)
};
static_assert(sizeof(LayerDesc) % 8 == 0, "LayerDesc must keep 8-byte alignment in the table");

template <typename T>
struct Tag {
  using type = T;
};

// Calls fn(Tag<scalar_t>{}) for a runtime dtype code (uniform across a block).
template <typename Fn>
__device__ __forceinline__ void dispatch_dtype(int32_t dtype, Fn&& fn) {
  switch (dtype) {
    case kF32: fn(Tag<float>{}); break;
    case kF16: fn(Tag<c10::Half>{}); break;
    case kBF16: fn(Tag<c10::BFloat16>{}); break;
    default: fn(Tag<double>{}); break;
  }
}

// Largest layer l with key(l) <= v (layers with no rows / items are skipped naturally).
template <typename Key>
__device__ __forceinline__ int find_layer(const LayerDesc* layers, int nl, int64_t v, Key key) {
  int lo = 0;
  int hi = nl - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (key(layers[mid]) <= v) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// One block's work: layer, batch index, first channel, range of S, and this thread's place.
struct Item {
  int64_t b, c, s0, s1, split;  // c: this thread's channel
  int lane, nlanes;              // this thread walks s = s0 + lane, s0 + lane + nlanes, ...
};

__device__ __forceinline__ Item decode_item(const LayerDesc& L, int64_t block) {
  int64_t idx = block - L.item0;
  Item it;
  it.split = idx % L.nsplit;
  idx /= L.nsplit;
  const int64_t cb = idx % L.ncb;
  it.b = idx / L.ncb;
  it.s0 = it.split * L.split_len;
  it.s1 = min(L.S, it.s0 + L.split_len);
  const int tid = threadIdx.x;
  if (L.tpr > 0) {  // rows: consecutive threads share a row
    it.c = cb * (kThreads / L.tpr) + tid / L.tpr;
    it.lane = tid % L.tpr;
    it.nlanes = L.tpr;
  } else {          // cols: consecutive threads take consecutive channels
    it.c = cb * kColChannels + tid % kColChannels;
    it.lane = tid / kColChannels;
    it.nlanes = kColLanes;
  }
  return it;
}

// ---------------------------------------------------------------------------------------------
// channel_stats

struct Welford {
  float n, mean, m2;
};

__device__ __forceinline__ void wf_add(Welford& w, float x) {
  w.n += 1.f;
  const float d = x - w.mean;
  w.mean += __fdividef(d, w.n);
  w.m2 += d * (x - w.mean);
}

__device__ __forceinline__ Welford wf_merge(const Welford& a, const Welford& b) {
  if (b.n == 0.f) return a;
  if (a.n == 0.f) return b;
  const float n = a.n + b.n;
  const float d = b.mean - a.mean;
  const float fb = b.n / n;
  return {n, a.mean + d * fb, a.m2 + b.m2 + d * d * a.n * fb};
}

__device__ __forceinline__ Welford warp_merge(Welford w) {
  for (int o = kWarp / 2; o > 0; o >>= 1) {
    const Welford v{__shfl_down_sync(0xffffffffu, w.n, o), __shfl_down_sync(0xffffffffu, w.mean, o),
                    __shfl_down_sync(0xffffffffu, w.m2, o)};
    w = wf_merge(w, v);
  }
  return w;
}

struct StatsOut {
  float* mean;
  float* m2;     // null without with_m2
  float* part;   // workspace: 3 x nparts (n, mean, m2), null when no row is split
  int64_t nparts;
};

__device__ __forceinline__ void store_final(const StatsOut& o, int64_t row, const Welford& w) {
  o.mean[row] = w.mean;
  if (o.m2 != nullptr) o.m2[row] = w.m2;
}

__device__ __forceinline__ void store_partial(const StatsOut& o, int64_t k, const Welford& w) {
  o.part[k] = w.n;
  o.part[o.nparts + k] = w.mean;
  o.part[2 * o.nparts + k] = w.m2;
}

// Welford state of this thread's elements of row (b, c), s in [s0, s1).
template <typename scalar_t>
__device__ __forceinline__ Welford thread_stats(const LayerDesc& L, const Item& it) {
  Welford w{0.f, 0.f, 0.f};
  if (it.c >= L.C) return w;
  const scalar_t* p = static_cast<const scalar_t*>(L.x) + it.b * L.sb + it.c * L.sc;
  if (L.vec > 1) {  // contiguous, 16-byte aligned row: vector loads, then a scalar tail
    constexpr int V = 16 / sizeof(scalar_t);
    struct alignas(16) Vec {
      scalar_t v[V];
    };
    const scalar_t* row = p + it.s0;
    const int64_t len = it.s1 - it.s0;
    const int64_t nv = len / V;
    const Vec* pv = reinterpret_cast<const Vec*>(row);
    for (int64_t k = it.lane; k < nv; k += it.nlanes) {
      const Vec r = pv[k];
#pragma unroll
      for (int e = 0; e < V; ++e) wf_add(w, to_f(r.v[e]));
    }
    for (int64_t s = nv * V + it.lane; s < len; s += it.nlanes) wf_add(w, to_f(row[s]));
  } else {
    for (int64_t s = it.s0 + it.lane; s < it.s1; s += it.nlanes) wf_add(w, to_f(p[s * L.ss]));
  }
  return w;
}

__global__ void __launch_bounds__(kThreads)
channel_stats_kernel(const LayerDesc* __restrict__ layers, int nl, StatsOut out) {
  __shared__ Welford sh[kThreads];
  const int l = find_layer(layers, nl, blockIdx.x, [](const LayerDesc& d) { return d.item0; });
  const LayerDesc L = layers[l];
  const Item it = decode_item(L, blockIdx.x);
  Welford w{0.f, 0.f, 0.f};
  dispatch_dtype(L.dtype, [&](auto tag) { w = thread_stats<typename decltype(tag)::type>(L, it); });

  // Merge the states of each row in a fixed order. Rows layout: a row's threads are whole warps
  // (shuffle merge, then one state per warp); cols layout: a row's 8 states are 32 apart.
  const int tid = threadIdx.x;
  int first, count, step;
  if (L.tpr > 0) {
    w = warp_merge(w);
    if (tid % kWarp == 0) sh[tid / kWarp] = w;
    first = (tid / L.tpr) * (L.tpr / kWarp);
    count = L.tpr / kWarp;
    step = 1;
  } else {
    sh[tid] = w;
    first = tid % kColChannels;
    count = kColLanes;
    step = kColChannels;
  }
  __syncthreads();
  if (it.lane != 0 || it.c >= L.C) return;
  Welford r = sh[first];
  for (int k = 1; k < count; ++k) r = wf_merge(r, sh[first + k * step]);
  const int64_t row = it.b * L.C + it.c;
  if (L.nsplit == 1) {
    store_final(out, L.row0 + row, r);
  } else {
    store_partial(out, L.part0 + row * L.nsplit + it.split, r);
  }
}

// Rows that were split along S: merge their split states in order (one thread per row).
__global__ void channel_stats_merge_kernel(const LayerDesc* __restrict__ layers, int nl, int64_t n, StatsOut out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const LayerDesc& L = layers[find_layer(layers, nl, i, [](const LayerDesc& d) { return d.row0; })];
  if (L.nsplit == 1) return;  // written directly by channel_stats_kernel
  const int64_t k0 = L.part0 + (i - L.row0) * L.nsplit;
  Welford r{0.f, 0.f, 0.f};
  for (int64_t k = k0; k < k0 + L.nsplit; ++k) {
    r = wf_merge(r, Welford{out.part[k], out.part[out.nparts + k], out.part[2 * out.nparts + k]});
  }
  store_final(out, i, r);
}

// ---------------------------------------------------------------------------------------------
// channel_stats_backward

template <typename scalar_t>
__device__ __forceinline__ void thread_grads(const LayerDesc& L, const Item& it, float a, const float* beta) {
  const int64_t row = it.b * L.C + it.c;
  scalar_t* g = static_cast<scalar_t*>(L.out) + it.b * L.ob + it.c * L.oc;
  if (beta == nullptr) {  // x is not read at all
    for (int64_t s = it.s0 + it.lane; s < it.s1; s += it.nlanes) g[s * L.os] = static_cast<scalar_t>(a);
    return;
  }
  const float bt = beta[L.row0 + row];
  const scalar_t* x = static_cast<const scalar_t*>(L.x) + it.b * L.sb + it.c * L.sc;
  for (int64_t s = it.s0 + it.lane; s < it.s1; s += it.nlanes) {
    g[s * L.os] = static_cast<scalar_t>(a + bt * to_f(x[s * L.ss]));
  }
}

__global__ void __launch_bounds__(kThreads) channel_stats_backward_kernel(
    const LayerDesc* __restrict__ layers, int nl, const float* __restrict__ alpha, const float* __restrict__ beta) {
  const int l = find_layer(layers, nl, blockIdx.x, [](const LayerDesc& d) { return d.item0; });
  const LayerDesc L = layers[l];
  const Item it = decode_item(L, blockIdx.x);
  if (it.c >= L.C) return;
  const float a = alpha[L.row0 + it.b * L.C + it.c];
  dispatch_dtype(L.dtype, [&](auto tag) { thread_grads<typename decltype(tag)::type>(L, it, a, beta); });
}

// ---------------------------------------------------------------------------------------------
// Host side of channel_stats*: the layer table.

struct Plan {
  std::vector<LayerDesc> layers;
  int64_t items = 0;
  int64_t parts = 0;  // workspace slots of split rows
};

// Describes every layer (outs: the gradients, empty for the forward pass). Vector loads are only
// used by the forward kernel (vectorise).
Plan plan_layers(at::TensorList xs, const std::vector<at::Tensor>& outs, bool vectorise) {
  Plan plan;
  int64_t row0 = 0;
  for (size_t l = 0; l < xs.size(); ++l) {
    const at::Tensor& x = xs[l];
    LayerDesc d{};
    d.x = x.const_data_ptr();
    d.B = x.size(0);
    d.C = x.size(1);
    d.S = x.size(2);
    d.sb = x.stride(0);
    d.sc = x.stride(1);
    d.ss = x.stride(2);
    if (!outs.empty()) {
      d.out = outs[l].data_ptr();
      d.ob = outs[l].stride(0);
      d.oc = outs[l].stride(1);
      d.os = outs[l].stride(2);
    }
    d.dtype = dtype_code(x.scalar_type());
    d.row0 = row0;
    d.item0 = plan.items;
    const bool cols = d.C > 1 && (d.S == 1 || d.sc < d.ss);
    int64_t per_item = kColChannels;
    if (cols) {
      d.tpr = 0;
      d.split_len = std::min<int64_t>(std::max<int64_t>(d.S, 1), kColSplit);
    } else {
      // About 16+ elements per thread; long rows take the whole block and are split.
      d.tpr = kWarp;
      while (d.tpr < kThreads && d.tpr * 16 < d.S) d.tpr *= 2;
      per_item = kThreads / d.tpr;
      d.split_len = std::min<int64_t>(std::max<int64_t>(d.S, 1), kSplitElems);
    }
    d.nsplit = static_cast<int32_t>((d.S + d.split_len - 1) / d.split_len);
    if (d.nsplit < 1) d.nsplit = 1;
    d.ncb = (d.C + per_item - 1) / per_item;
    const int64_t vw = 16 / static_cast<int64_t>(x.element_size());
    d.vec = (vectorise && !cols && d.ss == 1 && reinterpret_cast<uintptr_t>(d.x) % 16 == 0 &&
             d.sb % vw == 0 && d.sc % vw == 0 && d.split_len % vw == 0)
                ? static_cast<int32_t>(vw)
                : 1;
    if (d.nsplit > 1) {
      d.part0 = plan.parts;
      plan.parts += d.B * d.C * d.nsplit;
    }
    plan.items += d.B * d.ncb * d.nsplit;
    row0 += d.B * d.C;
    plan.layers.push_back(d);
  }
  TORCH_CHECK(plan.items < (int64_t{1} << 31), "channel_stats: too many work items");
  return plan;
}

// Copies the table to the device: one non-blocking copy from pinned memory on the current stream
// (copy_ records the use of the pinned block, so it is not reused before the copy has run; under
// graph capture the allocator keeps it for the graph's lifetime).
at::Tensor upload_table(const Plan& plan, const at::Device& device) {
  const int64_t bytes = static_cast<int64_t>(plan.layers.size() * sizeof(LayerDesc));
  at::Tensor host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host.data_ptr(), plan.layers.data(), bytes);
  at::Tensor dev = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(device));
  dev.copy_(host, /*non_blocking=*/true);
  return dev;
}

std::tuple<at::Tensor, at::Tensor> channel_stats_cuda(at::TensorList xs, bool with_m2) {
  const int64_t n = stats_rows(xs, "channel_stats");
  const c10::cuda::CUDAGuard guard(xs[0].device());
  auto [mean, m2] = stats_outputs(xs, n, with_m2);
  if (n == 0) return std::make_tuple(mean, m2);
  const Plan plan = plan_layers(xs, {}, /*vectorise=*/true);
  const at::Tensor table = upload_table(plan, xs[0].device());
  at::Tensor part;
  if (plan.parts > 0) part = at::empty({3 * plan.parts}, mean.options());
  const StatsOut out{mean.data_ptr<float>(), with_m2 ? m2.data_ptr<float>() : nullptr,
                     plan.parts > 0 ? part.data_ptr<float>() : nullptr, plan.parts};
  const auto* layers = reinterpret_cast<const LayerDesc*>(table.const_data_ptr());
  const int nl = static_cast<int>(plan.layers.size());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  channel_stats_kernel<<<static_cast<unsigned int>(plan.items), kThreads, 0, stream>>>(layers, nl, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (plan.parts > 0) {
    channel_stats_merge_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(layers, nl, n, out);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return std::make_tuple(mean, m2);
}

std::vector<at::Tensor> channel_stats_backward_cuda(
    at::TensorList xs, const at::Tensor& alpha, const std::optional<at::Tensor>& beta) {
  const int64_t n = stats_rows(xs, "channel_stats_backward");
  const c10::cuda::CUDAGuard guard(xs[0].device());
  auto [a, b_opt] = stats_coeffs(xs, n, alpha, beta);
  std::vector<at::Tensor> grads = empty_like_all(xs);
  if (n == 0) return grads;
  const Plan plan = plan_layers(xs, grads, /*vectorise=*/false);
  if (plan.items == 0) return grads;
  const at::Tensor table = upload_table(plan, xs[0].device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  channel_stats_backward_kernel<<<static_cast<unsigned int>(plan.items), kThreads, 0, stream>>>(
      reinterpret_cast<const LayerDesc*>(table.const_data_ptr()), static_cast<int>(plan.layers.size()),
      a.const_data_ptr<float>(), b_opt ? b_opt->const_data_ptr<float>() : nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(leaps, CUDA, m) {
  m.impl("channel_stats", &channel_stats_cuda);
  m.impl("channel_stats_backward", &channel_stats_backward_cuda);
}

}  // namespace leaps
