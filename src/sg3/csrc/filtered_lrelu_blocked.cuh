// Fused filtered_lrelu on CUDA, "blocked" variant (opt-in: FusedArgs::kernel == kBlockedKernel).
//
// Same stages, arithmetic and sign format as the tiled kernel (filtered_lrelu_kernel.cuh), with the
// register-blocked passes of filtered_lrelu_blocked_passes.cuh. Compile-time factors UP, DOWN in {1, 2, 4}
// and tap counts TU (a multiple of UP) and TD; the real filters are zero-padded to TU / TD taps per axis
// (zeros at the end change no sum) and every region below is sized for the padded counts, so no hot loop
// has a runtime bound or a tap guard. UP2D / DN2D: the up / down filter is 2-D ([TU][TU] / [TD][TD],
// config R's radial filter and its transpose) instead of separable.
//
// Per 1-D up pass a thread issues 8/UP + TU/UP shared loads for 8 * TU/UP multiply-adds, per 1-D down pass
// 3 * DOWN + TD loads for 4 * TD (the tiled kernel: 2 loads per multiply-add, one a tap from global memory /
// L1); a 2-D pass adds one tap-row load per tap. Threads of a warp take consecutive rows in the x passes
// and consecutive columns in the y passes; row pitches are odd, so no bank conflicts
// (except the 2-D down pass: 2-way for DOWN = 2).
//
// Shared memory (A = float, or double for float64 data), per block; the stages reuse two buffers:
//   separable up   s_x [ih][pitch_x] (buffer A) -> x pass -> s_t [ih][pitch_z] (B) -> y pass -> s_z (A)
//   2-D up         s_x (B) -> 2-D pass -> s_z [zh][pitch_z] (A)
//   activation     applied as the last up pass stores s_z
//   signs          backward: the sign bytes read, [zh][pitch_s], 4 codes per byte; forward with signs: one
//                  code byte per z sample, [zh][pitch_z], packed 4 to a byte as they go to global memory
//   separable down s_z -> x pass -> s_d [zh_d][pitch_d] (B) -> y pass -> output
//   2-D down       s_z -> 2-D pass -> output
//   taps           up taps (TU or TU*TU), down taps (TD or TD*TD), zero-padded
// The largest tile of {32x32, 32x16, 16x16, ...} whose buffers fit kSmemBudget (48 KB) is used (float):
// 32x32 for up 2 / down 2 with 12 taps (42 KB forward with signs, 38 KB backward) and for up 4 / down 2
// with 24 / 12 taps (38 KB), 16x16 for the backward's up 2 / down 4 with 12 / 24 taps (48 KB); config R's
// 2-D instances 34-42 KB at 32x32, 41 KB at 16x16. With 256 threads and <= 64 registers per thread (float
// and half, sm_90, no spills) that allows 4 resident blocks (1024 threads) per SM.
// Copyright 2026 the sg3 authors. Apache-2.0.
#pragma once

#include "filtered_lrelu_blocked_passes.cuh"
#include "filtered_lrelu_kernel.cuh"

namespace sg3cuda {

// Shared-memory layout of one tile (computed on the host for the full tile; edge tiles use less).
struct BlockedLayout {
  int tile_w = 0, tile_h = 0;  // output tile (tile_w a multiple of 4: sign bytes never straddle tiles)
  int pitch_x = 0;             // s_x row pitch (odd)
  int pitch_z = 0;             // s_t and s_z row pitch (odd)
  int pitch_d = 0;             // s_d row pitch (odd)
  int pitch_s = 0;             // sign bytes per row (read mode; write mode: one code byte per sample,
                               // pitch_z per row)
  int buf_a = 0, buf_b = 0;    // buffer sizes (elements of A)
  size_t bytes = 0;            // dynamic shared memory in total
};

template <typename A>
struct BlockedParams : FusedCommon<A> {
  const A* gu;  // up taps: [fu_taps] or [fu_taps][fu_taps] (2-D), zero-padded when staged
  const A* gd;  // down taps, likewise
  int fu_taps, fd_taps;
  BlockedLayout L;
};

__host__ __device__ __forceinline__ int odd_at_least(int n) { return n | 1; }
__host__ __device__ __forceinline__ int round_up4(int n) { return (n + 3) & ~3; }

// The compile-time configuration of one instance.
template <int UP_, int DOWN_, int TU_, int TD_, bool UP2D_ = false, bool DN2D_ = false>
struct BlockedCfg {
  static constexpr int UP = UP_, DOWN = DOWN_, TU = TU_, TD = TD_;
  static constexpr bool UP2D = UP2D_, DN2D = DN2D_;
  static constexpr int kUpTaps = UP2D ? TU * TU : TU, kDownTaps = DN2D ? TD * TD : TD;
  static_assert(TU % UP == 0 && kRunUp % UP == 0, "TU and kRunUp must be multiples of UP");
  static_assert(!(UP2D && DN2D), "at most one 2-D filter");
};

// Along one axis: z samples computed for `n_out` outputs, and the up runs / input samples that cover them
// when the first run starts `c` samples before the region (c = the phase offset, < UP).
template <class Cfg>
struct AxisPlan {
  int z, runs, in;
  __host__ __device__ AxisPlan(int n_out, int c) {
    z = (n_out - 1) * Cfg::DOWN + Cfg::TD;
    runs = (z + c + kRunUp - 1) / kRunUp;
    in = runs * (kRunUp / Cfg::UP) + Cfg::TU / Cfg::UP;
  }
};

template <class Cfg>
BlockedLayout plan_blocked(int tw, int th, size_t acc_size, int sign_mode) {
  BlockedLayout L;
  L.tile_w = tw;
  L.tile_h = th;
  const AxisPlan<Cfg> ax(tw, Cfg::UP - 1), ay(th, Cfg::UP - 1);  // upper bounds over all phases
  L.pitch_x = odd_at_least(ax.in);
  L.pitch_z = odd_at_least((round_up4(tw) - 1) * Cfg::DOWN + Cfg::TD);  // down passes read whole 4-runs
  L.pitch_d = odd_at_least(tw);
  L.pitch_s = L.pitch_z / 4 + 2;
  const int zh_d = (round_up4(th) - 1) * Cfg::DOWN + Cfg::TD;  // rows the down y-pass reads (whole runs)
  const int s_x = ay.in * L.pitch_x, s_t = Cfg::UP2D ? 0 : ay.in * L.pitch_z, s_z = ay.z * L.pitch_z;
  const int s_d = Cfg::DN2D ? 0 : zh_d * L.pitch_d;
  const int a1 = Cfg::UP2D ? 0 : s_x, b1 = Cfg::UP2D ? s_x : s_t;  // where s_x lives (see the header)
  L.buf_a = a1 > s_z ? a1 : s_z;
  L.buf_b = b1 > s_d ? b1 : s_d;
  L.bytes = acc_size * (static_cast<size_t>(L.buf_a) + L.buf_b + Cfg::kUpTaps + Cfg::kDownTaps) +
            static_cast<size_t>(ay.z) * (sign_mode == kReadSigns    ? L.pitch_s
                                         : sign_mode == kWriteSigns ? L.pitch_z
                                                                    : 0);
  return L;
}

// Zero-padded taps into shared memory: 1-D g[t], t < taps -> s[t], t < T; 2-D g[ty][tx] (taps x taps) ->
// s[ty][tx] (T x T).
template <int T, bool TWO_D, typename A>
__device__ __forceinline__ void stage_taps(const A* __restrict__ g, int taps, A* __restrict__ s) {
  for (int i = threadIdx.x; i < (TWO_D ? T * T : T); i += blockDim.x) {
    const int ty = TWO_D ? i / T : 0, tx = TWO_D ? i - ty * T : i;
    s[i] = (ty < taps && tx < taps) ? g[ty * taps + tx] : A(0);
  }
}

template <typename scalar_t, class Cfg>
__global__ void __launch_bounds__(256)
    filtered_lrelu_blocked_kernel(BlockedParams<typename AccType<scalar_t>::type> p) {
  using A = typename AccType<scalar_t>::type;
  constexpr int UP = Cfg::UP, DOWN = Cfg::DOWN, TU = Cfg::TU, TD = Cfg::TD;
  SG3_DYNAMIC_SMEM(smem_raw);
  const BlockedLayout& L = p.L;
  A* buf_a = reinterpret_cast<A*>(smem_raw);
  A* buf_b = buf_a + L.buf_a;
  A* s_gu = buf_b + L.buf_b;
  A* s_gd = s_gu + Cfg::kUpTaps;
  uint8_t* s_sign = reinterpret_cast<uint8_t*>(s_gd + Cfg::kDownTaps);
  const int tid = threadIdx.x;
  const int nthreads = blockDim.x;

  // Taps, zero-padded, once per block (the first barrier of the plane loop publishes them).
  stage_taps<TU, Cfg::UP2D>(p.gu, p.fu_taps, s_gu);
  stage_taps<TD, Cfg::DN2D>(p.gd, p.fd_taps, s_gd);

  // Output tile, z region (zw x zh from (zx0, zy0)), up runs and input region (from (ix0, iy0)).
  const int ox0 = blockIdx.x * L.tile_w;
  const int oy0 = blockIdx.y * L.tile_h;
  const int tw = min(L.tile_w, p.OW - ox0);
  const int th = min(L.tile_h, p.OH - oy0);
  const int zx0 = ox0 * DOWN, zy0 = oy0 * DOWN;
  const int cx = pos_mod(zx0 - p.px0, UP), cy = pos_mod(zy0 - p.py0, UP);
  const AxisPlan<Cfg> ax(tw, cx), ay(th, cy);
  const int zw = ax.z, zh = ay.z;
  const int ix0 = floor_div(zx0 - p.px0, UP), iy0 = floor_div(zy0 - p.py0, UP);

  // Sign bytes: ownership as in the tiled kernel (disjoint across tiles); in read mode the bytes covering
  // samples zx0 + sx ... are staged from sb0 = 4 * floor(.. / 4) on, out-of-region samples coded "clamped".
  const bool last_x = ox0 + L.tile_w >= p.OW;
  const bool last_y = oy0 + L.tile_h >= p.OH;
  const int own_x1 = last_x ? zw : min(zw, L.tile_w * DOWN);
  const int own_y1 = last_y ? zh : min(zh, L.tile_h * DOWN);
  const int sb0 = 4 * floor_div(zx0 + p.sx, 4);
  const int nb_read = (zx0 + p.sx + zw - 1 - sb0) / 4 + 1;
  const int nb_write = (zw + 3) / 4;

  scalar_t* y = static_cast<scalar_t*>(p.y);
  const int planes = p.N * p.C;

  for (int plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    A bv;
    const scalar_t* xp = plane_input<scalar_t>(p, plane, &bv);
    const int64_t sign_base = static_cast<int64_t>(plane) * p.s_plane;

    // 1. Input region (+ bias, zero outside the image) -> s_x; sign bytes -> s_sign (read mode).
    A* s_x = Cfg::UP2D ? buf_b : buf_a;
    __syncthreads();
    for (int i = tid; i < ay.in * ax.in; i += nthreads) {
      const int r = i / ax.in;
      const int q = i - r * ax.in;
      const int iy = iy0 + r, ix = ix0 + q;
      A v = A(0);
      if (iy >= 0 && iy < p.H && ix >= 0 && ix < p.W) v = to_acc(xp[iy * p.sx_h + ix * p.sx_w]) + bv;
      s_x[r * L.pitch_x + q] = v;
    }
    if (p.sign_mode == kReadSigns) {
      for (int i = tid; i < zh * nb_read; i += nthreads) {
        const int ky = i / nb_read;
        const int bi = i - ky * nb_read;
        const int sy = zy0 + ky + p.sy;
        const int v0 = sb0 + 4 * bi;  // first sample of this byte (a multiple of 4)
        int byte = 0xAA;              // row outside the recorded region: all "clamped" (no gradient)
        if (sy >= 0 && sy < p.s_h) {
          const uint8_t* row = p.s_r + sign_base + static_cast<int64_t>(sy) * p.s_row;
          if (v0 >= 0 && v0 + 3 < p.s_wv) {
            byte = row[v0 >> 2];
          } else {
            byte = 0;
            for (int j = 0; j < 4; ++j) {
              const int v = v0 + j;
              byte |= (v >= 0 && v < p.s_wv ? (row[v >> 2] >> ((v & 3) * 2)) & 3 : 2) << (2 * j);
            }
          }
        }
        s_sign[ky * L.pitch_s + bi] = static_cast<uint8_t>(byte);
      }
    }
    __syncthreads();

    // 2. Upsample into s_z = buffer A: separable (x pass over the input rows into s_t, y pass over the zw
    //    columns; the up taps stay in registers for both) or 2-D (one pass, tap rows read per input row).
    //    The last up pass applies the activation as it stores, reading the staged sign codes (backward)
    //    or recording one code byte per sample (forward with signs).
    auto act = [&](int ky, int kx, A v) -> A {
      int code_in = 0;
      if (p.sign_mode == kReadSigns) {
        const int rel = zx0 + p.sx + kx - sb0;
        code_in = (s_sign[ky * L.pitch_s + (rel >> 2)] >> ((rel & 3) * 2)) & 3;
      }
      int code = 0;
      v = fused_act(v, p, code_in, &code);
      if (p.sign_mode == kWriteSigns) s_sign[ky * L.pitch_z + kx] = static_cast<uint8_t>(code);
      return v;
    };
    A* s_z = buf_a;
    if constexpr (Cfg::UP2D) {
      up_pass_2d<UP, TU>(s_x, L.pitch_x, ax.runs, cx, zw, zh, cy, s_z, L.pitch_z, s_gu, act);
    } else {
      A* s_t = buf_b;
      A g[TU];
      load_taps(s_gu, g);
      up_pass<UP, TU>(s_x, L.pitch_x, 1, ay.in, ax.runs, cx, zw, s_t, L.pitch_z, 1, g,
                      [](int, int, A v) { return v; });
      __syncthreads();
      up_pass<UP, TU>(s_t, 1, L.pitch_z, zw, ay.runs, cy, zh, s_z, 1, L.pitch_z, g,
                      [&](int kx, int ky, A v) { return act(ky, kx, v); });
    }
    __syncthreads();

    // 3. Downsample to the output: separable (x pass at the kept columns into s_d [zh][tw], y pass at the
    //    kept rows with columns across lanes: coalesced stores; the down taps stay in registers) or 2-D.
    //    The sign bytes of this tile go to global memory meanwhile (write mode).
    scalar_t* yp = y + static_cast<int64_t>(plane) * p.OH * p.OW + static_cast<int64_t>(oy0) * p.OW + ox0;
    if constexpr (Cfg::DN2D) {
      down_pass_2d<DOWN, TD>(s_z, L.pitch_z, th, tw, yp, p.OW, s_gd);
    } else {
      A* s_d = buf_b;
      A g[TD];
      load_taps(s_gd, g);
      down_pass<DOWN, TD>(s_z, L.pitch_z, 1, zh, tw, s_d, L.pitch_d, 1, g);
      __syncthreads();
      down_pass<DOWN, TD>(s_d, 1, L.pitch_d, tw, th, yp, 1, p.OW, g);
    }
    if (p.sign_mode == kWriteSigns) {
      for (int i = tid; i < zh * nb_write; i += nthreads) {
        const int ky = i / nb_write;
        const int bi = i - ky * nb_write;
        const int sy = zy0 + ky + p.sy;
        const int sxv = zx0 + 4 * bi + p.sx;
        if (ky < own_y1 && 4 * bi < own_x1 && sy >= 0 && sy < p.s_h && sxv >= 0 && sxv < p.s_wv) {
          const uint8_t* codes = s_sign + ky * L.pitch_z + 4 * bi;
          int byte = 0;
#pragma unroll
          for (int j = 0; j < 4; ++j)
            if (4 * bi + j < zw) byte |= codes[j] << (2 * j);
          p.s_w[sign_base + static_cast<int64_t>(sy) * p.s_row + (sxv >> 2)] = static_cast<uint8_t>(byte);
        }
      }
    }
  }
}

// Host side: the blocked instance of a call (filtered_lrelu_blocked.cu picks Cfg).
template <typename scalar_t, class Cfg>
cudaError_t launch_blocked_instance(const FusedArgs& a, cudaStream_t stream) {
  using A = typename AccType<scalar_t>::type;
  static const int kTiles[][2] = {{32, 32}, {32, 16}, {16, 16}, {16, 8}, {8, 8}, {8, 4}, {4, 4}, {4, 2}, {4, 1}};
  const int max_w = round_up4(a.OW);
  BlockedLayout L;
  for (const auto& t : kTiles) {
    const int tw = t[0] < max_w ? t[0] : max_w;
    const int th = t[1] < a.OH ? t[1] : a.OH;
    L = plan_blocked<Cfg>(tw, th, sizeof(A), a.sign_mode);
    if (L.bytes <= static_cast<size_t>(kSmemBudget)) break;
    L.tile_w = 0;
  }
  if (L.tile_w == 0) return cudaErrorInvalidConfiguration;
  BlockedParams<A> p;
  fill_common(p, a);
  p.gu = static_cast<const A*>(a.fu);
  p.gd = static_cast<const A*>(a.fd);
  p.fu_taps = a.fux;
  p.fd_taps = a.fdx;
  p.L = L;
  dim3 grid;
  if (!fused_grid(a, L.tile_w, L.tile_h, &grid)) return cudaErrorInvalidConfiguration;
  const auto kernel = &filtered_lrelu_blocked_kernel<scalar_t, Cfg>;
  SG3_LAUNCH(kernel, grid, 256, L.bytes, stream, p);
  return cudaGetLastError();
}

// Instances with TU = 8 * UP, TD = 8 * DOWN for every UP, DOWN in {1, 2, 4} (filtered_lrelu_blocked_general.cu);
// sets *handled = false when (up, down) is not one of them.
template <typename scalar_t>
cudaError_t launch_blocked_general(const FusedArgs& a, cudaStream_t stream, bool* handled);

// The blocked kernel for a call that filtered_lrelu_blocked_covers (filtered_lrelu_blocked.cu).
cudaError_t launch_filtered_lrelu_blocked(const FusedArgs& a, cudaStream_t stream);

}  // namespace sg3cuda
