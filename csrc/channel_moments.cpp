// leaps::channel_moments: per-channel mean and biased variance (BatchNorm batch statistics).
//
//   channel_moments(Tensor x, int channel_dim=1) -> (Tensor mean, Tensor var)
//
// For x of shape B x C x T x H x W and channel_dim=1 this reduces over B, T, H and W, i.e. it
// equals (x.mean(dims), x.var(dims, unbiased=False)). channel_dim may be negative
// (channels-last layouts such as B x T x H x W x C or B x N x C tokens use channel_dim=-1).
//
// CPU algorithm
//   * The input is seen as a contiguous (outer, C, inner) array (see channel_major_view; dense
//     permuted / channels-last inputs need no copy).
//   * Corrected two-pass algorithm: pass 1 computes the mean, pass 2 sums d = x - mean and d^2,
//     var = (sum d^2 - (sum d)^2 / n) / n. This is numerically stable for data with a large mean
//     (unlike E[x^2] - E[x]^2).
//   * Hot loops accumulate in float (double for float64 input) in 8 independent lanes that are
//     flushed into double every 1024 elements, so the error does not grow with the tensor size.
//   * Work is split into fixed tiles (independent of the number of threads) that run in
//     parallel with at::parallel_for; partial sums are merged in a fixed order, so results are
//     deterministic and do not depend on the thread count.
//   * Outputs have the dtype of the input (float16 / bfloat16 inputs are accumulated in float
//     and the results rounded to the input dtype at the end).
#include "channel_moments.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

namespace leaps {
namespace {

constexpr int64_t kTile = 1 << 15;       // elements per work item (about 128 KiB of float)
constexpr int64_t kFlush = 1024;         // float lanes are flushed to double this often
constexpr int64_t kLanes = 8;            // independent accumulators (ILP / vectorisation)
constexpr int64_t kRunMin = 16;          // inner runs at least this long use the "runs" path
constexpr int64_t kMaxChannelBlock = 4096;

// Sum of p[0..n) in double, accumulated in acc_t lanes.
template <typename scalar_t, typename acc_t>
inline double run_sum(const scalar_t* p, int64_t n) {
  double total = 0.0;
  int64_t j = 0;
  while (j < n) {
    const int64_t end = std::min(n, j + kFlush);
    acc_t a[kLanes] = {};
    for (; j + kLanes <= end; j += kLanes) {
      for (int64_t k = 0; k < kLanes; ++k) {
        a[k] += static_cast<acc_t>(p[j + k]);
      }
    }
    acc_t t = 0;
    for (; j < end; ++j) {
      t += static_cast<acc_t>(p[j]);
    }
    total += static_cast<double>(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) + t);
  }
  return total;
}

// Sums of d and d^2 (d = p[j] - mean) over p[0..n), in double, accumulated in acc_t lanes.
template <typename scalar_t, typename acc_t>
inline void run_dev(const scalar_t* p, int64_t n, acc_t mean, double& s1, double& s2) {
  int64_t j = 0;
  while (j < n) {
    const int64_t end = std::min(n, j + kFlush);
    acc_t a[kLanes] = {};
    acc_t b[kLanes] = {};
    for (; j + kLanes <= end; j += kLanes) {
      for (int64_t k = 0; k < kLanes; ++k) {
        const acc_t d = static_cast<acc_t>(p[j + k]) - mean;
        a[k] += d;
        b[k] += d * d;
      }
    }
    acc_t ta = 0;
    acc_t tb = 0;
    for (; j < end; ++j) {
      const acc_t d = static_cast<acc_t>(p[j]) - mean;
      ta += d;
      tb += d * d;
    }
    s1 += static_cast<double>(((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) + ta);
    s2 += static_cast<double>(((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7])) + tb);
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Grain (items per task) so that a task covers at least about kTile elements.
inline int64_t grain_for(int64_t elems_per_item) {
  return std::max<int64_t>(1, kTile / std::max<int64_t>(1, elems_per_item));
}

// Both layouts leave C x P partial sums (channel c, partial p at c * P + p); these fold them,
// in a fixed order, into the mean (first pass) and the corrected mean and variance (second).
template <typename acc_t>
void finish_mean(const std::vector<double>& s0, int64_t C, int64_t P, double n, double* mean_out,
                 std::vector<acc_t>& mean_acc) {
  for (int64_t c = 0; c < C; ++c) {
    double t = 0.0;
    for (int64_t p = 0; p < P; ++p) t += s0[c * P + p];
    mean_out[c] = t / n;
    mean_acc[c] = static_cast<acc_t>(mean_out[c]);
  }
}

template <typename acc_t>
void finish_moments(const std::vector<double>& s1, const std::vector<double>& s2,
                    const std::vector<acc_t>& mean_acc, int64_t C, int64_t P, double n,
                    double* mean_out, double* var_out) {
  for (int64_t c = 0; c < C; ++c) {
    double a = 0.0;
    double b = 0.0;
    for (int64_t p = 0; p < P; ++p) {
      a += s1[c * P + p];
      b += s2[c * P + p];
    }
    const double shift = a / n;  // mean correction: sum(x - m) / n
    mean_out[c] = static_cast<double>(mean_acc[c]) + shift;
    var_out[c] = std::max(0.0, (b - a * shift) / n);
  }
}

template <typename scalar_t>
void channel_moments_kernel(
    const scalar_t* data,
    int64_t O,
    int64_t C,
    int64_t I,
    double* mean_out,
    double* var_out) {
  using acc_t = at::opmath_type<scalar_t>;
  const double n = static_cast<double>(O) * static_cast<double>(I);

  if (I >= kRunMin) {
    // "runs" path: channel c consists of O contiguous runs of length I. A work item is one
    // channel x a block of rows x a chunk of the run.
    const int64_t ichunk = std::min(I, kTile);
    const int64_t n_ic = ceil_div(I, ichunk);
    const int64_t ob = I >= kTile ? 1 : std::max<int64_t>(1, kTile / I);
    const int64_t n_ob = ceil_div(O, ob);
    const int64_t P = n_ob * n_ic;  // partials per channel
    std::vector<double> s0(C * P), s1(C * P), s2(C * P);
    std::vector<acc_t> mean_acc(C);
    const int64_t grain = grain_for(std::min(ob, O) * ichunk);

    auto for_each_run = [&](int64_t item, auto&& fn) {
      const int64_t c = item / P;
      const int64_t p = item % P;
      const int64_t o0 = (p / n_ic) * ob;
      const int64_t o1 = std::min(O, o0 + ob);
      const int64_t i0 = (p % n_ic) * ichunk;
      const int64_t len = std::min(I, i0 + ichunk) - i0;
      for (int64_t o = o0; o < o1; ++o) {
        fn(c, data + (o * C + c) * I + i0, len);
      }
    };

    at::parallel_for(0, C * P, grain, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        double acc = 0.0;
        for_each_run(item, [&](int64_t, const scalar_t* p, int64_t len) {
          acc += run_sum<scalar_t, acc_t>(p, len);
        });
        s0[item] = acc;
      }
    });
    finish_mean(s0, C, P, n, mean_out, mean_acc);
    at::parallel_for(0, C * P, grain, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        double a = 0.0;
        double b = 0.0;
        for_each_run(item, [&](int64_t c, const scalar_t* p, int64_t len) {
          run_dev<scalar_t, acc_t>(p, len, mean_acc[c], a, b);
        });
        s1[item] = a;
        s2[item] = b;
      }
    });
    finish_moments(s1, s2, mean_acc, C, P, n, mean_out, var_out);
    return;
  }

  // "rows" path (short inner runs, e.g. channels-last where I == 1): a work item is a block of
  // rows x a block of channels; every row is read contiguously and accumulated per channel.
  const int64_t cb = std::min(C, std::max<int64_t>(1, std::min(kMaxChannelBlock, kTile / I)));
  const int64_t n_cb = ceil_div(C, cb);
  const int64_t ob = std::max<int64_t>(1, kTile / (cb * I));
  const int64_t n_ob = ceil_div(O, ob);
  const int64_t P = n_ob;  // partials per channel
  const int64_t flush_rows = std::max<int64_t>(1, kFlush / I);
  std::vector<double> s0(C * P), s1(C * P), s2(C * P);
  std::vector<acc_t> mean_acc(C);
  const int64_t grain = grain_for(std::min(ob, O) * cb * I);

  at::parallel_for(0, n_ob * n_cb, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> fa(cb);
    std::vector<double> da(cb);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t obi = item / n_cb;
      const int64_t c0 = (item % n_cb) * cb;
      const int64_t nc = std::min(C, c0 + cb) - c0;
      const int64_t o0 = obi * ob;
      const int64_t o1 = std::min(O, o0 + ob);
      std::fill(da.begin(), da.end(), 0.0);
      for (int64_t r0 = o0; r0 < o1; r0 += flush_rows) {
        const int64_t r1 = std::min(o1, r0 + flush_rows);
        std::fill(fa.begin(), fa.end(), acc_t(0));
        acc_t* fap = fa.data();
        for (int64_t o = r0; o < r1; ++o) {
          const scalar_t* row = data + (o * C + c0) * I;
          if (I == 1) {
            for (int64_t c = 0; c < nc; ++c) fap[c] += static_cast<acc_t>(row[c]);
          } else {
            for (int64_t c = 0; c < nc; ++c) {
              for (int64_t i = 0; i < I; ++i) fap[c] += static_cast<acc_t>(row[c * I + i]);
            }
          }
        }
        for (int64_t c = 0; c < nc; ++c) da[c] += static_cast<double>(fa[c]);
      }
      for (int64_t c = 0; c < nc; ++c) s0[(c0 + c) * P + obi] = da[c];
    }
  });
  finish_mean(s0, C, P, n, mean_out, mean_acc);
  at::parallel_for(0, n_ob * n_cb, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> fa(cb), fb(cb);
    std::vector<double> da(cb), db(cb);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t obi = item / n_cb;
      const int64_t c0 = (item % n_cb) * cb;
      const int64_t nc = std::min(C, c0 + cb) - c0;
      const int64_t o0 = obi * ob;
      const int64_t o1 = std::min(O, o0 + ob);
      const acc_t* m = mean_acc.data() + c0;
      std::fill(da.begin(), da.end(), 0.0);
      std::fill(db.begin(), db.end(), 0.0);
      for (int64_t r0 = o0; r0 < o1; r0 += flush_rows) {
        const int64_t r1 = std::min(o1, r0 + flush_rows);
        std::fill(fa.begin(), fa.end(), acc_t(0));
        std::fill(fb.begin(), fb.end(), acc_t(0));
        acc_t* fap = fa.data();
        acc_t* fbp = fb.data();
        for (int64_t o = r0; o < r1; ++o) {
          const scalar_t* row = data + (o * C + c0) * I;
          if (I == 1) {
            for (int64_t c = 0; c < nc; ++c) {
              const acc_t d = static_cast<acc_t>(row[c]) - m[c];
              fap[c] += d;
              fbp[c] += d * d;
            }
          } else {
            for (int64_t c = 0; c < nc; ++c) {
              for (int64_t i = 0; i < I; ++i) {
                const acc_t d = static_cast<acc_t>(row[c * I + i]) - m[c];
                fap[c] += d;
                fbp[c] += d * d;
              }
            }
          }
        }
        for (int64_t c = 0; c < nc; ++c) {
          da[c] += static_cast<double>(fa[c]);
          db[c] += static_cast<double>(fb[c]);
        }
      }
      for (int64_t c = 0; c < nc; ++c) {
        s1[(c0 + c) * P + obi] = da[c];
        s2[(c0 + c) * P + obi] = db[c];
      }
    }
  });
  finish_moments(s1, s2, mean_acc, C, P, n, mean_out, var_out);
}

std::tuple<at::Tensor, at::Tensor> channel_moments_cpu(const at::Tensor& x, int64_t channel_dim) {
  check_channel_moments_input(x);
  TORCH_CHECK(x.device().is_cpu(), "channel_moments_cpu: expected a CPU tensor");
  const ChannelMajorView v = channel_major_view(x, channel_dim);
  const int64_t C = v.channels;

  auto dopts = x.options().dtype(at::kDouble);
  at::Tensor mean = at::empty({C}, dopts);
  at::Tensor var = at::empty({C}, dopts);
  if (C > 0) {
    if (v.outer == 0 || v.inner == 0) {
      // Nothing to reduce over: same as torch (mean of an empty set is nan).
      mean.fill_(std::numeric_limits<double>::quiet_NaN());
      var.fill_(std::numeric_limits<double>::quiet_NaN());
    } else {
      AT_DISPATCH_FLOATING_TYPES_AND2(
          at::kHalf, at::kBFloat16, v.data.scalar_type(), "channel_moments_cpu", [&] {
            channel_moments_kernel<scalar_t>(
                v.data.const_data_ptr<scalar_t>(),
                v.outer,
                C,
                v.inner,
                mean.data_ptr<double>(),
                var.data_ptr<double>());
          });
    }
  }
  if (x.scalar_type() != at::kDouble) {
    mean = mean.to(x.scalar_type());
    var = var.to(x.scalar_type());
  }
  return std::make_tuple(mean, var);
}

// Shape-only implementation for the Meta device (FakeTensor / torch.compile tracing).
std::tuple<at::Tensor, at::Tensor> channel_moments_meta(const at::Tensor& x, int64_t channel_dim) {
  check_channel_moments_input(x);
  const int64_t dim = at::maybe_wrap_dim(channel_dim, x.dim());
  const int64_t C = x.size(dim);
  return std::make_tuple(at::empty({C}, x.options()), at::empty({C}, x.options()));
}

}  // namespace

TORCH_LIBRARY(leaps, m) {
  m.def("channel_moments(Tensor x, int channel_dim=1) -> (Tensor mean, Tensor var)");
}

TORCH_LIBRARY_IMPL(leaps, CPU, m) {
  m.impl("channel_moments", &channel_moments_cpu);
}

TORCH_LIBRARY_IMPL(leaps, Meta, m) {
  m.impl("channel_moments", &channel_moments_meta);
}

}  // namespace leaps
