// Python bindings of the CPU extension sg3_ops_cpu (functions declared in ops.h, plus CPU-only extras).
// Copyright 2026 the sg3 authors. Apache-2.0.
#define SG3_OPS_NAMESPACE sg3cpu
#include "ops.h"

namespace sg3cpu {
// CPU-only extra (defined in bias_act_cpu.cpp): bias_act with grad == 1 or 3, returning (dx, db) where db is the
// bias gradient (dx summed over every axis but dim) reduced in the same pass. b may be empty (as for grad 3).
std::tuple<at::Tensor, at::Tensor> bias_act_grad_db(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy,
                                                    int64_t grad, int64_t dim, int64_t act, double alpha, double gain,
                                                    double clamp);
}  // namespace sg3cpu

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  SG3_OPS_DEFINE_BINDINGS(m);
  m.def("bias_act_grad_db", &sg3cpu::bias_act_grad_db, "bias_act first derivative and the bias gradient, one pass");
}
