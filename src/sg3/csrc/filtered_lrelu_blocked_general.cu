// Fused filtered_lrelu, blocked variant: the general instances (every up, down in {1, 2, 4}, filters of
// up to 8 * factor taps, zero-padded to 8 * factor). A separate translation unit so that it compiles in
// parallel with filtered_lrelu_blocked.cu.
// Copyright 2026 the sg3 authors. Apache-2.0.
#include "filtered_lrelu_blocked.cuh"

namespace sg3cuda {

template <typename scalar_t>
cudaError_t launch_blocked_general(const FusedArgs& a, cudaStream_t stream, bool* handled) {
  *handled = true;
  const int u = a.up, d = a.down;
#define SG3_BLOCKED_CASE(U, D) \
  if (u == U && d == D) return launch_blocked_instance<scalar_t, BlockedCfg<U, D, 8 * U, 8 * D>>(a, stream);
  SG3_FOR_EACH_FACTOR_PAIR(SG3_BLOCKED_CASE)
#undef SG3_BLOCKED_CASE
  *handled = false;
  return cudaSuccess;
}

template cudaError_t launch_blocked_general<__half>(const FusedArgs&, cudaStream_t, bool*);
template cudaError_t launch_blocked_general<float>(const FusedArgs&, cudaStream_t, bool*);
template cudaError_t launch_blocked_general<double>(const FusedArgs&, cudaStream_t, bool*);

}  // namespace sg3cuda
