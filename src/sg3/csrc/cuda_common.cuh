// Device-side helpers for the sg3 CUDA kernels (upfirdn2d, bias_act, filtered_lrelu).
//
// The .cu files include no PyTorch headers (that keeps nvcc fast: it parses them once per target arch);
// tensors, checks and allocation live in the host file bind_cuda.cpp, which talks to the kernels through
// the plain structs of cuda_launch.cuh. Index arithmetic follows Python's floor semantics for negative
// numbers, because the padding conventions of the spec (section 2) are written with Python's `//`.
// Copyright 2026 the sg3 authors. Apache-2.0.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_launch.cuh"

// Kernel launches and dynamic shared memory go through these two macros so that the kernels' source can
// also run on the host under tests/ops/cuda_emu (which defines them before this header is read).
#ifndef SG3_LAUNCH
#define SG3_LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif
#ifndef SG3_DYNAMIC_SMEM
#define SG3_DYNAMIC_SMEM(name) extern __shared__ unsigned char name[]
#endif

namespace sg3cuda {

// ------------------------------------------------------------------------------------------------
// Integer helpers (host and device).

__host__ __device__ __forceinline__ int floor_div(int a, int b) {  // b > 0
  const int q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

__host__ __device__ __forceinline__ int ceil_div(int a, int b) {  // b > 0
  return -floor_div(-a, b);
}

__host__ __device__ __forceinline__ int pos_mod(int a, int b) {  // result in [0, b)
  const int r = a % b;
  return r < 0 ? r + b : r;
}

// ------------------------------------------------------------------------------------------------
// Storage type <-> compute type: fp16, bf16 and fp32 compute in fp32, fp64 in fp64.

template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(float v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <typename T>
__device__ __forceinline__ T from_acc(double v) {
  return static_cast<T>(v);
}

// ------------------------------------------------------------------------------------------------
// Dtype dispatch on the host: calls fn(T{}) with the storage type for `dtype`.

template <typename Fn>
cudaError_t dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kHalf:
      return fn(__half());
    case DType::kBFloat16:
      return fn(__nv_bfloat16());
    case DType::kFloat:
      return fn(float());
    case DType::kDouble:
      return fn(double());
  }
  return cudaErrorInvalidValue;
}

// Blocks for a grid-stride loop over `n` items with `threads` threads per block.
inline unsigned grid_blocks(int64_t n, int threads, int64_t cap = 65535LL * 8) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

}  // namespace sg3cuda
