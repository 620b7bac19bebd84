// Python module `leaps._C`.
//
// Importing it loads this shared library, whose static initialisers register the `leaps::*`
// operators with the PyTorch dispatcher (schemas in ops.cpp, kernels in the per-primitive
// files); they are then called as torch.ops.leaps.<name>. The module itself only exposes build
// information. (The CMake build leaves this file out: it makes a plain library without Python.)
#include <Python.h>
#include <pybind11/pybind11.h>

#ifndef TORCH_EXTENSION_NAME
#define TORCH_EXTENSION_NAME _C
#endif

namespace {

bool has_cuda() {
#ifdef LEAPS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "LEAPS C++ operators (registered as torch.ops.leaps.*)";
  m.def("has_cuda", &has_cuda, "True when the CUDA kernels were compiled into this build");
}
