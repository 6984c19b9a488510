// The register-blocked passes of the blocked filtered_lrelu kernel (filtered_lrelu_blocked.cuh).
//
// Each thread computes a run of consecutive samples along the pass axis, with the taps in registers
// (compile-time indices only) and the input window streamed through one register:
//   up_run    kRunUp = 8 consecutive z samples = 8 / UP whole polyphase cycles, so the phase and the tap of
//             every multiply-add are compile-time constants: 8/UP + TU/UP loads for 8 * TU/UP MACs
//             (up 2, 12 taps: 10 loads, 48 MACs; up 4, 24 taps: 8 loads, 48 MACs)
//   down_run  kRunDown = 4 consecutive kept outputs: 3 * DOWN + TD loads for 4 * TD MACs
//             (down 2, 12 taps: 18 loads, 48 MACs; down 4, 24 taps: 36 loads, 96 MACs)
// A pass is a grid-stride loop over items (line, run) with the line index fastest, so the lanes of a warp
// take consecutive lines: rows in the x passes (odd row pitch: 32 different banks), columns in the y passes.
// The 2-D passes (config R's radial filters) run one such row run per tap row, reading that tap row into
// registers first (TU or TD broadcast loads per tap row).
// Copyright 2026 the sg3 authors. Apache-2.0.
#pragma once

#include "cuda_common.cuh"

namespace sg3cuda {

constexpr int kRunUp = 8;    // z samples per thread in the up passes (a multiple of every UP in {1, 2, 4})
constexpr int kRunDown = 4;  // kept outputs per thread in the down passes (divides every tile width)

// taps[t] for t < T from shared memory into registers.
template <int T, typename A>
__device__ __forceinline__ void load_taps(const A* __restrict__ s_g, A (&g)[T]) {
#pragma unroll
  for (int t = 0; t < T; ++t) g[t] = s_g[t];
}

// acc[o] += one polyphase up run of kRunUp outputs from the inputs src[w * w_step], w < R + J (R = kRunUp/UP
// phase cycles, J = TU/UP taps per phase): output s*UP + m takes tap (UP - m) % UP + j*UP of input
// s + (m > 0) + j, j < J. The first output has phase 0.
template <int UP, int TU, typename A>
__device__ __forceinline__ void up_run(const A* __restrict__ src, int w_step, const A (&g)[TU], A (&acc)[kRunUp]) {
  constexpr int J = TU / UP, R = kRunUp / UP, WIN = R + J;
#pragma unroll
  for (int w = 0; w < WIN; ++w) {
    const A v = src[w * w_step];
#pragma unroll
    for (int s = 0; s < R; ++s) {
#pragma unroll
      for (int m = 0; m < UP; ++m) {
        const int j = w - s - (m > 0 ? 1 : 0);  // compile-time after unrolling
        if (j >= 0 && j < J) acc[s * UP + m] += g[(m == 0 ? 0 : UP - m) + j * UP] * v;
      }
    }
  }
}

// acc[q] += sum_t g[t] * src[(q*DOWN + t) * w_step] for the kRunDown outputs q of one down run.
template <int DOWN, int TD, typename A>
__device__ __forceinline__ void down_run(const A* __restrict__ src, int w_step, const A (&g)[TD],
                                         A (&acc)[kRunDown]) {
  constexpr int WIN = (kRunDown - 1) * DOWN + TD;
#pragma unroll
  for (int w = 0; w < WIN; ++w) {
    const A v = src[w * w_step];
#pragma unroll
    for (int q = 0; q < kRunDown; ++q) {
      const int t = w - q * DOWN;  // compile-time after unrolling
      if (t >= 0 && t < TD) acc[q] += g[t] * v;
    }
  }
}

template <int N, typename A>
__device__ __forceinline__ void zero(A (&acc)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) acc[i] = A(0);
}

// Separable up pass (x or y): item = line `a` (a_in / a_out apart) and run k, whose outputs start at
// k*kRunUp - c and whose inputs start at k*R (w_step apart). Outputs outside [0, n_z) are not stored; the
// others are stored as epi(a, z, value) (the identity, or the activation fused into the last up pass).
template <int UP, int TU, typename A, typename Epi>
__device__ __forceinline__ void up_pass(const A* __restrict__ s_in, int a_in, int w_step, int lines, int runs,
                                        int c, int n_z, A* __restrict__ s_out, int a_out, int z_step,
                                        const A (&g)[TU], const Epi& epi) {
  constexpr int R = kRunUp / UP;
  for (int i = threadIdx.x; i < lines * runs; i += blockDim.x) {
    const int a = i % lines;
    const int k = i / lines;
    A acc[kRunUp];
    zero(acc);
    up_run<UP, TU>(s_in + a * a_in + k * R * w_step, w_step, g, acc);
    const int z0 = k * kRunUp - c;
    A* dst = s_out + a * a_out;
#pragma unroll
    for (int o = 0; o < kRunUp; ++o) {
      const int z = z0 + o;
      if (z >= 0 && z < n_z) dst[z * z_step] = epi(a, z, acc[o]);
    }
  }
}

// 2-D up pass, input rows [.][pitch_in] -> z rows [n_zy][pitch_out]: item = z row ky and x run k. Row ky
// has phase m = (ky + cy) % UP and takes tap rows (UP - m) % UP + j*UP of the input rows
// (ky + cy) / UP + (m > 0) + j, j < J; along x each tap row is one up_run. s_g2: [TU][TU] taps. Outputs are
// stored as epi(ky, kx, value).
template <int UP, int TU, typename A, typename Epi>
__device__ __forceinline__ void up_pass_2d(const A* __restrict__ s_in, int pitch_in, int runs_x, int cx, int n_zx,
                                           int n_zy, int cy, A* __restrict__ s_out, int pitch_out,
                                           const A* __restrict__ s_g2, const Epi& epi) {
  constexpr int J = TU / UP, R = kRunUp / UP;
  for (int i = threadIdx.x; i < n_zy * runs_x; i += blockDim.x) {
    const int ky = i % n_zy;
    const int k = i / n_zy;
    const int q = ky + cy;
    const int m = q % UP;
    const int r0 = q / UP + (m > 0 ? 1 : 0);
    const int t0 = m == 0 ? 0 : UP - m;
    A acc[kRunUp];
    zero(acc);
#pragma unroll
    for (int j = 0; j < J; ++j) {
      A g[TU];
      load_taps(s_g2 + (t0 + j * UP) * TU, g);
      up_run<UP, TU>(s_in + (r0 + j) * pitch_in + k * R, 1, g, acc);
    }
    const int z0 = k * kRunUp - cx;
    A* dst = s_out + ky * pitch_out;
#pragma unroll
    for (int o = 0; o < kRunUp; ++o) {
      const int z = z0 + o;
      if (z >= 0 && z < n_zx) dst[z] = epi(ky, z, acc[o]);
    }
  }
}

// Separable down pass (x or y): item = line `a` and run k of kRunDown outputs; output q of run k reads
// the inputs (k*kRunDown + q)*DOWN + t, t < TD. Outputs at or past n_out are computed (from inputs inside
// the allocated pitch, see plan_blocked) but not stored. Out = A (shared memory) or the storage type.
template <int DOWN, int TD, typename A, typename Out>
__device__ __forceinline__ void down_pass(const A* __restrict__ s_in, int a_in, int w_step, int lines, int n_out,
                                          Out* __restrict__ out, int a_out, int o_step, const A (&g)[TD]) {
  const int runs = (n_out + kRunDown - 1) / kRunDown;
  for (int i = threadIdx.x; i < lines * runs; i += blockDim.x) {
    const int a = i % lines;
    const int k = i / lines;
    A acc[kRunDown];
    zero(acc);
    down_run<DOWN, TD>(s_in + a * a_in + k * kRunDown * DOWN * w_step, w_step, g, acc);
    Out* dst = out + static_cast<int64_t>(a) * a_out;
#pragma unroll
    for (int q = 0; q < kRunDown; ++q) {
      const int o = k * kRunDown + q;
      if (o < n_out) dst[static_cast<int64_t>(o) * o_step] = from_acc<Out>(acc[q]);
    }
  }
}

// 2-D down pass, z rows [.][pitch_in] -> output rows (row_step apart): item = output row oy and x run k;
// each of the TD tap rows ty is one down_run over z row oy*DOWN + ty. Lanes take consecutive output rows,
// i.e. z rows DOWN apart: with an odd pitch that is a 2-way bank conflict for DOWN = 2 (4-way for 4).
// s_g2: [TD][TD] taps.
template <int DOWN, int TD, typename A, typename Out>
__device__ __forceinline__ void down_pass_2d(const A* __restrict__ s_in, int pitch_in, int n_oy, int n_ox,
                                             Out* __restrict__ out, int64_t row_step, const A* __restrict__ s_g2) {
  const int runs = (n_ox + kRunDown - 1) / kRunDown;
  for (int i = threadIdx.x; i < n_oy * runs; i += blockDim.x) {
    const int oy = i % n_oy;
    const int k = i / n_oy;
    A acc[kRunDown];
    zero(acc);
#pragma unroll 1  // unrolled, the loop-invariant tap loads would be hoisted: TD*TD registers
    for (int ty = 0; ty < TD; ++ty) {
      A g[TD];
      load_taps(s_g2 + ty * TD, g);
      down_run<DOWN, TD>(s_in + (oy * DOWN + ty) * pitch_in + k * kRunDown * DOWN, 1, g, acc);
    }
    Out* dst = out + oy * row_step;
#pragma unroll
    for (int q = 0; q < kRunDown; ++q) {
      const int o = k * kRunDown + q;
      if (o < n_ox) dst[o] = from_acc<Out>(acc[q]);
    }
  }
}

}  // namespace sg3cuda
