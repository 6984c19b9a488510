// bias_act on CPU (spec 2.2; contract in ops.h): one fused pass for the value or its derivatives, and a
// CPU-only variant of the first derivative that also reduces the bias gradient in the same pass.
// Copyright 2026 the sg3 authors. Apache-2.0.
//
// x is viewed as [outer, C, inner] with the bias along C. For linear/relu/lrelu the hot loop works on
// 256-bit vectors with selects (GCC/Clang vector extensions): written as scalar ternaries, GCC keeps the
// branches, and random signs then cost a misprediction per element. The other activations run scalar.
#define SG3_OPS_NAMESPACE sg3cpu
#include <ATen/Parallel.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "ops.h"
#include "polyphase_cpu.h"  // VecOf: 256-bit vector types
#include "pool_cpu.h"

namespace sg3cpu {
namespace {

enum Act { kLinear = 1, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr int64_t kGrain = 32768;  // elements per task: large enough to amortise a thread wake-up

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
    const T pos = v > T(0) ? T(1) : T(0);
    return D == 0 ? v * pos : (D == 1 ? pos : T(0));
  } else if constexpr (ACT == kLrelu) {
    const T slope = v > T(0) ? T(1) : alpha;
    return D == 0 ? v * slope : (D == 1 ? slope : T(0));
  } else if constexpr (ACT == kTanh) {
    const T t = std::tanh(v);
    return D == 0 ? t : (D == 1 ? T(1) - t * t : T(-2) * t * (T(1) - t * t));
  } else if constexpr (ACT == kSigmoid) {
    const T s = sigmoid(v);
    return D == 0 ? s : (D == 1 ? s * (T(1) - s) : s * (T(1) - s) * (T(1) - T(2) * s));
  } else if constexpr (ACT == kElu) {
    // At v = 0 (y = 0) act' takes the exponential branch but act'' the linear one (0), as PyTorch's autograd
    // of F.elu/F.selu (the 'ref' implementation) and the official kernel (derivatives read off y >= 0) do.
    if (v > T(0) || (D == 2 && v == T(0))) return D == 0 ? v : (D == 1 ? T(1) : T(0));
    const T e = std::exp(v);
    return D == 0 ? e - T(1) : e;
  } else if constexpr (ACT == kSelu) {
    const T s = T(kSeluScale), a = T(kSeluAlpha);
    if (v > T(0) || (D == 2 && v == T(0))) return D == 0 ? s * v : (D == 1 ? s : T(0));  // act''(0) = 0 (elu)
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

template <typename T>
struct Params {
  T alpha, gain, clamp;
};

// One element: v = x + b; the op's result for derivative order GRAD (dy ignored when GRAD == 0). GRAD == 3 is
// the first derivative read off the forward output (v = y; piecewise-linear activations only, see ops.h).
template <int ACT, int GRAD, bool CLAMP, typename T>
inline T element(T v, T dy, const Params<T>& p) {
  if constexpr (GRAD == 0) {
    const T y = act<ACT, 0>(v, p.alpha) * p.gain;
    if constexpr (CLAMP) return std::min(std::max(y, -p.clamp), p.clamp);
    return y;
  } else if constexpr (GRAD == 3) {
    const T g = dy * p.gain * act<ACT, 1>(v, p.alpha);  // y > 0 exactly where x + b > 0 (gain > 0)
    if constexpr (CLAMP) return std::abs(v) >= p.clamp ? T(0) : g;
    return g;
  } else {
    const T g = dy * p.gain * act<ACT, GRAD>(v, p.alpha);
    if constexpr (CLAMP) return std::abs(act<ACT, 0>(v, p.alpha) * p.gain) >= p.clamp ? T(0) : g;
    return g;
  }
}

constexpr bool piecewise_linear(int a) { return a == kLinear || a == kRelu || a == kLrelu; }

// element() on a vector of lanes for the piecewise-linear activations: selects instead of branches.
template <int ACT, int GRAD, bool CLAMP, typename V, typename T>
inline V velement(V v, V dy, const Params<T>& p) {
  const V one = V{} + T(1);
  V slope = one;  // act'(v)
  if constexpr (ACT == kRelu) slope = v > T(0) ? one : V{};
  if constexpr (ACT == kLrelu) slope = v > T(0) ? one : V{} + p.alpha;
  if constexpr (GRAD == 0) {
    V y = v * slope * p.gain;
    if constexpr (CLAMP) {
      y = y > p.clamp ? V{} + p.clamp : y;
      y = y < -p.clamp ? V{} - p.clamp : y;
    }
    return y;
  } else if constexpr (GRAD == 1) {
    const V g = dy * slope * p.gain;
    if constexpr (CLAMP) {
      const V y = v * slope * p.gain;
      return (y >= p.clamp) | (y <= -p.clamp) ? V{} : g;
    }
    return g;
  } else if constexpr (GRAD == 3) {  // v is the forward output y
    const V g = dy * slope * p.gain;
    if constexpr (CLAMP) return (v >= p.clamp) | (v <= -p.clamp) ? V{} : g;
    return g;
  } else {
    return V{};
  }
}

// Sum of a kernel's outputs for the bias gradient: float lanes are added up in blocks of 256 elements and
// the blocks in double (one deterministic order per channel, whatever the thread count).
template <typename T>
struct BlockSum {
  using V = typename VecOf<T>::type;
  static constexpr int W = VecOf<T>::kLanes;
  V acc = V{};
  int blocks = 0;
  double total = 0;
  void add(V r) {
    acc += r;
    if (++blocks == 256 / W) flush();
  }
  void flush() {  // pairwise in double: a short dependency chain (channels of a few vectors flush often)
    double half[W / 2];
    for (int l = 0; l < W / 2; ++l) half[l] = double(acc[l]) + double(acc[l + W / 2]);
    for (int n = W / 4; n >= 1; n /= 2)
      for (int l = 0; l < n; ++l) half[l] += half[l + n];
    total += half[0];
    acc = V{};
    blocks = 0;
  }
};

// out[i] = element(x[i] + bias, dy[i]) for i < n, bias = bvec[i] (BVEC) or bconst; with SUM, also adds
// every out[i] to *sum.
template <int ACT, int GRAD, bool CLAMP, bool BVEC, bool SUM, typename T>
inline void row(const T* x, const T* bvec, T bconst, const T* dy, T* out, int64_t n, const Params<T>& params,
                BlockSum<T>* sum) {
  // A local copy: out may alias any T in memory, so reading params through the reference would reload and
  // re-broadcast alpha, gain and clamp after every store.
  const Params<T> p = params;
  using V = typename VecOf<T>::type;
  constexpr int W = VecOf<T>::kLanes;
  int64_t i = 0;
  if constexpr (piecewise_linear(ACT)) {
    for (; i + W <= n; i += W) {
      V v = *reinterpret_cast<const V*>(x + i);
      v = BVEC ? v + *reinterpret_cast<const V*>(bvec + i) : v + bconst;
      const V d = GRAD ? *reinterpret_cast<const V*>(dy + i) : V{};
      const V r = velement<ACT, GRAD, CLAMP>(v, d, p);
      *reinterpret_cast<V*>(out + i) = r;
      if constexpr (SUM) sum->add(r);
    }
  }
  for (; i < n; ++i) {
    const T r = element<ACT, GRAD, CLAMP>(x[i] + (BVEC ? bvec[i] : bconst), GRAD ? dy[i] : T(0), p);
    out[i] = r;
    if constexpr (SUM) sum->total += double(r);
  }
}

// The whole tensor; db (length C, may be null) receives the sum of out over outer and inner.
template <int ACT, int GRAD, bool CLAMP, typename T>
void run(const T* x, const T* b, const T* dy, T* out, T* db, int64_t outer, int64_t C, int64_t inner,
         const Params<T>& p) {
  const T zero = T(0);
  if (!b) {  // no bias: the layout does not matter, one flat array
    at::parallel_for(0, outer * C * inner, kGrain, [&](int64_t i0, int64_t i1) {
      row<ACT, GRAD, CLAMP, false, false, T>(x + i0, nullptr, zero, GRAD ? dy + i0 : nullptr, out + i0, i1 - i0, p,
                                             nullptr);
    });
    return;
  }
  if (inner == 1) {  // bias along the contiguous axis (e.g. channels_last): rows of C elements
    const int64_t rows_per_task = std::max<int64_t>(1, kGrain / C);
    const int64_t ntasks = (outer + rows_per_task - 1) / rows_per_task;
    std::vector<double> partial(db ? ntasks * C : 0, 0.0);  // [ntasks, C]: deterministic per-task sums
    at::parallel_for(0, ntasks, 1, [&](int64_t t0, int64_t t1) {
      std::vector<T> colsum(db ? C : 0);  // per-row values of a task, added up in T then flushed in double
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r0 = t * rows_per_task, r1 = std::min(outer, r0 + rows_per_task);
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t o = r * C;
          row<ACT, GRAD, CLAMP, true, false, T>(x + o, b, zero, GRAD ? dy + o : nullptr, out + o, C, p, nullptr);
          if (!db) continue;
          const T* ro = out + o;
          if ((r - r0) % 64 == 0) {
            std::copy(ro, ro + C, colsum.begin());
          } else {
            for (int64_t c = 0; c < C; ++c) colsum[c] += ro[c];
          }
          if ((r - r0) % 64 == 63 || r == r1 - 1)
            for (int64_t c = 0; c < C; ++c) partial[t * C + c] += double(colsum[c]);
        }
      }
    });
    for (int64_t c = 0; db && c < C; ++c) {
      double s = 0;
      for (int64_t t = 0; t < ntasks; ++t) s += partial[t * C + c];
      db[c] = T(s);
    }
    return;
  }
  // Bias along a strided axis: rows r = o * C + c of `inner` elements with bias b[c].
  if (!db) {
    at::parallel_for(0, outer * C, std::max<int64_t>(1, kGrain / inner), [&](int64_t r0, int64_t r1) {
      int64_t c = r0 % C;
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t o = r * inner;
        row<ACT, GRAD, CLAMP, false, false, T>(x + o, nullptr, b[c], GRAD ? dy + o : nullptr, out + o, inner, p,
                                               nullptr);
        if (++c == C) c = 0;
      }
    });
    return;
  }
  // With the bias gradient: tasks own whole channels, so each channel is summed in one fixed order.
  at::parallel_for(0, C, std::max<int64_t>(1, kGrain / (inner * outer)), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      BlockSum<T> sum;
      for (int64_t k = 0; k < outer; ++k) {
        const int64_t o = (k * C + c) * inner;
        row<ACT, GRAD, CLAMP, false, true, T>(x + o, nullptr, b[c], GRAD ? dy + o : nullptr, out + o, inner, p, &sum);
      }
      sum.flush();
      db[c] = T(sum.total);
    }
  });
}

template <int ACT, typename T>
void dispatch_grad(int64_t grad, bool clamp, const T* x, const T* b, const T* dy, T* out, T* db, int64_t outer,
                   int64_t C, int64_t inner, const Params<T>& p) {
#define SG3_BA_CASE(G)                                              \
  if (grad == G) {                                                  \
    if (clamp)                                                      \
      run<ACT, G, true>(x, b, dy, out, db, outer, C, inner, p);     \
    else                                                            \
      run<ACT, G, false>(x, b, dy, out, db, outer, C, inner, p);    \
    return;                                                         \
  }
  SG3_BA_CASE(0)
  SG3_BA_CASE(1)
  SG3_BA_CASE(2)
  if constexpr (piecewise_linear(ACT)) {
    SG3_BA_CASE(3)
  }
#undef SG3_BA_CASE
}

template <typename T>
void dispatch_act(int64_t act_code, int64_t grad, bool clamp, const T* x, const T* b, const T* dy, T* out, T* db,
                  int64_t outer, int64_t C, int64_t inner, const Params<T>& p) {
  switch (act_code) {
    case kLinear: return dispatch_grad<kLinear>(grad, clamp, x, b, dy, out, db, outer, C, inner, p);
    case kRelu: return dispatch_grad<kRelu>(grad, clamp, x, b, dy, out, db, outer, C, inner, p);
    case kLrelu: return dispatch_grad<kLrelu>(grad, clamp, x, b, dy, out, db, outer, C, inner, p);
    case kTanh: return dispatch_grad<kTanh>(grad, clamp, x, b, dy, out, db, outer, C, inner, p);
    case kSigmoid: return dispatch_grad<kSigmoid>(grad, clamp, x, b, dy, out, db, outer, C, inner, p);
    case kElu: return dispatch_grad<kElu>(grad, clamp, x, b, dy, out, db, outer, C, inner, p);
    case kSelu: return dispatch_grad<kSelu>(grad, clamp, x, b, dy, out, db, outer, C, inner, p);
    case kSoftplus: return dispatch_grad<kSoftplus>(grad, clamp, x, b, dy, out, db, outer, C, inner, p);
    default: return dispatch_grad<kSwish>(grad, clamp, x, b, dy, out, db, outer, C, inner, p);
  }
}

// Shared by bias_act and bias_act_grad_db: checks, then one kernel pass; db (if defined) gets the bias gradient.
at::Tensor bias_act_impl(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy, int64_t grad, int64_t dim,
                         int64_t act_code, double alpha, double gain, double clamp, at::Tensor* db) {
  TORCH_CHECK(x.device().is_cpu(), "sg3_ops_cpu.bias_act: x must be a CPU tensor, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "sg3_ops_cpu.bias_act: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.dim() >= 1 && dim >= 0 && dim < x.dim(), "sg3_ops_cpu.bias_act: dim must be in [0, ", x.dim(),
              "), got ", dim);
  TORCH_CHECK(grad >= 0 && grad <= 3, "sg3_ops_cpu.bias_act: grad must be 0, 1, 2 or 3, got ", grad);
  TORCH_CHECK(act_code >= kLinear && act_code <= kSwish, "sg3_ops_cpu.bias_act: act must be a code in [1, 9], got ",
              act_code);
  TORCH_CHECK(grad != 3 || piecewise_linear(int(act_code)),
              "sg3_ops_cpu.bias_act: grad 3 (derivative from the output) needs act 1, 2 or 3 (linear, relu, lrelu), got ",
              act_code);
  const int64_t C = x.size(dim);
  TORCH_CHECK(b.numel() == 0 || (b.dim() == 1 && b.numel() == C && b.scalar_type() == x.scalar_type()),
              "sg3_ops_cpu.bias_act: b must be empty or 1-D of length ", C, " and dtype ", x.scalar_type(),
              ", got shape ", b.sizes(), " dtype ", b.scalar_type());
  TORCH_CHECK(grad == 0 || (dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type()),
              "sg3_ops_cpu.bias_act: dy must match x (shape ", x.sizes(), ", dtype ", x.scalar_type(), "), got shape ",
              dy.sizes(), " dtype ", dy.scalar_type());
  const auto xc = x.contiguous();  // no copy for the contiguous views the Python side passes
  // The bias gradient needs the per-channel loops: without a bias they run with a zero one.
  const auto bc = (db && b.numel() == 0) ? at::zeros({C}, xc.options()) : b.contiguous();
  const auto dyc = grad ? dy.contiguous() : dy;
  auto out = empty_output(xc.sizes(), xc.scalar_type());
  if (db) *db = at::zeros({C}, xc.options());
  if (xc.numel() == 0) return out;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < dim; ++i) outer *= xc.size(i);
  for (int64_t i = dim + 1; i < xc.dim(); ++i) inner *= xc.size(i);
  const bool has_clamp = clamp >= 0;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sg3_bias_act_cpu", [&] {
    const Params<scalar_t> p{scalar_t(alpha), scalar_t(gain), scalar_t(has_clamp ? clamp : 0)};
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    const scalar_t* bp = bc.numel() ? bc.data_ptr<scalar_t>() : nullptr;
    const scalar_t* dp = grad ? dyc.data_ptr<scalar_t>() : nullptr;
    scalar_t* dbp = db ? db->data_ptr<scalar_t>() : nullptr;
    dispatch_act(act_code, grad, has_clamp, xp, bp, dp, out.data_ptr<scalar_t>(), dbp, outer, C, inner, p);
  });
  return out;
}

}  // namespace

at::Tensor bias_act(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy, int64_t grad, int64_t dim,
                    int64_t act_code, double alpha, double gain, double clamp) {
  return bias_act_impl(x, b, dy, grad, dim, act_code, alpha, gain, clamp, nullptr);
}

std::tuple<at::Tensor, at::Tensor> bias_act_grad_db(const at::Tensor& x, const at::Tensor& b, const at::Tensor& dy,
                                                    int64_t grad, int64_t dim, int64_t act_code, double alpha,
                                                    double gain, double clamp) {
  TORCH_CHECK(grad == 1 || grad == 3, "sg3_ops_cpu.bias_act_grad_db: grad must be 1 or 3, got ", grad);
  at::Tensor db;
  at::Tensor dx = bias_act_impl(x, b, dy, grad, dim, act_code, alpha, gain, clamp, &db);
  return {dx, db};
}

}  // namespace sg3cpu
