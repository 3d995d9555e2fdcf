#include "bindings.h"

namespace hwnas {
namespace timing {

void bind(pybind11::module_& m) {
  (void)m;
}

}  // namespace timing
}  // namespace hwnas
