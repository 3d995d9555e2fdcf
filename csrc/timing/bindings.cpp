// Python bindings of the timing harness (hwnas._C.timing). The public, documented
// interface is hwnas.latency.harness; these functions take and return plain dicts.
//
// Three ways to run a body:
//   * time_script_module: a TorchScript module (serialised with torch.jit.save) run
//     by the C++ interpreter with the GIL released: no Python in the loop.
//   * time_operator: a registered dispatcher operator (e.g. "hwnas::weighted_sum"),
//     called boxed with fixed arguments, GIL released.
//   * time_python: any Python callable, called with the GIL held; includes the
//     Python call overhead (measure it with a no-op callable).
#include "bindings.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/python/pybind_utils.h>
#include <torch/python.h>
#include <torch/script.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "harness.h"

namespace py = pybind11;

namespace hwnas {
namespace timing {

namespace {

TimingConfig config_from_dict(const py::dict& d) {
  TimingConfig c;
  for (auto item : d) {
    const auto key = py::cast<std::string>(item.first);
    const py::handle value = item.second;
    if (key == "warmup_iters") c.warmup_iters = py::cast<int64_t>(value);
    else if (key == "warmup_s") c.warmup_s = py::cast<double>(value);
    else if (key == "min_samples") c.min_samples = py::cast<int64_t>(value);
    else if (key == "max_samples") c.max_samples = py::cast<int64_t>(value);
    else if (key == "iters_per_sample") c.iters_per_sample = py::cast<int64_t>(value);
    else if (key == "min_sample_s") c.min_sample_s = py::cast<double>(value);
    else if (key == "target_rel_ci") c.target_rel_ci = py::cast<double>(value);
    else if (key == "confidence") c.confidence = py::cast<double>(value);
    else if (key == "budget_s") c.budget_s = py::cast<double>(value);
    else if (key == "num_threads") c.num_threads = py::cast<int64_t>(value);
    else if (key == "flush_bytes") c.flush_bytes = py::cast<int64_t>(value);
    else if (key == "clock") c.clock = py::cast<std::string>(value);
    else throw std::invalid_argument("unknown timing config key '" + key + "'");
  }
  return c;
}

// Runs Python's signal handlers (Ctrl-C -> KeyboardInterrupt) between samples. A
// Python function body checks signals itself, but a builtin callable and the GIL-free
// paths never would, and the loop would ignore Ctrl-C until its budget was spent.
// Takes the GIL only for the check (Python runs handlers on the main thread only).
// Handlers run outside the timing's inference mode: a tensor they make is an ordinary one.
void check_python_signals() {
  py::gil_scoped_acquire gil;
  c10::InferenceMode normal_mode(false);
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

py::dict result_to_dict(const TimingResult& r) {
  py::dict d;
  d["samples_ns"] = r.samples_ns;
  d["iters_per_sample"] = r.iters_per_sample;
  d["warmup_iters"] = r.warmup_iters_done;
  d["median_ns"] = r.median_ns;
  d["p10_ns"] = r.p10_ns;
  d["p25_ns"] = r.p25_ns;
  d["p75_ns"] = r.p75_ns;
  d["p90_ns"] = r.p90_ns;
  d["mean_ns"] = r.mean_ns;
  d["std_ns"] = r.std_ns;
  d["min_ns"] = r.min_ns;
  d["max_ns"] = r.max_ns;
  d["iqr_ns"] = r.iqr_ns;
  d["cv"] = r.cv;
  d["ci_lo_ns"] = r.ci_lo_ns;
  d["ci_hi_ns"] = r.ci_hi_ns;
  d["rel_ci"] = r.rel_ci;
  d["converged"] = r.converged;
  d["stop_reason"] = r.stop_reason;
  d["elapsed_s"] = r.elapsed_s;
  d["threads_used"] = r.threads_used;
  return d;
}

py::dict time_python(py::object callable, const py::dict& config) {
  if (!PyCallable_Check(callable.ptr())) throw std::invalid_argument("time_python: object is not callable");
  const TimingConfig c = config_from_dict(config);
  PyObject* fn = callable.ptr();
  // PyObject_CallNoArgs directly: the cheapest call CPython offers, so the measured
  // Python overhead is the interpreter's and not pybind11's.
  Body body = [fn]() {
    PyObject* out = PyObject_CallNoArgs(fn);
    if (out == nullptr) throw py::error_already_set();
    Py_DECREF(out);
  };
  return result_to_dict(run_timing(body, c, check_python_signals));
}

py::dict time_script_module(const py::bytes& serialized, const std::vector<at::Tensor>& inputs,
                            const std::string& method, const py::dict& config) {
  const TimingConfig c = config_from_dict(config);
  std::istringstream stream(static_cast<std::string>(serialized));
  torch::jit::Module module = torch::jit::load(stream);
  module.eval();
  auto function = module.find_method(method);
  if (!function) throw std::invalid_argument("time_script_module: the module has no method '" + method + "'");
  std::vector<c10::IValue> args(inputs.begin(), inputs.end());
  TimingResult result;
  {
    py::gil_scoped_release no_gil;
    c10::InferenceMode inference;
    auto& m = *function;
    Body body = [&m, &args]() { (void)m(args); };
    result = run_timing(body, c, check_python_signals);
  }
  return result_to_dict(result);
}

py::dict time_operator(const std::string& name, const std::string& overload, const py::list& args,
                       const py::dict& config) {
  const TimingConfig c = config_from_dict(config);
  const auto handle = c10::Dispatcher::singleton().findSchemaOrThrow(name.c_str(), overload.c_str());
  const auto& schema = handle.schema();
  if (args.size() > schema.arguments().size())
    throw std::invalid_argument("time_operator: " + name + " takes " + std::to_string(schema.arguments().size()) +
                                " arguments, got " + std::to_string(args.size()));
  torch::jit::Stack prototype;
  for (size_t i = 0; i < args.size(); ++i) {
    prototype.push_back(torch::jit::toIValue(args[i], schema.arguments()[i].type()));
  }
  for (size_t i = args.size(); i < schema.arguments().size(); ++i) {
    const auto& default_value = schema.arguments()[i].default_value();
    if (!default_value)
      throw std::invalid_argument("time_operator: argument '" + schema.arguments()[i].name() + "' of " + name +
                                  " has no default and was not given");
    prototype.push_back(*default_value);
  }
  TimingResult result;
  {
    py::gil_scoped_release no_gil;
    c10::InferenceMode inference;
    torch::jit::Stack stack;
    Body body = [&handle, &prototype, &stack]() {
      stack = prototype;  // callBoxed consumes its arguments
      handle.callBoxed(stack);
    };
    result = run_timing(body, c, check_python_signals);
  }
  return result_to_dict(result);
}

}  // namespace

void bind(pybind11::module_& m) {
  auto t = m.def_submodule("timing", "Native micro-benchmark harness (see hwnas.latency.harness)");
  t.def("time_python", &time_python, py::arg("callable"), py::arg("config"),
        "Times callable() in a C++ loop with the GIL held (includes Python call overhead).");
  t.def("time_script_module", &time_script_module, py::arg("serialized"), py::arg("inputs"), py::arg("method"),
        py::arg("config"), "Times a torch.jit.save'd module's method in C++ with the GIL released.");
  t.def("time_operator", &time_operator, py::arg("name"), py::arg("overload"), py::arg("args"), py::arg("config"),
        "Times a registered dispatcher operator called boxed with fixed arguments, GIL released.");
  t.def(
      "time_empty", [](const py::dict& config) {
        const TimingConfig c = config_from_dict(config);
        TimingResult r;
        {
          py::gil_scoped_release no_gil;
          r = measure_empty_body(c, check_python_signals);
        }
        return result_to_dict(r);
      },
      py::arg("config"), "Times an empty body: the harness's own per-iteration overhead.");
  t.def("clock_pair_cost_ns", &clock_pair_cost_ns, py::arg("repeats") = 101,
        "Median cost of two consecutive steady_clock::now() reads, in nanoseconds.");
  t.def("median_ci_indices", &median_ci_indices, py::arg("n"), py::arg("confidence"),
        "0-based order-statistic indices (lo, hi) of the median's distribution-free CI; (-1, -1) if n is too small.");
  t.def(
      "statistics",
      [](const std::vector<double>& samples, double confidence) {
        if (!(confidence > 0 && confidence < 1))
          throw std::invalid_argument("statistics: confidence must be in (0, 1), got " + std::to_string(confidence));
        // NaN breaks std::sort's ordering (undefined behaviour), inf every statistic.
        for (size_t i = 0; i < samples.size(); ++i)
          if (!std::isfinite(samples[i]))
            throw std::invalid_argument("statistics: sample " + std::to_string(i) + " is not finite (" +
                                        std::to_string(samples[i]) + ")");
        TimingResult r;
        r.samples_ns = samples;
        compute_statistics(r, confidence);
        return result_to_dict(r);
      },
      py::arg("samples_ns"), py::arg("confidence") = 0.95, "Statistics of given samples, as the harness computes them.");
  t.attr("clocks") = py::make_tuple("steady", "thread_cpu");
}

}  // namespace timing
}  // namespace hwnas
