// Fused filtered_lrelu, blocked variant (filtered_lrelu_blocked.cuh): which calls it covers, and the
// instances for the layers of configs T and R and their transposed backward calls:
//   separable up and down  up/down 2/2 with up to 12/12 taps, 4/2 with 24/12, 2/4 with 12/24, 1/1 without
//                          filters (T's layers, R's last layers and ToRGB, forward and backward)
//   2-D down (R forward)   2/2 with 12 / 12x12 taps, 4/2 with 24 / 12x12
//   2-D up (R backward)    2/2 with 12x12 / 12 taps, 2/4 with 12x12 / 24
// Other separable calls with up, down in {1, 2, 4} and up to 8 * factor taps run the general instances
// (filtered_lrelu_blocked_general.cu); everything else runs the tiled kernel.
// Copyright 2026 the sg3 authors. Apache-2.0.
#include "filtered_lrelu_blocked.cuh"

namespace sg3cuda {
namespace {

bool factor_ok(int f) { return f == 1 || f == 2 || f == 4; }

using CfgT22 = BlockedCfg<2, 2, 12, 12>;  // separable up and down
using CfgT42 = BlockedCfg<4, 2, 24, 12>;
using CfgT24 = BlockedCfg<2, 4, 12, 24>;
using CfgT11 = BlockedCfg<1, 1, 1, 1>;
using CfgR22 = BlockedCfg<2, 2, 12, 12, false, true>;  // 2-D down (R forward)
using CfgR42 = BlockedCfg<4, 2, 24, 12, false, true>;
using CfgR22T = BlockedCfg<2, 2, 12, 12, true, false>;  // 2-D up (R backward)
using CfgR24T = BlockedCfg<2, 4, 12, 24, true, false>;

template <typename scalar_t>
cudaError_t launch_blocked(const FusedArgs& a, cudaStream_t stream) {
  const int u = a.up, d = a.down, tu = a.fux, td = a.fdx;
  if (a.fd_2d) {
    if (u == 2 && tu <= 12) return launch_blocked_instance<scalar_t, CfgR22>(a, stream);
    return launch_blocked_instance<scalar_t, CfgR42>(a, stream);
  }
  if (a.fu_2d) {
    if (d == 2 && td <= 12) return launch_blocked_instance<scalar_t, CfgR22T>(a, stream);
    return launch_blocked_instance<scalar_t, CfgR24T>(a, stream);
  }
  if (u == 2 && d == 2 && tu <= 12 && td <= 12) return launch_blocked_instance<scalar_t, CfgT22>(a, stream);
  if (u == 4 && d == 2 && tu <= 24 && td <= 12) return launch_blocked_instance<scalar_t, CfgT42>(a, stream);
  if (u == 2 && d == 4 && tu <= 12 && td <= 24) return launch_blocked_instance<scalar_t, CfgT24>(a, stream);
  if (u == 1 && d == 1 && tu == 1 && td == 1) return launch_blocked_instance<scalar_t, CfgT11>(a, stream);
  bool handled = false;
  const cudaError_t err = launch_blocked_general<scalar_t>(a, stream, &handled);
  return handled ? err : cudaErrorInvalidValue;  // unreachable when filtered_lrelu_blocked_covers(a)
}

}  // namespace

// Must agree with launch_blocked: a covered 2-D call is one of the four 2-D instances.
bool filtered_lrelu_blocked_covers(const FusedArgs& a) {
  const bool dtype_ok = a.dtype == DType::kHalf || a.dtype == DType::kFloat || a.dtype == DType::kDouble;
  if (!dtype_ok || a.fux != a.fuy || a.fdx != a.fdy) return false;
  const int u = a.up, d = a.down, tu = a.fux, td = a.fdx;
  if (a.fu_2d && a.fd_2d) return false;
  if (a.fd_2d) return d == 2 && td <= 12 && ((u == 2 && tu <= 12) || (u == 4 && tu <= 24));
  if (a.fu_2d) return u == 2 && tu <= 12 && ((d == 2 && td <= 12) || (d == 4 && td <= 24));
  return factor_ok(u) && factor_ok(d) && tu <= 8 * u && td <= 8 * d;
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
