// Fused filtered_lrelu: the instances for every up, down in {1, 2, 4} with filters of up to 8 * factor
// taps (compile-time factors, unrolled guarded tap loops). A separate translation unit so that it
// compiles in parallel with filtered_lrelu.cu.
// Copyright 2026 the sg3 authors. Apache-2.0.
#include "filtered_lrelu_kernel.cuh"

namespace sg3cuda {

template <typename scalar_t>
cudaError_t launch_fast_general(const FusedArgs& a, cudaStream_t stream, bool* handled) {
  *handled = false;
  const int u = a.up, d = a.down;
  if (a.fux != a.fuy || a.fdx != a.fdy || a.fux > 8 * u || a.fdx > 8 * d) return cudaSuccess;
  *handled = true;
#define SG3_FAST_CASE(U, D) \
  if (u == U && d == D) return launch_instance<scalar_t, U, D, 8 * U, 8 * D>(a, stream);
  SG3_FOR_EACH_FACTOR_PAIR(SG3_FAST_CASE)
#undef SG3_FAST_CASE
  *handled = false;
  return cudaSuccess;
}

template cudaError_t launch_fast_general<__half>(const FusedArgs&, cudaStream_t, bool*);
template cudaError_t launch_fast_general<float>(const FusedArgs&, cudaStream_t, bool*);

}  // namespace sg3cuda
