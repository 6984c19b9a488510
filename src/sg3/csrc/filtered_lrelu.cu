// Fused filtered_lrelu on CUDA: tile selection and the choice of kernel instance.
//
// Specialised instances (factors and tap bounds known at compile time, inner loops unrolled) cover the
// configurations StyleGAN3 uses in its forward and backward passes: up/down (2, 2) with 12/12 taps,
// (4, 2) with 24/12 taps and its transpose (2, 4) with 12/24 taps, and (1, 1) without filters (ToRGB);
// further instances take every up/down in {1, 2, 4} with filters of up to 8 * factor taps. Everything
// else (other factors, longer filters, float64) runs the generic instance of the same tiled kernel.
// With FusedArgs::kernel == kBlockedKernel, the calls that filtered_lrelu_blocked_covers run the blocked
// variant instead (filtered_lrelu_blocked.cuh).
// Copyright 2026 the sg3 authors. Apache-2.0.
#include "filtered_lrelu_blocked.cuh"

namespace sg3cuda {
namespace {

// Specialised instances for float32-compute storage types (half, float).
template <typename scalar_t>
cudaError_t launch_fast(const FusedArgs& a, cudaStream_t stream, bool* handled) {
  *handled = false;
  if (a.fux != a.fuy || a.fdx != a.fdy) return cudaSuccess;  // non-square 2-D filters: generic
  *handled = true;
  const int u = a.up, d = a.down, tu = a.fux, td = a.fdx;
  if (u == 2 && d == 2 && tu == 12 && td == 12) return launch_instance<scalar_t, 2, 2, 12, 12>(a, stream);
  if (u == 4 && d == 2 && tu == 24 && td == 12) return launch_instance<scalar_t, 4, 2, 24, 12>(a, stream);
  if (u == 2 && d == 4 && tu == 12 && td == 24) return launch_instance<scalar_t, 2, 4, 12, 24>(a, stream);
  if (u == 1 && d == 1 && tu == 1 && td == 1) return launch_instance<scalar_t, 1, 1, 1, 1>(a, stream);
  return launch_fast_general<scalar_t>(a, stream, handled);
}

}  // namespace

cudaError_t launch_filtered_lrelu(const FusedArgs& a, cudaStream_t stream) {
  if (static_cast<int64_t>(a.N) * a.C * a.OH * a.OW == 0) return cudaSuccess;
  if (a.sign_mode == kWriteSigns && (a.sign_x % 4 != 0)) return cudaErrorInvalidValue;
  if (a.kernel == kBlockedKernel && filtered_lrelu_blocked_covers(a)) return launch_filtered_lrelu_blocked(a, stream);
  switch (a.dtype) {
    case DType::kHalf: {
      bool handled = false;
      const cudaError_t err = launch_fast<__half>(a, stream, &handled);
      return handled ? err : launch_instance<__half, 0, 0, 0, 0>(a, stream);
    }
    case DType::kFloat: {
      bool handled = false;
      const cudaError_t err = launch_fast<float>(a, stream, &handled);
      return handled ? err : launch_instance<float, 0, 0, 0, 0>(a, stream);
    }
    case DType::kBFloat16:
      return launch_instance<__nv_bfloat16, 0, 0, 0, 0>(a, stream);
    case DType::kDouble:
      return launch_instance<double, 0, 0, 0, 0>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace sg3cuda
