// Fused filtered_lrelu on CUDA, "blocked" variant (opt-in: FusedArgs::kernel == kBlockedKernel).
//
// Same arithmetic and sign format as the tiled kernel (filtered_lrelu_kernel.cuh), for separable up and
// down filters with compile-time factors UP, DOWN in {1, 2, 4} and compile-time tap counts TU (a multiple
// of UP) and TD; the real filters are zero-padded to TU / TD taps (zeros at the end change no sum), and
// every region below is sized for the padded counts, so no hot loop has a runtime bound or a tap guard.
// Every pass is a small device function (up_pass, down_pass) shared by the x and the y direction.
//
// Register blocking. The tiled kernel computes one sample per thread and reads both the sample and the
// tap for every multiply-add. Here each thread computes a run of consecutive samples along the pass
// axis, keeps the taps in registers (read once per pass from shared memory, where they are staged once
// per block) and streams the input window through one register, so that one shared-memory load feeds
// several multiply-adds:
//   up passes    kRunUp = 8 consecutive z samples (8 / UP whole polyphase cycles, so the phase of every
//                output is known at compile time): 8/UP + TU/UP loads for 8 * TU/UP MACs
//                (up 2, 12 taps: 10 loads, 48 MACs; up 4, 24 taps: 8 loads, 48 MACs)
//   down passes  kRunDown = 4 consecutive kept outputs: 3 * DOWN + TD loads for 4 * TD MACs
//                (down 2, 12 taps: 18 loads, 48 MACs; down 4, 24 taps: 36 loads, 96 MACs)
// (the tiled kernel: 2 loads per MAC, one of them a tap from global memory / L1).
//
// Bank conflicts. Threads of a warp take consecutive rows in the x passes (and the activation) and
// consecutive columns in the y passes; every row pitch read or written by a row-wise pass is odd, so the
// 32 lanes of a warp hit 32 different banks (the y passes are conflict-free at any pitch).
//
// Shared memory (A = float, or double for float64 data), per block:
//   buffer A  s_x [ih][pitch_x] input + bias, then s_z [zh][pitch_z] upsampled and activated z tile
//   buffer B  s_t [ih][pitch_z] after the up x-pass, then s_d [zh_d][pitch_d] after the down x-pass
//   taps      TU up taps, TD down taps (zero-padded)
//   signs     [zh][pitch_s] bytes, 4 codes per byte (only when signs are written or read)
// The largest tile of {32x32, 32x16, 16x16, ...} whose buffers fit kSmemBudget (48 KB) is used:
// ~37 KB at 32x32 for up 2 / down 2 with 12 taps, ~33 KB at 32x32 for up 4 / down 2 with 24 / 12 taps,
// ~47 KB at 16x16 for up 2 / down 4 with 12 / 24 taps (the backward of the up-4 layers). With 256
// threads per block that allows 4 resident blocks (1024 threads) per SM on sm_80 / sm_90.
// Copyright 2026 the sg3 authors. Apache-2.0.
#pragma once

#include "filtered_lrelu_kernel.cuh"

namespace sg3cuda {

constexpr int kRunUp = 8;    // z samples per thread in the up passes (a multiple of every UP in {1, 2, 4})
constexpr int kRunDown = 4;  // kept outputs per thread in the down passes (divides every tile width)

// Shared-memory layout of one tile (computed on the host for the full tile; edge tiles use less).
struct BlockedLayout {
  int tile_w = 0, tile_h = 0;  // output tile (tile_w a multiple of 4: sign bytes never straddle tiles)
  int pitch_x = 0;             // s_x row pitch (odd)
  int pitch_z = 0;             // s_t and s_z row pitch (odd)
  int pitch_d = 0;             // s_d row pitch (odd)
  int pitch_s = 0;             // sign bytes per row
  int buf_a = 0, buf_b = 0;    // buffer sizes (elements of A)
  size_t bytes = 0;            // dynamic shared memory in total
};

template <typename A>
struct BlockedParams {
  const void* x;
  const void* b;  // [C] or nullptr
  void* y;
  const A* gu;  // TU-padded on the fly: the first fu_taps taps are real
  const A* gd;
  int fu_taps, fd_taps;
  int64_t sx_n, sx_c, sx_h, sx_w;
  int N, C, H, W, OH, OW;
  int px0, py0;
  A gain, slope, clamp;  // clamp < 0: none
  int sign_mode;
  uint8_t* s_w;
  const uint8_t* s_r;
  int64_t s_plane;
  int s_row;
  int s_h, s_wv;
  int sx, sy;
  BlockedLayout L;
};

__host__ __device__ __forceinline__ int odd_at_least(int n) { return n | 1; }
__host__ __device__ __forceinline__ int round_up4(int n) { return (n + 3) & ~3; }

// Along one axis: z samples computed for `n_out` outputs, and the up runs / input samples that cover them
// when the first run starts `c` samples before the region (c = the phase offset, < UP).
template <int UP, int DOWN, int TU, int TD>
struct AxisPlan {
  int z, runs, in;
  __host__ __device__ AxisPlan(int n_out, int c) {
    z = (n_out - 1) * DOWN + TD;
    runs = (z + c + kRunUp - 1) / kRunUp;
    in = runs * (kRunUp / UP) + TU / UP;
  }
};

template <int UP, int DOWN, int TU, int TD>
BlockedLayout plan_blocked(int tw, int th, size_t acc_size, bool signs) {
  BlockedLayout L;
  L.tile_w = tw;
  L.tile_h = th;
  const AxisPlan<UP, DOWN, TU, TD> ax(tw, UP - 1), ay(th, UP - 1);  // upper bounds over all phases
  L.pitch_x = odd_at_least(ax.in);
  L.pitch_z = odd_at_least((round_up4(tw) - 1) * DOWN + TD);  // the down x-pass reads whole 4-output runs
  L.pitch_d = odd_at_least(tw);
  L.pitch_s = L.pitch_z / 4 + 2;
  const int zh_d = (round_up4(th) - 1) * DOWN + TD;  // rows the down y-pass reads (whole 4-output runs)
  const int a1 = ay.in * L.pitch_x, a2 = ay.z * L.pitch_z;
  const int b1 = ay.in * L.pitch_z, b2 = zh_d * L.pitch_d;
  L.buf_a = a1 > a2 ? a1 : a2;
  L.buf_b = b1 > b2 ? b1 : b2;
  L.bytes = acc_size * (static_cast<size_t>(L.buf_a) + L.buf_b + TU + TD) +
            (signs ? static_cast<size_t>(ay.z) * L.pitch_s : 0);
  return L;
}

// One polyphase upsampling pass (the x or the y pass): every item is one line `a` (a row for the x pass, a
// column for the y pass) and one run of kRunUp outputs. Run k of a line starts at output k*kRunUp - c
// (phase 0) and reads the inputs k*R ... k*R + R + J - 1 (R = kRunUp/UP runs of phases, J = TU/UP taps per
// phase): output s*UP + m takes taps (UP - m) % UP + j*UP from input k*R + s + (m > 0) + j, j < J.
// `w_step`: distance between consecutive inputs of a line; `a_in` / `a_out`: between lines; `z_step`:
// between consecutive outputs. Outputs outside [0, n_z) are computed but not stored. g: the taps, in registers.
template <int UP, int TU, typename A>
__device__ __forceinline__ void up_pass(const A* __restrict__ s_in, int a_in, int w_step, int lines, int runs,
                                        int c, int n_z, A* __restrict__ s_out, int a_out, int z_step,
                                        const A (&g)[TU]) {
  constexpr int J = TU / UP, R = kRunUp / UP, WIN = R + J;
  for (int i = threadIdx.x; i < lines * runs; i += blockDim.x) {
    const int a = i % lines;
    const int k = i / lines;
    const A* src = s_in + a * a_in + k * R * w_step;
    A acc[kRunUp];
#pragma unroll
    for (int o = 0; o < kRunUp; ++o) acc[o] = A(0);
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
    const int z0 = k * kRunUp - c;
    A* dst = s_out + a * a_out;
#pragma unroll
    for (int o = 0; o < kRunUp; ++o) {
      const int z = z0 + o;
      if (z >= 0 && z < n_z) dst[z * z_step] = acc[o];
    }
  }
}

// One decimating pass: every item is one line `a` and a run of kRunDown kept outputs; output q of run k
// reads the inputs (k*kRunDown + q)*DOWN + t, t < TD. Outputs at or past n_out are computed but not stored
// (their inputs lie inside the allocated pitch, see plan_blocked). Out = A (shared) or the storage type.
// g: the taps, in registers.
template <int DOWN, int TD, typename A, typename Out>
__device__ __forceinline__ void down_pass(const A* __restrict__ s_in, int a_in, int w_step, int lines, int n_out,
                                          Out* __restrict__ out, int a_out, int o_step, const A (&g)[TD]) {
  constexpr int WIN = (kRunDown - 1) * DOWN + TD;
  const int runs = (n_out + kRunDown - 1) / kRunDown;
  for (int i = threadIdx.x; i < lines * runs; i += blockDim.x) {
    const int a = i % lines;
    const int k = i / lines;
    const A* src = s_in + a * a_in + k * kRunDown * DOWN * w_step;
    A acc[kRunDown];
#pragma unroll
    for (int q = 0; q < kRunDown; ++q) acc[q] = A(0);
#pragma unroll
    for (int w = 0; w < WIN; ++w) {
      const A v = src[w * w_step];
#pragma unroll
      for (int q = 0; q < kRunDown; ++q) {
        const int t = w - q * DOWN;  // compile-time after unrolling
        if (t >= 0 && t < TD) acc[q] += g[t] * v;
      }
    }
    Out* dst = out + static_cast<int64_t>(a) * a_out;
#pragma unroll
    for (int q = 0; q < kRunDown; ++q) {
      const int o = k * kRunDown + q;
      if (o < n_out) dst[static_cast<int64_t>(o) * o_step] = from_acc<Out>(acc[q]);
    }
  }
}

template <typename scalar_t, int UP, int DOWN, int TU, int TD>
__global__ void __launch_bounds__(256)
    filtered_lrelu_blocked_kernel(BlockedParams<typename AccType<scalar_t>::type> p) {
  using A = typename AccType<scalar_t>::type;
  static_assert(TU % UP == 0 && kRunUp % UP == 0, "TU and kRunUp must be multiples of UP");
  SG3_DYNAMIC_SMEM(smem_raw);
  const BlockedLayout& L = p.L;
  A* buf_a = reinterpret_cast<A*>(smem_raw);
  A* buf_b = buf_a + L.buf_a;
  A* s_gu = buf_b + L.buf_b;
  A* s_gd = s_gu + TU;
  uint8_t* s_sign = reinterpret_cast<uint8_t*>(s_gd + TD);
  const int tid = threadIdx.x;
  const int nthreads = blockDim.x;

  // Taps, zero-padded to TU / TD, once per block (the first barrier of the plane loop publishes them).
  for (int t = tid; t < TU + TD; t += nthreads) {
    if (t < TU) s_gu[t] = t < p.fu_taps ? p.gu[t] : A(0);
    else s_gd[t - TU] = t - TU < p.fd_taps ? p.gd[t - TU] : A(0);
  }

  // Output tile, z region (zw x zh from (zx0, zy0)), up runs and input region (from (ix0, iy0)).
  const int ox0 = blockIdx.x * L.tile_w;
  const int oy0 = blockIdx.y * L.tile_h;
  const int tw = min(L.tile_w, p.OW - ox0);
  const int th = min(L.tile_h, p.OH - oy0);
  const int zx0 = ox0 * DOWN, zy0 = oy0 * DOWN;
  const int cx = pos_mod(zx0 - p.px0, UP), cy = pos_mod(zy0 - p.py0, UP);
  const AxisPlan<UP, DOWN, TU, TD> ax(tw, cx), ay(th, cy);
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

  const scalar_t* x = static_cast<const scalar_t*>(p.x);
  const scalar_t* bias = static_cast<const scalar_t*>(p.b);
  scalar_t* y = static_cast<scalar_t*>(p.y);
  const int planes = p.N * p.C;

  for (int plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const int n = plane / p.C;
    const int c = plane - n * p.C;
    const scalar_t* xp = x + n * p.sx_n + c * p.sx_c;
    const A bv = bias != nullptr ? to_acc(bias[c]) : A(0);
    const int64_t sign_base = static_cast<int64_t>(plane) * p.s_plane;

    // 1. Input region (+ bias, zero outside the image) -> s_x; sign bytes -> s_sign (read mode).
    A* s_x = buf_a;
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

    // 2. Upsample: x pass over the ih input rows into s_t, y pass over the zw columns into s_z. The up taps
    //    are read into registers once for both passes (TU broadcast loads per thread).
    A* s_t = buf_b;
    A* s_z = buf_a;
    {
      A g[TU];
#pragma unroll
      for (int t = 0; t < TU; ++t) g[t] = s_gu[t];
      up_pass<UP, TU>(s_x, L.pitch_x, 1, ay.in, ax.runs, cx, zw, s_t, L.pitch_z, 1, g);
      __syncthreads();
      up_pass<UP, TU>(s_t, 1, L.pitch_z, zw, ay.runs, cy, zh, s_z, 1, L.pitch_z, g);
    }
    __syncthreads();

    // 3. Activation in place; each item is 4 consecutive samples of one row (one sign byte), rows across
    //    the lanes of a warp (odd pitch: no bank conflicts).
    const int groups = (zw + 3) / 4;
    for (int i = tid; i < zh * groups; i += nthreads) {
      const int ky = i % zh;
      const int kx0 = (i / zh) * 4;
      A* row = s_z + ky * L.pitch_z;
      int byte = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int kx = kx0 + j;
        if (kx < zw) {
          int code_in = 0;
          if (p.sign_mode == kReadSigns) {
            const int rel = zx0 + p.sx + kx - sb0;
            code_in = (s_sign[ky * L.pitch_s + (rel >> 2)] >> ((rel & 3) * 2)) & 3;
          }
          int code = 0;
          row[kx] = fused_act(row[kx], p, code_in, &code);
          byte |= code << (2 * j);
        }
      }
      if (p.sign_mode == kWriteSigns) s_sign[ky * L.pitch_s + (kx0 >> 2)] = static_cast<uint8_t>(byte);
    }
    __syncthreads();

    // 4. Down x-pass at the kept columns into s_d [zh][tw]; sign bytes of this tile to global (write mode).
    //    The down taps stay in registers for both down passes.
    A* s_d = buf_b;
    A g[TD];
#pragma unroll
    for (int t = 0; t < TD; ++t) g[t] = s_gd[t];
    down_pass<DOWN, TD>(s_z, L.pitch_z, 1, zh, tw, s_d, L.pitch_d, 1, g);
    if (p.sign_mode == kWriteSigns) {
      for (int i = tid; i < zh * nb_write; i += nthreads) {
        const int ky = i / nb_write;
        const int bi = i - ky * nb_write;
        const int sy = zy0 + ky + p.sy;
        const int sxv = zx0 + 4 * bi + p.sx;
        if (ky < own_y1 && 4 * bi < own_x1 && sy >= 0 && sy < p.s_h && sxv >= 0 && sxv < p.s_wv)
          p.s_w[sign_base + static_cast<int64_t>(sy) * p.s_row + (sxv >> 2)] = s_sign[ky * L.pitch_s + bi];
      }
    }
    __syncthreads();

    // 5. Down y-pass at the kept rows, straight to the output (columns across lanes: coalesced stores).
    scalar_t* yp = y + static_cast<int64_t>(plane) * p.OH * p.OW + static_cast<int64_t>(oy0) * p.OW + ox0;
    down_pass<DOWN, TD>(s_d, 1, L.pitch_d, tw, th, yp, 1, p.OW, g);
  }
}

// Host side: the blocked instance of a call, if any (filtered_lrelu_blocked.cu).
template <typename scalar_t, int UP, int DOWN, int TU, int TD>
cudaError_t launch_blocked_instance(const FusedArgs& a, cudaStream_t stream) {
  using A = typename AccType<scalar_t>::type;
  static const int kTiles[][2] = {{32, 32}, {32, 16}, {16, 16}, {16, 8}, {8, 8}, {8, 4}, {4, 4}, {4, 2}, {4, 1}};
  const int max_w = round_up4(a.OW);
  BlockedLayout L;
  for (const auto& t : kTiles) {
    const int tw = t[0] < max_w ? t[0] : max_w;
    const int th = t[1] < a.OH ? t[1] : a.OH;
    L = plan_blocked<UP, DOWN, TU, TD>(tw, th, sizeof(A), a.sign_mode != kNoSigns);
    if (L.bytes <= static_cast<size_t>(kSmemBudget)) break;
    L.tile_w = 0;
  }
  if (L.tile_w == 0) return cudaErrorInvalidConfiguration;
  BlockedParams<A> p;
  p.x = a.x;
  p.b = a.b;
  p.y = a.y;
  p.gu = static_cast<const A*>(a.fu);
  p.gd = static_cast<const A*>(a.fd);
  p.fu_taps = a.fux;
  p.fd_taps = a.fdx;
  p.sx_n = a.sx_n;
  p.sx_c = a.sx_c;
  p.sx_h = a.sx_h;
  p.sx_w = a.sx_w;
  p.N = a.N;
  p.C = a.C;
  p.H = a.H;
  p.W = a.W;
  p.OH = a.OH;
  p.OW = a.OW;
  p.px0 = a.padx0;
  p.py0 = a.pady0;
  p.gain = static_cast<A>(a.gain);
  p.slope = static_cast<A>(a.slope);
  p.clamp = static_cast<A>(a.clamp);
  p.sign_mode = a.sign_mode;
  p.s_w = a.sign_mode == kWriteSigns ? static_cast<uint8_t*>(a.signs) : nullptr;
  p.s_r = a.sign_mode == kReadSigns ? static_cast<const uint8_t*>(a.signs) : nullptr;
  p.s_row = a.sign_row_bytes;
  p.s_plane = static_cast<int64_t>(a.sign_h) * a.sign_row_bytes;
  p.s_h = a.sign_h;
  p.s_wv = a.sign_w;
  p.sx = a.sign_x;
  p.sy = a.sign_y;
  p.L = L;
  const int64_t planes = static_cast<int64_t>(a.N) * a.C;
  const unsigned tiles_y = static_cast<unsigned>((a.OH + L.tile_h - 1) / L.tile_h);
  if (tiles_y > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>((a.OW + L.tile_w - 1) / L.tile_w), tiles_y,
                  static_cast<unsigned>(planes < 65535 ? planes : 65535));
  const auto kernel = &filtered_lrelu_blocked_kernel<scalar_t, UP, DOWN, TU, TD>;
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
