// The scalar oracle behind the dispatch table: baseline flags, runs on every CPU.
#include "kernel_table.hpp"

namespace ttq::backend::detail {

const IsaKernels& scalar_kernels() {
  static const IsaKernels kernels = KernelTable<Scalar>::make(Isa::scalar, "scalar");
  return kernels;
}

}  // namespace ttq::backend::detail
