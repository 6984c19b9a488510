// C entry points into the sg3 CUDA launchers for the host emulation (tests/ops/test_cuda_emulated.py).
// Pointers are host memory; the launchers and kernels are the unmodified src/sg3/csrc/*.cu sources.
// Copyright 2026 the sg3 authors. Apache-2.0.
#include "cuda_launch.cuh"

using namespace sg3cuda;

namespace {

// ints: fu_2d fd_2d fux fuy fdx fdy N C H W OH OW up down px0 py0 mode sign_h sign_w row sign_x sign_y dtype
//       kernel (FlreluKernel)
FusedArgs fused_args(const void* x, const void* b, void* y, const void* fu, const void* fd, const int* ints,
                     const int64_t* strides, const double* reals, void* signs) {
  FusedArgs a{};
  a.x = x;
  a.b = b;
  a.y = y;
  a.fu = fu;
  a.fd = fd;
  a.fu_2d = ints[0] != 0;
  a.fd_2d = ints[1] != 0;
  a.fux = ints[2];
  a.fuy = ints[3];
  a.fdx = ints[4];
  a.fdy = ints[5];
  a.N = ints[6];
  a.C = ints[7];
  a.H = ints[8];
  a.W = ints[9];
  a.OH = ints[10];
  a.OW = ints[11];
  a.up = ints[12];
  a.down = ints[13];
  a.padx0 = ints[14];
  a.pady0 = ints[15];
  a.sign_mode = ints[16];
  a.sign_h = ints[17];
  a.sign_w = ints[18];
  a.sign_row_bytes = ints[19];
  a.sign_x = ints[20];
  a.sign_y = ints[21];
  a.dtype = static_cast<DType>(ints[22]);
  a.sx_n = strides[0];
  a.sx_c = strides[1];
  a.sx_h = strides[2];
  a.sx_w = strides[3];
  a.gain = reals[0];
  a.slope = reals[1];
  a.clamp = reals[2];
  a.signs = signs;
  a.kernel = ints[23];
  return a;
}

}  // namespace

extern "C" {

int emu_filtered_lrelu(const void* x, const void* b, void* y, const void* fu, const void* fd, const int* ints,
                       const int64_t* strides, const double* reals, void* signs) {
  return launch_filtered_lrelu(fused_args(x, b, y, fu, fd, ints, strides, reals, signs), nullptr);
}

// 1 when the call described by `ints` (as above; pointers unused) runs the blocked kernel.
int emu_filtered_lrelu_blocked_covers(const int* ints) {
  const int64_t strides[4] = {0, 0, 0, 0};
  const double reals[3] = {0, 0, 0};
  return filtered_lrelu_blocked_covers(fused_args(nullptr, nullptr, nullptr, nullptr, nullptr, ints, strides,
                                                  reals, nullptr))
             ? 1
             : 0;
}

int emu_upfirdn2d(const void* x, void* y, const void* g, const int* ints, const int64_t* strides) {
  // ints: N C H W OH OW upx upy downx downy padx0 pady0 fh fw dtype_in dtype_out
  UpfirdnArgs a{};
  a.x = x;
  a.y = y;
  a.g = g;
  a.N = ints[0];
  a.C = ints[1];
  a.H = ints[2];
  a.W = ints[3];
  a.OH = ints[4];
  a.OW = ints[5];
  a.upx = ints[6];
  a.upy = ints[7];
  a.downx = ints[8];
  a.downy = ints[9];
  a.padx0 = ints[10];
  a.pady0 = ints[11];
  a.fh = ints[12];
  a.fw = ints[13];
  a.dtype_in = static_cast<DType>(ints[14]);
  a.dtype_out = static_cast<DType>(ints[15]);
  a.sx_n = strides[0];
  a.sx_c = strides[1];
  a.sx_h = strides[2];
  a.sx_w = strides[3];
  return launch_upfirdn2d(a, nullptr);
}

int emu_bias_act(const void* x, const void* b, const void* dy, void* y, const int64_t* sizes, const int* ints,
                 const double* reals) {
  // sizes: numel inner channels; ints: grad act dtype; reals: alpha gain clamp
  BiasActArgs a{};
  a.x = x;
  a.b = b;
  a.dy = dy;
  a.y = y;
  a.numel = sizes[0];
  a.inner = sizes[1];
  a.channels = sizes[2];
  a.grad = ints[0];
  a.act = ints[1];
  a.dtype = static_cast<DType>(ints[2]);
  a.alpha = reals[0];
  a.gain = reals[1];
  a.clamp = reals[2];
  return launch_bias_act(a, nullptr);
}

}  // extern "C"
