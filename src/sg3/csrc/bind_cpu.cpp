// Python bindings of the CPU extension sg3_ops_cpu (functions declared in ops.h).
// Copyright 2026 the sg3 authors. Apache-2.0.
#define SG3_OPS_NAMESPACE sg3cpu
#include "ops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { SG3_OPS_DEFINE_BINDINGS(m); }
