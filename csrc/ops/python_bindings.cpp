// Direct Python entry points of the hwnas operators (hwnas._C.ops).
//
// Why: calling torch.ops.hwnas.weighted_sum from Python goes through the generic
// boxed path (schema-driven argument parsing into IValues), about 3.5 microseconds
// per call here, where the dispatcher call itself costs 1.3. A supernet calls these
// ops once per searchable layer per step and at batch 1 the whole weighted_sum takes
// tens of microseconds, so hwnas.ops calls these typed entry points instead. They
// still go through the dispatcher (autograd, CPU/CUDA kernels, Python-key modes such
// as FakeTensorMode); hwnas.ops falls back to torch.ops under torch.compile tracing
// and for __torch_function__ overrides, which only the torch.ops path honours.
#include "python_bindings.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/Exceptions.h>
#include <torch/python.h>

#include <vector>

#include "cpu/buffer_pool.h"

namespace py = pybind11;

namespace hwnas {
namespace ops {
namespace {

at::Tensor weighted_sum(const std::vector<at::Tensor>& branches, const at::Tensor& weights) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("hwnas::weighted_sum", "")
                             .typed<at::Tensor(at::TensorList, const at::Tensor&)>();
  return op.call(branches, weights);
}

at::Tensor channel_mask(const at::Tensor& x, const at::Tensor& gates, const std::vector<int64_t>& widths) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("hwnas::channel_mask", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef)>();
  return op.call(x, gates, widths);
}

at::Tensor depthwise_conv2d(const at::Tensor& x, const at::Tensor& weight, const std::vector<int64_t>& stride,
                            const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("hwnas::depthwise_conv2d", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef,
                            at::IntArrayRef)>();
  return op.call(x, weight, stride, padding, dilation);
}

}  // namespace

void bind(py::module_& m) {
  auto o = m.def_submodule("ops", "Typed entry points of the hwnas operators (see hwnas.ops)");
  o.def("weighted_sum", torch::wrap_pybind_function(&weighted_sum), py::arg("branches"), py::arg("weights"));
  o.def("channel_mask", torch::wrap_pybind_function(&channel_mask), py::arg("x"), py::arg("gates"),
        py::arg("widths"));
  o.def("depthwise_conv2d", torch::wrap_pybind_function(&depthwise_conv2d), py::arg("x"), py::arg("weight"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"));

  namespace pool = cpu;
  o.def(
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
  o.def("release_cpu_pool", &pool::pool_release, "Frees the unused blocks the CPU buffer pool holds.");
  o.def("set_cpu_pool_limit", &pool::pool_set_limit, py::arg("bytes"),
        "Caps the bytes the CPU buffer pool keeps while unused (0 turns pooling off).");
}

}  // namespace ops
}  // namespace hwnas
