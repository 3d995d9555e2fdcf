// The hwnas._C Python module. Loading it registers every hwnas:: operator with the
// dispatcher (their TORCH_LIBRARY blocks run as static initialisers); the module
// itself only reports how it was built, so that Python can refuse a mismatched build.
#include <pybind11/pybind11.h>
#include <torch/headeronly/version.h>

#include "ops/python_bindings.h"
#include "timing/bindings.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "hwnas native extension: custom operators and the timing harness";
  m.attr("torch_version") = py::str(
      std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
      std::to_string(TORCH_VERSION_PATCH));
#ifdef HWNAS_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  hwnas::ops::bind(m);
  hwnas::timing::bind(m);
}
