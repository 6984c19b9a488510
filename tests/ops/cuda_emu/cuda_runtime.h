// Host emulation of the small part of the CUDA runtime the sg3 kernels use (tests only).
//
// tests/ops/test_cuda_emulated.py compiles src/sg3/csrc/*.cu as plain C++ with this folder first on the
// include path: every kernel launch runs the grid block by block, each block as blockDim.x host threads
// that meet at __syncthreads() (a C++20 barrier), with the block's dynamic shared memory poisoned
// (NaN) before it starts. That checks the kernels' index arithmetic, tiling, barrier placement within a
// block and sign bookkeeping on any machine; it says nothing about speed or the GPU memory model.
// Copyright 2026 the sg3 authors. Apache-2.0.
#pragma once

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

// The fused filtered_lrelu kernels put at most this many planes on grid z and loop over the rest: 2 here,
// so that every test with more planes runs the kernels' plane loops (shared memory reused across planes).
#define SG3_FUSED_MAX_GRID_Z 2

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(x)
#define __restrict__

typedef int cudaError_t;
typedef void* cudaStream_t;
enum : int { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9 };
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated"; }

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* sg3_emu_barrier = nullptr;
inline void __syncthreads() { sg3_emu_barrier->arrive_and_wait(); }

constexpr size_t kSg3EmuSmemBytes = 48 * 1024;  // the kernels' budget without an opt-in
alignas(16) inline unsigned char sg3_emu_smem[kSg3EmuSmemBytes];
#define SG3_DYNAMIC_SMEM(name) unsigned char* name = ::sg3_emu_smem

using std::max;
using std::min;

// SG3_LAUNCH(kernel, grid, block, smem, stream, args...): run the grid on the host.
template <typename Kernel, typename... Args>
void sg3_emu_launch(Kernel kernel, dim3 grid, dim3 block, size_t smem, Args... args) {
  if (smem > kSg3EmuSmemBytes) throw std::runtime_error("dynamic shared memory over the 48 KB budget");
  gridDim = grid;
  blockDim = block;
  const unsigned n = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        std::memset(sg3_emu_smem, 0xFF, sizeof(sg3_emu_smem));  // NaN for float / double reads
        std::barrier<> bar(n);
        sg3_emu_barrier = &bar;
        std::vector<std::thread> threads;
        threads.reserve(n);
        for (unsigned t = 0; t < n; ++t)
          threads.emplace_back([=]() {
            threadIdx = dim3(t, 0, 0);
            blockIdx = dim3(bx, by, bz);
            kernel(args...);
          });
        for (auto& th : threads) th.join();
      }
}
#define SG3_LAUNCH(kernel, grid, block, smem, stream, ...) sg3_emu_launch(kernel, grid, block, smem, __VA_ARGS__)
