// Interface between the host wrappers (bind_cuda.cpp, PyTorch tensors and checks) and the CUDA
// kernels (*.cu, no PyTorch headers): plain argument structs and one launcher per op.
// Every launcher enqueues its kernels on `stream` and returns the launch status (cudaGetLastError).
// Pointers are device pointers; filter taps are already in correlation orientation, gains folded in,
// in the compute dtype (float32, or float64 for float64 data).
// Copyright 2026 the sg3 authors. Apache-2.0.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace sg3cuda {

enum class DType : int { kHalf = 0, kBFloat16 = 1, kFloat = 2, kDouble = 3 };

// Shared-memory budget of one block, portable across sm_80 and sm_90 without an opt-in.
constexpr int kSmemBudget = 48 * 1024;

// upfirdn2d, one pass with a 2-D correlation filter g [fh, fw]:
//   y[n, c, j, i] = sum_{ky, kx} g[ky, kx] * u[j*downy + ky, i*downx + kx] (u: zero-inserted, padded x).
struct UpfirdnArgs {
  const void* x;                   // [N, C, H, W] of dtype_in, any strides
  void* y;                         // [N, C, OH, OW] of dtype_out, contiguous
  const void* g;                   // [fh, fw] compute dtype, contiguous
  int64_t sx_n, sx_c, sx_h, sx_w;  // strides of x (elements)
  int N, C, H, W, OH, OW;
  int upx, upy, downx, downy, padx0, pady0;
  int fh, fw;
  DType dtype_in, dtype_out;  // float64 only with float64; otherwise any mix of half/bf16/float
};
cudaError_t launch_upfirdn2d(const UpfirdnArgs& a, cudaStream_t stream);

// bias_act: see ops.h (grad 0: value; 1: first derivative; 2: second derivative; 0 where clamped).
struct BiasActArgs {
  const void* x;   // contiguous
  const void* b;   // [channels] or nullptr
  const void* dy;  // like x, or nullptr (grad == 0)
  void* y;         // like x, contiguous
  int64_t numel, inner, channels;  // inner = product of the sizes after the bias axis
  int grad, act;
  double alpha, gain, clamp;  // clamp < 0: none
  DType dtype;
};
cudaError_t launch_bias_act(const BiasActArgs& a, cudaStream_t stream);

// Fused filtered_lrelu: bias -> polyphase upsample -> lrelu * gain, clamp -> FIR + decimation.
// Sign codes (2 bits per z-grid sample: bit0 negative, bit1 clamped), 4 samples per byte, rows of
// `sign_row_bytes` bytes, planes of sign_h * sign_row_bytes bytes.
enum SignMode : int { kNoSigns = 0, kWriteSigns = 1, kReadSigns = 2 };
// Kernel variant (docs/gpu.md): tiled (default, every configuration) or blocked (register-blocked passes
// for separable filters with up, down in {1, 2, 4}; other calls run the tiled kernel).
enum FlreluKernel : int { kTiledKernel = 0, kBlockedKernel = 1 };
struct FusedArgs {
  const void* x;                   // [N, C, H, W], any strides
  const void* b;                   // [C] of the same dtype, or nullptr
  void* y;                         // [N, C, OH, OW], contiguous, same dtype as x
  const void* fu;                  // up taps: [fux] (separable: same taps along y) or [fuy, fux]
  const void* fd;                  // down taps: [fdx] or [fdy, fdx]
  bool fu_2d, fd_2d;
  int fux, fuy, fdx, fdy;          // taps per axis
  int64_t sx_n, sx_c, sx_h, sx_w;  // strides of x (elements)
  int N, C, H, W, OH, OW;
  int up, down, padx0, pady0;
  double gain, slope, clamp;  // clamp < 0: none
  int sign_mode;
  void* signs;                 // uint8 sign tensor (written or read), nullptr for kNoSigns
  int sign_h, sign_w;          // recorded region in samples (rows, samples per row)
  int sign_row_bytes;          // bytes per row (>= ceil(sign_w / 4))
  int sign_x, sign_y;          // offset of this call's z grid inside the recorded region
  DType dtype;
  int kernel;  // FlreluKernel
};
cudaError_t launch_filtered_lrelu(const FusedArgs& a, cudaStream_t stream);
// Whether a call with kernel == kBlockedKernel runs the blocked kernel (false: it runs the tiled one).
bool filtered_lrelu_blocked_covers(const FusedArgs& a);

}  // namespace sg3cuda
