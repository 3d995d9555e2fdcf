// Python bindings of the timing harness (filled in by the latency work).
#pragma once

#include <pybind11/pybind11.h>

namespace hwnas {
namespace timing {

void bind(pybind11::module_& m);

}  // namespace timing
}  // namespace hwnas
