// bias_act on CPU (spec 2.2; contract in ops.h): one fused pass for the value or its derivatives.
// Copyright 2026 the sg3 authors. Apache-2.0.
#define SG3_OPS_NAMESPACE sg3cpu
#include <ATen/Parallel.h>

#include <cmath>

#include "ops.h"

namespace sg3cpu {
namespace {

enum Act { kLinear = 1, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

template <typename T>
inline T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

// Activation value (D == 0), first (D == 1) or second (D == 2) derivative at v.
template <int ACT, int D, typename T>
inline T act(T v, T alpha) {
  if constexpr (ACT == kLinear) {
    return D == 0 ? v : (D == 1 ? T(1) : T(0));
  } else if constexpr (ACT == kRelu) {
    return D == 0 ? (v > T(0) ? v : T(0)) : (D == 1 ? (v > T(0) ? T(1) : T(0)) : T(0));
  } else if constexpr (ACT == kLrelu) {
    return D == 0 ? (v > T(0) ? v : v * alpha) : (D == 1 ? (v > T(0) ? T(1) : alpha) : T(0));
  } else if constexpr (ACT == kTanh) {
    const T t = std::tanh(v);
    return D == 0 ? t : (D == 1 ? T(1) - t * t : T(-2) * t * (T(1) - t * t));
  } else if constexpr (ACT == kSigmoid) {
    const T s = sigmoid(v);
    return D == 0 ? s : (D == 1 ? s * (T(1) - s) : s * (T(1) - s) * (T(1) - T(2) * s));
  } else if constexpr (ACT == kElu) {
    if (v > T(0)) return D == 0 ? v : (D == 1 ? T(1) : T(0));
    const T e = std::exp(v);
    return D == 0 ? e - T(1) : e;
  } else if constexpr (ACT == kSelu) {
    const T s = T(kSeluScale), a = T(kSeluAlpha);
    if (v > T(0)) return D == 0 ? s * v : (D == 1 ? s : T(0));
    const T e = std::exp(v);
    return D == 0 ? s * a * (e - T(1)) : s * a * e;
  } else if constexpr (ACT == kSoftplus) {
    if (v > T(20)) return D == 0 ? v : (D == 1 ? T(1) : T(0));
    const T s = sigmoid(v);
    return D == 0 ? std::log1p(std::exp(v)) : (D == 1 ? s : s * (T(1) - s));
  } else {  // kSwish
    const T s = sigmoid(v);
    return D == 0 ? v * s : (D == 1 ? s * (T(1) + v * (T(1) - s)) : s * (T(1) - s) * (T(2) + v * (T(1) - T(2) * s)));
  }
}

struct Params {
  double alpha, gain, clamp;
};

// One element: v = x + b; returns the op's result for derivative order GRAD.
template <int ACT, int GRAD, bool CLAMP, typename T>
inline T element(T v, T dy, T alpha, T gain, T clamp) {
  if constexpr (GRAD == 0) {
    T y = act<ACT, 0>(v, alpha) * gain;
    if constexpr (CLAMP) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
    return y;
  } else {
    T g = dy * gain * act<ACT, GRAD>(v, alpha);
    if constexpr (CLAMP) {
      const T y = act<ACT, 0>(v, alpha) * gain;
      g = (y > clamp || y < -clamp) ? T(0) : g;
    }
    return g;
  }
}

// x viewed as [outer, C, inner]; b along C (or none).
template <int ACT, int GRAD, bool CLAMP, typename T>
void run(const T* x, const T* b, const T* dy, T* out, int64_t outer, int64_t C, int64_t inner, const Params& p) {
  const T alpha = T(p.alpha), gain = T(p.gain), clamp = T(p.clamp);
  const int64_t rows = outer * C;
  if (inner == 1) {  // bias runs along the contiguous axis: rows of C elements
    at::parallel_for(0, outer, std::max<int64_t>(1, 32768 / std::max<int64_t>(C, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t o = r * C;
        for (int64_t c = 0; c < C; ++c) {
          const T v = x[o + c] + (b ? b[c] : T(0));
          out[o + c] = element<ACT, GRAD, CLAMP>(v, GRAD ? dy[o + c] : T(0), alpha, gain, clamp);
        }
      }
    });
    return;
  }
  at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / inner), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T bias = b ? b[r % C] : T(0);
      const int64_t o = r * inner;
      const T* xr = x + o;
      T* yr = out + o;
      if constexpr (GRAD == 0) {
        for (int64_t i = 0; i < inner; ++i) yr[i] = element<ACT, 0, CLAMP>(xr[i] + bias, T(0), alpha, gain, clamp);
      } else {
        const T* dr = dy + o;
        for (int64_t i = 0; i < inner; ++i) yr[i] = element<ACT, GRAD, CLAMP>(xr[i] + bias, dr[i], alpha, gain, clamp);
      }
    }
  });
}

template <int ACT, typename T>
void dispatch_grad(int64_t grad, bool clamp, const T* x, const T* b, const T* dy, T* out, int64_t outer, int64_t C,
                   int64_t inner, const Params& p) {
#define SG3_BA_CASE(G)                                               \
  if (grad == G) {                                                   \
    if (clamp)                                                       \
      run<ACT, G, true>(x, b, dy, out, outer, C, inner, p);          \
    else                                                             \
      run<ACT, G, false>(x, b, dy, out, outer, C, inner, p);         \
    return;                                                          \
  }
  SG3_BA_CASE(0)
  SG3_BA_CASE(1)
  SG3_BA_CASE(2)
#undef SG3_BA_CASE
}

template <typename T>
void dispatch_act(int64_t act_code, int64_t grad, bool clamp, const T* x, const T* b, const T* dy, T* out,
                  int64_t outer, int64_t C, int64_t inner, const Params& p) {
  switch (act_code) {
    case kLinear: return dispatch_grad<kLinear>(grad, clamp, x, b, dy, out, outer, C, inner, p);
    case kRelu: return dispatch_grad<kRelu>(grad, clamp, x, b, dy, out, outer, C, inner, p);
    case kLrelu: return dispatch_grad<kLrelu>(grad, clamp, x, b, dy, out, outer, C, inner, p);
    case kTanh: return dispatch_grad<kTanh>(grad, clamp, x, b, dy, out, outer, C, inner, p);
    case kSigmoid: return dispatch_grad<kSigmoid>(grad, clamp, x, b, dy, out, outer, C, inner, p);
    case kElu: return dispatch_grad<kElu>(grad, clamp, x, b, dy, out, outer, C, inner, p);
    case kSelu: return dispatch_grad<kSelu>(grad, clamp, x, b, dy, out, outer, C, inner, p);
    case kSoftplus: return dispatch_grad<kSoftplus>(grad, clamp, x, b, dy, out, outer, C, inner, p);
    default: return dispatch_grad<kSwish>(grad, clamp, x, b, dy, out, outer, C, inner, p);
  }
}

}  // namespace

at::Tensor bias_act(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy, int64_t grad, int64_t dim,
                    int64_t act_code, double alpha, double gain, double clamp) {
  TORCH_CHECK(x.device().is_cpu(), "sg3_ops_cpu.bias_act: x must be a CPU tensor, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "sg3_ops_cpu.bias_act: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.dim() >= 1 && dim >= 0 && dim < x.dim(), "sg3_ops_cpu.bias_act: dim must be in [0, ", x.dim(),
              "), got ", dim);
  TORCH_CHECK(grad >= 0 && grad <= 2, "sg3_ops_cpu.bias_act: grad must be 0, 1 or 2, got ", grad);
  TORCH_CHECK(act_code >= kLinear && act_code <= kSwish, "sg3_ops_cpu.bias_act: act must be a code in [1, 9], got ",
              act_code);
  const int64_t C = x.size(dim);
  TORCH_CHECK(b.numel() == 0 || (b.dim() == 1 && b.numel() == C && b.scalar_type() == x.scalar_type()),
              "sg3_ops_cpu.bias_act: b must be empty or 1-D of length ", C, " and dtype ", x.scalar_type(),
              ", got shape ", b.sizes(), " dtype ", b.scalar_type());
  TORCH_CHECK(grad == 0 || (dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type()),
              "sg3_ops_cpu.bias_act: dy must match x (shape ", x.sizes(), ", dtype ", x.scalar_type(), "), got shape ",
              dy.sizes(), " dtype ", dy.scalar_type());
  const auto xc = x.contiguous();
  const auto bc = b.contiguous();
  const auto dyc = grad ? dy.contiguous() : dy;
  auto out = at::empty_like(xc, at::MemoryFormat::Contiguous);
  if (xc.numel() == 0) return out;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < dim; ++i) outer *= xc.size(i);
  for (int64_t i = dim + 1; i < xc.dim(); ++i) inner *= xc.size(i);
  const Params p{alpha, gain, clamp};
  const bool has_clamp = clamp >= 0;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sg3_bias_act_cpu", [&] {
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    const scalar_t* bp = bc.numel() ? bc.data_ptr<scalar_t>() : nullptr;
    const scalar_t* dp = grad ? dyc.data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    dispatch_act(act_code, grad, has_clamp, xp, bp, dp, op, outer, C, inner, p);
  });
  return out;
}

}  // namespace sg3cpu
