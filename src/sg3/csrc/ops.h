// sg3 low-level ops: the C++ contract shared by the two compiled extensions.
// Copyright 2026 the sg3 authors. Apache-2.0.
//
// Both extensions implement exactly these functions with exactly these signatures:
//   sg3_ops_cpu   from csrc/*_cpu.cpp + csrc/bind_cpu.cpp   (namespace sg3cpu)
//   sg3_ops_cuda  from csrc/*.cu      + csrc/bind_cuda.cpp  (namespace sg3cuda)
// A translation unit defines SG3_OPS_NAMESPACE (sg3cpu or sg3cuda) before including this header, so the
// compiler checks that each extension's definitions match these declarations, and the bind file calls
// SG3_OPS_DEFINE_BINDINGS(m) inside PYBIND11_MODULE, so both modules export the same names. The Python
// side (src/sg3/ops/*.py) owns argument checking, autograd and double backward; it calls these functions
// positionally and dispatches on the tensor's device only.
//
// Common conventions
// - Images are [N, C, H, W]; x is the width axis (last), y the height axis.
// - dtypes: sg3_ops_cpu receives float32 or float64 tensors (the Python side upcasts float16/bfloat16 and
//   casts the result back); sg3_ops_cuda receives float16, bfloat16, float32 or float64 and computes in
//   float32 (float64 for float64). Outputs have the dtype of the main input (x or dy).
// - Filters are float32, or float64 when the main input is float64, contiguous, on the main input's device.
//   They are passed as stored by the user ("convolution orientation"); the kernel applies `flip`:
//   flip == false means true convolution, i.e. the kernel correlates with the filter flipped along every
//   axis; flip == true means plain correlation. Gains are applied by the kernel as stated per function.
// - Padding is relative to the upsampled signal, [x0, x1, y0, y1]; negative values crop.
// - Inputs arrive contiguous (NCHW); implementations may additionally accept other strides.
// - Outputs are new contiguous NCHW tensors. Invalid arguments raise (TORCH_CHECK) with a message that
//   names the argument, the value and what is accepted.
//
// Per axis, with g the correlation taps (g = f reversed unless flip) and u the zero-inserted padded input
//   u[m] = x[(m - p0) / up] if (m - p0) % up == 0 and 0 <= (m - p0) / up < n, else 0,
// one "upfirdn" is   y[j] = sum_k g[k] * u[j * down + k],   j in [0, (n*up + p0 + p1 - (taps-1) + down-1) / down).
// Implementations are polyphase: they never multiply inserted zeros and never compute discarded samples.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <tuple>

#ifndef SG3_OPS_NAMESPACE
#error "define SG3_OPS_NAMESPACE (sg3cpu or sg3cuda) before including ops.h"
#endif

namespace SG3_OPS_NAMESPACE {

// upfirdn2d (spec 2.1): y = upfirdn along x and along y with the 2-D filter f.
//   x     [N, C, H, W]
//   f     [fh, fw] 2-D filter; y[n,c,j,i] = gain * sum_{ky,kx} g[ky,kx] * u[j*downy + ky, i*downx + kx].
//         The Python side passes a separable (1-D) filter as two calls, f = [1, taps] (x pass, upy = downy = 1,
//         no y padding) and f = [taps, 1] (y pass), each with gain sqrt(gain).
//   upx, upy, downx, downy >= 1; padx0, padx1, pady0, pady1 as above; flip as above; gain multiplies f.
//   returns y [N, C, (H*upy + pady0 + pady1 - fh + downy) / downy, (W*upx + padx0 + padx1 - fw + downx) / downx]
// The Python autograd Function expresses the gradient as upfirdn2d again (up/down swapped, flip toggled,
// padding [fw - p0 - 1, n*up - out*down + p0 - up + 1] per axis), which also gives double backward.
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                     int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip,
                     double gain);

// bias_act (spec 2.2), elementwise with v = x + b (b broadcast along `dim`; b empty = no bias):
//   grad == 0: returns clampc(gain * act(v))                         (dy ignored, may be empty)
//   grad == 1: returns dy * gain * act'(v)  * m                      (first derivative w.r.t. x)
//   grad == 2: returns dy * gain * act''(v) * m                      (second derivative w.r.t. x)
//   grad == 3: returns dy * gain * act'(v)  * my                     (first derivative, x = the forward output)
// where clampc(t) = min(max(t, -clamp), clamp) if clamp >= 0 (clamp < 0: no clamping) and
// m = 1 if clamp < 0 or |gain * act(v)| < clamp, else 0 (as torch.clamp: no gradient at the bounds either).
// grad == 3 reads the derivative off the forward's output y (passed as x, b empty, so v = y): only for the
// piecewise-linear acts 1-3 with gain > 0 (and alpha >= 0), where y > 0 exactly where x + b > 0; there
// my = 1 if clamp < 0 or |y| < clamp, else 0 (the same mask as m). The backward then needs y, which the
// next layer keeps anyway, instead of the pre-activation x + b.
//   x     any rank, contiguous; b [x.size(dim)] or empty; dy like x (grad >= 1) or empty (grad == 0).
//   act   1 linear, 2 relu, 3 lrelu (negative slope alpha), 4 tanh, 5 sigmoid, 6 elu (alpha 1),
//         7 selu (scale 1.0507009873554805, alpha 1.6732632423543772), 8 softplus (log1p(exp(v)), = v for
//         v > 20), 9 swish (v * sigmoid(v)).
//   Derivative conventions at kinks (to match PyTorch autograd): relu'(v) = (v > 0); lrelu'(v) = v > 0 ? 1 : alpha;
//   elu'(v) = v > 0 ? 1 : exp(v) but elu''(0) = 0 (the linear branch); selu likewise;
//   softplus'(v) = v > 20 ? 1 : sigmoid(v).
// The bias gradient is computed by the Python side (sum of the grad == 1 result over all axes but dim).
at::Tensor bias_act(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy, int64_t grad, int64_t dim,
                    int64_t act, double alpha, double gain, double clamp);

// filtered_lrelu forward (spec 2.3), fused. With fu2 = fu (2-D) or the outer product fu x fu (1-D fu), and
// fd2 likewise:
//   u   = zero-inserted (factor up) and padded (padx0..pady1) image of x + b     (b [C] or empty = no bias)
//   z   = up^2 * correlate(u, fu2 taps)  evaluated only on the "z grid"  Y in [0, Hz), X in [0, Wz),
//         Hz = (OH - 1) * down + fdh,  Wz = (OW - 1) * down + fdw   (the samples the downsampler reads)
//   a   = gain * lrelu(z, slope), then clamped to [-clamp, clamp] if clamp >= 0
//   y   = correlate(a, fd2 taps) at every down-th sample:  y[j, i] = sum fd2g[ky, kx] * a[j*down + ky, i*down + kx]
//   OH  = (H*up + pady0 + pady1 - (fuh - 1) - (fdh - 1) + down - 1) / down, OW likewise.
//   fu, fd: 1-D [taps] (separable: the same taps along x and y) or 2-D [th, tw]; identity = ones([1]).
//           fu gets the gain up^2 in total (1-D: up per axis), fd gain 1. flip applies to both.
//   x [N, C, H, W]; b [C] (dtype of x) or empty; up, down >= 1; gain, slope any; clamp < 0 = none.
//   returns (y [N, C, OH, OW], si)
//   si: the "sign" tensor, uint8, produced only when write_signs (else an empty uint8 tensor). It records for
//       every z-grid sample whether z < 0 (lrelu slope applied) and whether the activation was clamped.
//       Its size and layout are private to each extension (only that extension's filtered_lrelu_bwd reads it):
//       sg3_ops_cpu packs 2 bits per z-grid sample (bit0 = negative, bit1 = clamped; 4 samples per byte) in a
//       per-row polyphase order, shape [N, C, Hz, Lx * nbz / 4], Lx = lcm(up, down), nbz >= ceil(Wz / Lx) a
//       multiple of 8; sg3_ops_cuda packs 2 bits per sample too, in its own row layout.
std::tuple<at::Tensor, at::Tensor> filtered_lrelu_fwd(const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd,
                                                      const at::Tensor& b, int64_t up, int64_t down, int64_t padx0,
                                                      int64_t padx1, int64_t pady0, int64_t pady1, double gain,
                                                      double slope, double clamp, bool flip, bool write_signs);

// filtered_lrelu backward for x (the filters get no gradient; the Python side computes db = dx.sum([0, 2, 3])).
//   dy [N, C, OH, OW] (the forward's output shape), fu, fd, up, down, padding, flip: as in the forward call;
//   si: the forward's sign tensor; in_h, in_w: H and W of the forward's x; gain, slope: as in the forward.
//   da  = transpose of the downsampling step applied to dy, on the z grid
//   dz  = da * (gain if z >= 0 and not clamped; gain * slope if z < 0 and not clamped; 0 if clamped)
//   dx  = transpose of the upsampling step (including the up^2 gain) applied to dz, cropped to [in_h, in_w]
//   returns dx [N, C, in_h, in_w] with the dtype of dy.
at::Tensor filtered_lrelu_bwd(const at::Tensor& dy, const at::Tensor& fu, const at::Tensor& fd, const at::Tensor& si,
                              int64_t up, int64_t down, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                              int64_t in_h, int64_t in_w, double gain, double slope, bool flip);

}  // namespace SG3_OPS_NAMESPACE

// Python bindings, identical for both extensions (use inside PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)).
#define SG3_OPS_DEFINE_BINDINGS(m)                                                                        \
  do {                                                                                                    \
    (m).def("upfirdn2d", &SG3_OPS_NAMESPACE::upfirdn2d, "upsample, pad, FIR filter, downsample (2-D f)"); \
    (m).def("bias_act", &SG3_OPS_NAMESPACE::bias_act, "bias + activation + gain + clamp, or derivatives");  \
    (m).def("filtered_lrelu_fwd", &SG3_OPS_NAMESPACE::filtered_lrelu_fwd, "fused filtered leaky ReLU");    \
    (m).def("filtered_lrelu_bwd", &SG3_OPS_NAMESPACE::filtered_lrelu_bwd, "its gradient w.r.t. x");       \
  } while (0)
