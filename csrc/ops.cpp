// The one registration file of the LEAPS operators: TORCH_LIBRARY(leaps) defines every schema.
// Each primitive registers its kernels next to them, one file per primitive and backend (the
// layout of kernels/, the Triton side):
//
//   channel_stats.cpp, frame_l1.cpp              CPU and Meta kernels (TORCH_LIBRARY_IMPL)
//   cuda/channel_stats.cu, cuda/frame_l1.cu      CUDA kernels (only in builds with CUDA)
//
// The kernels are autograd-free; the autograd formula (shared with the Triton ops
// torch.ops.leaps.triton_*) is registered from Python, in leaps/ops.py.
//
// In the Python API, backend="cuda" means "this compiled extension" (leaps._C, or a CMake-built
// library): its CPU kernels run on CPU tensors and its CUDA kernels on CUDA tensors. Adding an
// operator: its schema here, its kernels in <primitive>.cpp / cuda/<primitive>.cu.
#include <torch/library.h>

TORCH_LIBRARY(leaps, m) {
  // Per-(layer, b, c) row means and centred sums of squares of B x C x S tensors (channel_stats.h).
  m.def("channel_stats(Tensor[] xs, bool with_m2) -> (Tensor mean, Tensor m2)");
  m.def("channel_stats_backward(Tensor[] xs, Tensor alpha, Tensor? beta) -> Tensor[]");
  // Per-frame mean L1 distances of a B x T x P x Q tensor (frame_l1.h).
  m.def("frame_l1(Tensor z) -> Tensor D");
  m.def("frame_l1_backward(Tensor z, Tensor W) -> Tensor grad");
}
