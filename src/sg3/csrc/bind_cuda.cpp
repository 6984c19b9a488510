// Host side of the CUDA extension sg3_ops_cuda: the functions of ops.h for CUDA tensors (argument
// checks, filter preparation, allocation, stream) and the Python bindings. The kernels live in *.cu and
// are reached through the plain launchers of cuda_launch.cuh, so nvcc never parses the PyTorch headers.
// Copyright 2026 the sg3 authors. Apache-2.0.
#define SG3_OPS_NAMESPACE sg3cuda
#include "ops.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

#include "cuda_launch.cuh"

namespace sg3cuda {
namespace {

void check_cuda(const at::Tensor& t, const char* op, const char* name, const at::Tensor* ref = nullptr) {
  TORCH_CHECK(t.defined(), "sg3_ops_cuda.", op, ": argument '", name, "' is undefined");
  TORCH_CHECK(t.is_cuda(), "sg3_ops_cuda.", op, ": argument '", name, "' must be a CUDA tensor, got device ",
              t.device());
  if (ref != nullptr)
    TORCH_CHECK(t.device() == ref->device(), "sg3_ops_cuda.", op, ": argument '", name, "' is on ", t.device(),
                " but the main input is on ", ref->device(), "; all tensors must be on the same device");
}

DType dtype_of(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kHalf:
      return DType::kHalf;
    case at::kBFloat16:
      return DType::kBFloat16;
    case at::kFloat:
      return DType::kFloat;
    case at::kDouble:
      return DType::kDouble;
    default:
      TORCH_CHECK(false, "sg3_ops_cuda.", op, ": argument '", name, "' has dtype ", t.scalar_type(),
                  "; accepted: float16, bfloat16, float32, float64");
  }
  return DType::kFloat;
}

at::ScalarType compute_type(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

int to_int(int64_t v, const char* op, const char* what) {
  TORCH_CHECK(v >= INT32_MIN && v <= INT32_MAX, "sg3_ops_cuda.", op, ": ", what, " = ", v,
              " does not fit the kernels' 32-bit indexing");
  return static_cast<int>(v);
}

// x must be [N, C, H, W] whose every plane and stride fits 32-bit indexing.
void check_image(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(x.dim() == 4, "sg3_ops_cuda.", op, ": argument '", name, "' must be [N, C, H, W], got shape ",
              x.sizes());
  for (int d = 0; d < 4; ++d) {
    to_int(x.size(d), op, "a size of x");
    to_int(x.stride(d) * std::max<int64_t>(x.size(d) - 1, 0), op, "the extent of x along one axis");
  }
}

// A filter of ops.h (1-D [taps] or 2-D [th, tw], float32/float64 = compute dtype) in correlation orientation.
at::Tensor oriented_taps(const at::Tensor& f, const at::Tensor& x, bool flip, double gain_1d, double gain_2d,
                         const char* op, const char* name) {
  check_cuda(f, op, name, &x);
  TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "sg3_ops_cuda.", op, ": argument '", name,
              "' must be 1-D [taps] or 2-D [th, tw], got shape ", f.sizes());
  TORCH_CHECK(f.numel() >= 1, "sg3_ops_cuda.", op, ": argument '", name, "' is empty");
  TORCH_CHECK(f.scalar_type() == compute_type(x), "sg3_ops_cuda.", op, ": argument '", name, "' has dtype ",
              f.scalar_type(), "; expected ", compute_type(x), " for data of dtype ", x.scalar_type());
  at::Tensor g = flip ? f : f.flip(f.dim() == 1 ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 1});
  const double gain = f.dim() == 1 ? gain_1d : gain_2d;
  if (gain != 1.0) g = g * gain;
  return g.contiguous();
}

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err != cudaErrorInvalidConfiguration, "sg3_ops_cuda.", op,
              ": no tile of this configuration fits the GPU's shared memory (filters or factors too large); "
              "use impl='ref'");
  TORCH_CHECK(err == cudaSuccess, "sg3_ops_cuda.", op, ": kernel launch failed: ", cudaGetErrorString(err));
}

int64_t out_len(int64_t n, int64_t up, int64_t down, int64_t p0, int64_t p1, int64_t taps) {
  const int64_t len = n * up + p0 + p1 - (taps - 1);
  return len < 1 ? 0 : (len + down - 1) / down;
}

// The image geometry shared by UpfirdnArgs and FusedArgs: x, its strides, sizes, output size, leading padding.
template <typename Args>
void fill_image_geometry(Args& a, const at::Tensor& x, const char* op, int64_t padx0, int64_t pady0, int64_t OH,
                         int64_t OW) {
  a.x = x.data_ptr();
  a.sx_n = x.stride(0);
  a.sx_c = x.stride(1);
  a.sx_h = x.stride(2);
  a.sx_w = x.stride(3);
  a.N = to_int(x.size(0), op, "N");
  a.C = to_int(x.size(1), op, "C");
  a.H = to_int(x.size(2), op, "H");
  a.W = to_int(x.size(3), op, "W");
  a.OH = to_int(OH, op, "output height");
  a.OW = to_int(OW, op, "output width");
  a.padx0 = to_int(padx0, op, "padx0");
  a.pady0 = to_int(pady0, op, "pady0");
}

}  // namespace

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                     int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip,
                     double gain) {
  const char* op = "upfirdn2d";
  check_cuda(x, op, "x");
  check_image(x, op, "x");
  const DType dt = dtype_of(x, op, "x");
  TORCH_CHECK(f.dim() == 2, "sg3_ops_cuda.upfirdn2d: argument 'f' must be 2-D [fh, fw], got shape ", f.sizes());
  const at::Tensor g = oriented_taps(f, x, flip, gain, gain, op, "f");
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1,
              "sg3_ops_cuda.upfirdn2d: up/down factors must be >= 1, got up (", upx, ", ", upy, "), down (",
              downx, ", ", downy, ")");
  const int64_t OH = out_len(x.size(2), upy, downy, pady0, pady1, g.size(0));
  const int64_t OW = out_len(x.size(3), upx, downx, padx0, padx1, g.size(1));
  TORCH_CHECK(OH >= 1 && OW >= 1, "sg3_ops_cuda.upfirdn2d: padding [", padx0, ", ", padx1, ", ", pady0, ", ",
              pady1, "] and filter ", f.sizes(), " leave no output for x of shape ", x.sizes());
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty({x.size(0), x.size(1), OH, OW}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (y.numel() == 0) return y;
  if (x.numel() == 0) return y.zero_();  // H or W = 0: padding alone makes the output (zeros), as sg3_ops_cpu
  UpfirdnArgs a{};
  fill_image_geometry(a, x, op, padx0, pady0, OH, OW);
  a.y = y.data_ptr();
  a.g = g.data_ptr();
  a.upx = to_int(upx, op, "upx");
  a.upy = to_int(upy, op, "upy");
  a.downx = to_int(downx, op, "downx");
  a.downy = to_int(downy, op, "downy");
  a.fh = to_int(g.size(0), op, "filter height");
  a.fw = to_int(g.size(1), op, "filter width");
  a.dtype_in = a.dtype_out = dt;
  check_launch(launch_upfirdn2d(a, at::cuda::getCurrentCUDAStream()), op);
  return y;
}

at::Tensor bias_act(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy, int64_t grad, int64_t dim,
                    int64_t act, double alpha, double gain, double clamp) {
  const char* op = "bias_act";
  check_cuda(x, op, "x");
  const DType dt = dtype_of(x, op, "x");
  TORCH_CHECK(x.is_contiguous(), "sg3_ops_cuda.bias_act: argument 'x' must be contiguous, got strides ",
              x.strides());
  TORCH_CHECK(grad >= 0 && grad <= 3, "sg3_ops_cuda.bias_act: 'grad' must be 0, 1, 2 or 3, got ", grad);
  TORCH_CHECK(act >= 1 && act <= 9, "sg3_ops_cuda.bias_act: 'act' must be an activation code in [1, 9], got ", act);
  TORCH_CHECK(grad != 3 || act <= 3,
              "sg3_ops_cuda.bias_act: grad 3 (derivative from the output) needs act 1, 2 or 3 (linear, relu, lrelu), "
              "got ", act);
  TORCH_CHECK(x.dim() == 0 ? dim == 0 : (dim >= 0 && dim < x.dim()), "sg3_ops_cuda.bias_act: 'dim' = ", dim,
              " is out of range for x of shape ", x.sizes());
  const bool has_b = b.defined() && b.numel() > 0;
  if (has_b) {
    check_cuda(b, op, "b", &x);
    TORCH_CHECK(b.scalar_type() == x.scalar_type(), "sg3_ops_cuda.bias_act: argument 'b' has dtype ",
                b.scalar_type(), " but x has ", x.scalar_type(), "; they must match");
    TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "sg3_ops_cuda.bias_act: argument 'b' must have shape [",
                x.size(dim), "] (x.shape[dim]), got ", b.sizes());
  }
  const bool has_dy = dy.defined() && dy.numel() > 0;
  if (grad > 0 && x.numel() > 0) {
    TORCH_CHECK(has_dy, "sg3_ops_cuda.bias_act: argument 'dy' is required for grad = ", grad);
    check_cuda(dy, op, "dy", &x);
    TORCH_CHECK(dy.scalar_type() == x.scalar_type() && dy.sizes() == x.sizes(),
                "sg3_ops_cuda.bias_act: argument 'dy' must match x (", x.scalar_type(), " ", x.sizes(), "), got ",
                dy.scalar_type(), " ", dy.sizes());
  }
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
  if (x.numel() == 0) return y;
  const at::Tensor bc = has_b ? b.contiguous() : b;
  const at::Tensor dyc = (grad > 0) ? dy.contiguous() : dy;
  int64_t inner = 1;
  for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
  BiasActArgs a{};
  a.x = x.data_ptr();
  a.b = has_b ? bc.data_ptr() : nullptr;
  a.dy = grad > 0 ? dyc.data_ptr() : nullptr;
  a.y = y.data_ptr();
  a.numel = x.numel();
  a.inner = inner;
  a.channels = x.dim() > 0 ? x.size(dim) : 1;
  a.grad = static_cast<int>(grad);
  a.act = static_cast<int>(act);
  a.alpha = alpha;
  a.gain = gain;
  a.clamp = clamp;
  a.dtype = dt;
  check_launch(launch_bias_act(a, at::cuda::getCurrentCUDAStream()), op);
  return y;
}

namespace {

// Common part of the fused forward and backward calls.
struct FusedCall {
  at::Tensor gu, gd;  // oriented taps (up filter with its gain)
  FusedArgs a{};
};

void fill_geometry(FusedCall& c, const at::Tensor& x, const char* op, int64_t up, int64_t down, int64_t padx0,
                   int64_t pady0, int64_t OH, int64_t OW) {
  FusedArgs& a = c.a;
  fill_image_geometry(a, x, op, padx0, pady0, OH, OW);
  a.up = to_int(up, op, "up");
  a.down = to_int(down, op, "down");
  a.fu = c.gu.data_ptr();
  a.fd = c.gd.data_ptr();
  a.fu_2d = c.gu.dim() == 2;
  a.fd_2d = c.gd.dim() == 2;
  a.fux = to_int(c.gu.size(-1), op, "up filter width");
  a.fuy = to_int(c.gu.size(0), op, "up filter height");
  a.fdx = to_int(c.gd.size(-1), op, "down filter width");
  a.fdy = to_int(c.gd.size(0), op, "down filter height");
  a.dtype = dtype_of(x, op, "x");
}

int64_t sign_row_bytes(int64_t wz) { return (wz + 15) / 16 * 4; }

}  // namespace

namespace {

int kernel_code(int64_t kernel, const char* op) {
  TORCH_CHECK(kernel == kTiledKernel || kernel == kBlockedKernel, "sg3_ops_cuda.", op, ": 'kernel' = ", kernel,
              " is not a filtered_lrelu kernel variant; accepted: 0 (tiled), 1 (blocked)");
  return static_cast<int>(kernel);
}

}  // namespace

// filtered_lrelu_fwd of ops.h with a kernel variant (FlreluKernel: 0 tiled, 1 blocked; docs/gpu.md).
std::tuple<at::Tensor, at::Tensor> filtered_lrelu_fwd_variant(const at::Tensor& x, const at::Tensor& fu,
                                                              const at::Tensor& fd, const at::Tensor& b, int64_t up,
                                                              int64_t down, int64_t padx0, int64_t padx1,
                                                              int64_t pady0, int64_t pady1, double gain, double slope,
                                                              double clamp, bool flip, bool write_signs,
                                                              int64_t kernel) {
  const char* op = "filtered_lrelu_fwd";
  check_cuda(x, op, "x");
  check_image(x, op, "x");
  dtype_of(x, op, "x");
  TORCH_CHECK(up >= 1 && down >= 1, "sg3_ops_cuda.filtered_lrelu_fwd: 'up' and 'down' must be >= 1, got ", up, ", ",
              down);
  FusedCall c;
  c.gu = oriented_taps(fu, x, flip, double(up), double(up * up), op, "fu");
  c.gd = oriented_taps(fd, x, flip, 1.0, 1.0, op, "fd");
  const bool has_b = b.defined() && b.numel() > 0;
  if (has_b) {
    check_cuda(b, op, "b", &x);
    TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(1) && b.scalar_type() == x.scalar_type(),
                "sg3_ops_cuda.filtered_lrelu_fwd: argument 'b' must be [", x.size(1), "] of dtype ", x.scalar_type(),
                ", got ", b.scalar_type(), " ", b.sizes());
  }
  const int64_t OH = out_len(x.size(2), up, down, pady0, pady1, c.gu.size(0) + c.gd.size(0) - 1);
  const int64_t OW = out_len(x.size(3), up, down, padx0, padx1, c.gu.size(-1) + c.gd.size(-1) - 1);
  TORCH_CHECK(OH >= 1 && OW >= 1, "sg3_ops_cuda.filtered_lrelu_fwd: padding [", padx0, ", ", padx1, ", ", pady0, ", ",
              pady1, "] and filters leave no output for x of shape ", x.sizes());
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty({x.size(0), x.size(1), OH, OW}, x.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t hz = (OH - 1) * down + c.gd.size(0), wz = (OW - 1) * down + c.gd.size(-1);
  at::Tensor si = write_signs ? at::empty({x.size(0), x.size(1), hz, sign_row_bytes(wz)}, x.options().dtype(at::kByte))
                              : at::empty({0}, x.options().dtype(at::kByte));
  if (x.numel() == 0) return {y.zero_(), si.zero_()};  // no samples: z = 0 everywhere (no empty-grid launch)
  const at::Tensor bc = has_b ? b.contiguous() : b;
  fill_geometry(c, x, op, up, down, padx0, pady0, OH, OW);
  c.a.b = has_b ? bc.data_ptr() : nullptr;
  c.a.y = y.data_ptr();
  c.a.gain = gain;
  c.a.slope = slope;
  c.a.clamp = clamp;
  c.a.sign_mode = write_signs ? kWriteSigns : kNoSigns;
  c.a.signs = write_signs ? si.data_ptr() : nullptr;
  c.a.sign_h = to_int(hz, op, "z-grid height");
  c.a.sign_w = to_int(wz, op, "z-grid width");
  c.a.sign_row_bytes = to_int(sign_row_bytes(wz), op, "sign row bytes");
  c.a.sign_x = c.a.sign_y = 0;
  c.a.kernel = kernel_code(kernel, op);
  check_launch(launch_filtered_lrelu(c.a, at::cuda::getCurrentCUDAStream()), op);
  return {y, si};
}

std::tuple<at::Tensor, at::Tensor> filtered_lrelu_fwd(const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd,
                                                      const at::Tensor& b, int64_t up, int64_t down, int64_t padx0,
                                                      int64_t padx1, int64_t pady0, int64_t pady1, double gain,
                                                      double slope, double clamp, bool flip, bool write_signs) {
  return filtered_lrelu_fwd_variant(x, fu, fd, b, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip,
                                    write_signs, kTiledKernel);
}

// filtered_lrelu_bwd of ops.h with a kernel variant (as filtered_lrelu_fwd_variant).
at::Tensor filtered_lrelu_bwd_variant(const at::Tensor& dy, const at::Tensor& fu, const at::Tensor& fd,
                                      const at::Tensor& si, int64_t up, int64_t down, int64_t padx0, int64_t padx1,
                                      int64_t pady0, int64_t pady1, int64_t in_h, int64_t in_w, double gain,
                                      double slope, bool flip, int64_t kernel) {
  (void)padx1;  // the transposed call's geometry is fixed by the output size in_h x in_w
  (void)pady1;
  const char* op = "filtered_lrelu_bwd";
  check_cuda(dy, op, "dy");
  check_image(dy, op, "dy");
  dtype_of(dy, op, "dy");
  TORCH_CHECK(up >= 1 && down >= 1, "sg3_ops_cuda.filtered_lrelu_bwd: 'up' and 'down' must be >= 1, got ", up, ", ",
              down);
  TORCH_CHECK(in_h >= 1 && in_w >= 1, "sg3_ops_cuda.filtered_lrelu_bwd: 'in_h'/'in_w' must be >= 1, got ", in_h,
              ", ", in_w);
  // Transposed configuration: up <-> down, filters swapped and reversed (flip toggled), the up filter's
  // gain staying with the (now) down filter; padding chosen so output i reads z sample i*up + t - (fu - 1 - p0).
  FusedCall c;
  c.gu = oriented_taps(fd, dy, !flip, 1.0, 1.0, op, "fd");
  c.gd = oriented_taps(fu, dy, !flip, double(up), double(up * up), op, "fu");
  const int64_t fuw = c.gd.size(-1), fuh = c.gd.size(0), fdw = c.gu.size(-1), fdh = c.gu.size(0);
  const int64_t OH = dy.size(2), OW = dy.size(3);
  const int64_t hz = (OH - 1) * down + fdh, wz = (OW - 1) * down + fdw;
  check_cuda(si, op, "si", &dy);
  TORCH_CHECK(si.scalar_type() == at::kByte && si.dim() == 4 && si.size(0) == dy.size(0) && si.size(1) == dy.size(1) &&
                  si.size(2) == hz && si.size(3) == sign_row_bytes(wz) && si.is_contiguous(),
              "sg3_ops_cuda.filtered_lrelu_bwd: argument 'si' must be the contiguous uint8 sign tensor of the "
              "forward call, shape [",
              dy.size(0), ", ", dy.size(1), ", ", hz, ", ", sign_row_bytes(wz), "], got ", si.scalar_type(), " ",
              si.sizes());
  const c10::cuda::CUDAGuard guard(dy.device());
  at::Tensor dx = at::empty({dy.size(0), dy.size(1), in_h, in_w}, dy.options().memory_format(at::MemoryFormat::Contiguous));
  if (dx.numel() == 0 || dy.numel() == 0) return dx.zero_();  // as sg3_ops_cpu: no empty-grid launch
  fill_geometry(c, dy, op, down, up, fdw - 1 + fuw - 1 - padx0, fdh - 1 + fuh - 1 - pady0, in_h, in_w);
  c.a.b = nullptr;
  c.a.y = dx.data_ptr();
  c.a.gain = gain;
  c.a.slope = slope;
  c.a.clamp = -1.0;
  c.a.sign_mode = kReadSigns;
  c.a.signs = si.data_ptr();
  c.a.sign_h = to_int(hz, op, "z-grid height");
  c.a.sign_w = to_int(wz, op, "z-grid width");
  c.a.sign_row_bytes = to_int(sign_row_bytes(wz), op, "sign row bytes");
  c.a.sign_x = to_int(padx0 - (fuw - 1), op, "sign offset x");
  c.a.sign_y = to_int(pady0 - (fuh - 1), op, "sign offset y");
  c.a.kernel = kernel_code(kernel, op);
  check_launch(launch_filtered_lrelu(c.a, at::cuda::getCurrentCUDAStream()), op);
  return dx;
}

at::Tensor filtered_lrelu_bwd(const at::Tensor& dy, const at::Tensor& fu, const at::Tensor& fd, const at::Tensor& si,
                              int64_t up, int64_t down, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                              int64_t in_h, int64_t in_w, double gain, double slope, bool flip) {
  return filtered_lrelu_bwd_variant(dy, fu, fd, si, up, down, padx0, padx1, pady0, pady1, in_h, in_w, gain, slope,
                                    flip, kTiledKernel);
}

}  // namespace sg3cuda

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  SG3_OPS_DEFINE_BINDINGS(m);
  // CUDA only: the filtered_lrelu calls with a kernel variant argument (sg3/ops/filtered_lrelu.py).
  m.def("filtered_lrelu_fwd_variant", &sg3cuda::filtered_lrelu_fwd_variant, "filtered_lrelu_fwd, kernel variant");
  m.def("filtered_lrelu_bwd_variant", &sg3cuda::filtered_lrelu_bwd_variant, "filtered_lrelu_bwd, kernel variant");
}
