// Direct Python entry points of the hwnas operators and the CPU buffer pool.
#pragma once

#include <pybind11/pybind11.h>

namespace hwnas {
namespace ops {

void bind(pybind11::module_& m);

}  // namespace ops
}  // namespace hwnas
