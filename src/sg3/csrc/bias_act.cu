// bias_act on CUDA (spec section 2.2): y = clamp(act(x + b) * gain), plus the first and second
// derivatives the Python autograd Functions need (grad = 1: dx = dy * gain * act'(x + b);
// grad = 2: dx = dy * gain * act''(x + b); both zero where the forward output was clamped; grad = 3: the
// first derivative read off the forward output y passed as x, for linear/relu/lrelu - see ops.h).
// Elementwise and memory bound: one grid-stride loop, compute in fp32 (fp64 for fp64 tensors).
// Copyright 2026 the sg3 authors. Apache-2.0.
#include "cuda_common.cuh"


namespace sg3cuda {
namespace {

// Activation codes shared with the CPU extension and the Python side (ops.h, bias_act.py).
enum ActCode : int {
  kLinear = 1,
  kRelu = 2,
  kLrelu = 3,
  kTanh = 4,
  kSigmoid = 5,
  kElu = 6,
  kSelu = 7,
  kSoftplus = 8,
  kSwish = 9
};

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSoftplusThreshold = 20.0;  // torch's default: softplus(x) = x above it

template <typename A>
__device__ __forceinline__ A sigmoid(A x) {
  return A(1) / (A(1) + exp(-x));
}

// Value (order 0), first (1) or second (2) derivative of the activation at x.
template <typename A>
__device__ __forceinline__ A act_eval(int code, int order, A x, A alpha) {
  switch (code) {
    case kLinear:
      return order == 0 ? x : (order == 1 ? A(1) : A(0));
    case kRelu:
      if (order == 0) return x > A(0) ? x : A(0);
      return (order == 1 && x > A(0)) ? A(1) : A(0);
    case kLrelu:
      if (order == 0) return x > A(0) ? x : x * alpha;
      return order == 1 ? (x > A(0) ? A(1) : alpha) : A(0);
    case kTanh: {
      const A t = tanh(x);
      if (order == 0) return t;
      return order == 1 ? A(1) - t * t : A(-2) * t * (A(1) - t * t);
    }
    case kSigmoid: {
      const A s = sigmoid(x);
      if (order == 0) return s;
      return order == 1 ? s * (A(1) - s) : s * (A(1) - s) * (A(1) - A(2) * s);
    }
    case kElu:
      // act''(0) takes the linear branch (0), act'(0) the exponential one, as in sg3_ops_cpu and 'ref'.
      if (x > A(0) || (order == 2 && x == A(0))) return order == 0 ? x : (order == 1 ? A(1) : A(0));
      return order == 0 ? exp(x) - A(1) : exp(x);
    case kSelu:
      if (x > A(0) || (order == 2 && x == A(0))) return order == 0 ? A(kSeluScale) * x : (order == 1 ? A(kSeluScale) : A(0));
      return order == 0 ? A(kSeluScale * kSeluAlpha) * (exp(x) - A(1)) : A(kSeluScale * kSeluAlpha) * exp(x);
    case kSoftplus: {
      if (x > A(kSoftplusThreshold)) return order == 0 ? x : (order == 1 ? A(1) : A(0));
      if (order == 0) return log1p(exp(x));
      const A s = sigmoid(x);
      return order == 1 ? s : s * (A(1) - s);
    }
    case kSwish: {
      const A s = sigmoid(x);
      if (order == 0) return x * s;
      if (order == 1) return s + x * s * (A(1) - s);
      return s * (A(1) - s) * (A(2) + x * (A(1) - A(2) * s));
    }
    default:
      return A(0);
  }
}

template <typename scalar_t>
__global__ void bias_act_kernel(BiasActArgs a) {
  using A = typename AccType<scalar_t>::type;
  const scalar_t* x = static_cast<const scalar_t*>(a.x);
  const scalar_t* b = static_cast<const scalar_t*>(a.b);
  const scalar_t* dy = static_cast<const scalar_t*>(a.dy);
  scalar_t* y = static_cast<scalar_t*>(a.y);
  const A alpha = static_cast<A>(a.alpha), gain = static_cast<A>(a.gain), clamp = static_cast<A>(a.clamp);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A v = to_acc(x[i]);
    if (b != nullptr) v += to_acc(b[(i / a.inner) % a.channels]);
    A out;
    if (a.grad == 0) {
      out = act_eval(a.act, 0, v, alpha) * gain;
      if (clamp >= A(0)) out = out > clamp ? clamp : (out < -clamp ? -clamp : out);
    } else if (a.grad == 3) {  // v is the forward output y: y > 0 exactly where x + b > 0
      const bool clamped = clamp >= A(0) && (v >= clamp || v <= -clamp);
      out = clamped ? A(0) : to_acc(dy[i]) * gain * act_eval(a.act, 1, v, alpha);
    } else {
      bool clamped = false;
      if (clamp >= A(0)) {
        const A fwd = act_eval(a.act, 0, v, alpha) * gain;
        clamped = fwd >= clamp || fwd <= -clamp;
      }
      out = clamped ? A(0) : to_acc(dy[i]) * gain * act_eval(a.act, a.grad, v, alpha);
    }
    y[i] = from_acc<scalar_t>(out);
  }
}

}  // namespace

cudaError_t launch_bias_act(const BiasActArgs& a, cudaStream_t stream) {
  if (a.numel == 0) return cudaSuccess;
  if (a.grad < 0 || a.grad > 3 || a.act < kLinear || a.act > kSwish) return cudaErrorInvalidValue;
  if (a.grad == 3 && a.act > kLrelu) return cudaErrorInvalidValue;
  return dispatch_dtype(a.dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    const auto kernel = &bias_act_kernel<scalar_t>;
    SG3_LAUNCH(kernel, grid_blocks(a.numel, 256, 65535LL * 4), 256, 0, stream, a);
    return cudaGetLastError();
  });
}

}  // namespace sg3cuda
