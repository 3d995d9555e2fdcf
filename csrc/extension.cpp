// The hwnas._C Python module. Loading it registers every hwnas:: operator with the
// dispatcher (their TORCH_LIBRARY blocks run as static initialisers); the module
// itself only reports how it was built, so that Python can refuse a mismatched build.
#include <pybind11/pybind11.h>
#include <torch/headeronly/version.h>

#include "ops/cpu/buffer_pool.h"
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
  namespace pool = hwnas::ops::cpu;
  m.def(
      "cpu_pool_stats",
      [] {
        const pool::PoolStats s = pool::pool_stats();
        py::dict d;
        d["cached_bytes"] = s.cached_bytes;
        d["limit_bytes"] = s.limit_bytes;
        d["hits"] = s.hits;
        d["misses"] = s.misses;
        return d;
      },
      "Statistics of the CPU buffer pool that serves hwnas kernel outputs.");
  m.def("release_cpu_pool", &pool::pool_release, "Frees the unused blocks the CPU buffer pool holds.");
  m.def("set_cpu_pool_limit", &pool::pool_set_limit, py::arg("bytes"),
        "Caps the bytes the CPU buffer pool keeps while unused (0 turns pooling off).");
  hwnas::timing::bind(m);
}
