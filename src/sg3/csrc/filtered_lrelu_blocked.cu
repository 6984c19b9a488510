// Fused filtered_lrelu, blocked variant (filtered_lrelu_blocked.cuh): which calls it covers, and the
// instances for config T's layers and their transposed backward calls (up/down 2/2 with up to 12/12 taps,
// 4/2 with 24/12, 2/4 with 12/24, 1/1 without filters). Other factors in {1, 2, 4} with up to 8 * factor
// taps run the general instances (filtered_lrelu_blocked_general.cu).
// Copyright 2026 the sg3 authors. Apache-2.0.
#include "filtered_lrelu_blocked.cuh"

namespace sg3cuda {
namespace {

bool factor_ok(int f) { return f == 1 || f == 2 || f == 4; }

template <typename scalar_t>
cudaError_t launch_blocked(const FusedArgs& a, cudaStream_t stream) {
  const int u = a.up, d = a.down, tu = a.fux, td = a.fdx;
  if (u == 2 && d == 2 && tu <= 12 && td <= 12) return launch_blocked_instance<scalar_t, 2, 2, 12, 12>(a, stream);
  if (u == 4 && d == 2 && tu <= 24 && td <= 12) return launch_blocked_instance<scalar_t, 4, 2, 24, 12>(a, stream);
  if (u == 2 && d == 4 && tu <= 12 && td <= 24) return launch_blocked_instance<scalar_t, 2, 4, 12, 24>(a, stream);
  if (u == 1 && d == 1 && tu == 1 && td == 1) return launch_blocked_instance<scalar_t, 1, 1, 1, 1>(a, stream);
  bool handled = false;
  const cudaError_t err = launch_blocked_general<scalar_t>(a, stream, &handled);
  return handled ? err : cudaErrorInvalidValue;  // unreachable when filtered_lrelu_blocked_covers(a)
}

}  // namespace

bool filtered_lrelu_blocked_covers(const FusedArgs& a) {
  const bool dtype_ok = a.dtype == DType::kHalf || a.dtype == DType::kFloat || a.dtype == DType::kDouble;
  return dtype_ok && !a.fu_2d && !a.fd_2d && factor_ok(a.up) && factor_ok(a.down) && a.fux <= 8 * a.up &&
         a.fdx <= 8 * a.down;
}

cudaError_t launch_filtered_lrelu_blocked(const FusedArgs& a, cudaStream_t stream) {
  switch (a.dtype) {
    case DType::kHalf:
      return launch_blocked<__half>(a, stream);
    case DType::kFloat:
      return launch_blocked<float>(a, stream);
    case DType::kDouble:
      return launch_blocked<double>(a, stream);
    default:
      return cudaErrorInvalidValue;  // not covered (filtered_lrelu_blocked_covers)
  }
}

}  // namespace sg3cuda
