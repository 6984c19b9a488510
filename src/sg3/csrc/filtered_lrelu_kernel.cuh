// Fused filtered leaky ReLU on CUDA (spec section 2.3): bias -> polyphase upsample (FIR fu, gain up^2)
// -> leaky ReLU * gain, clamp -> FIR fd + decimation, one shared-memory tile per block.
//
// Domains along one axis (x shown; y identical):
//   input  x[i], i in [0, W)                 (plus bias; zero outside the image)
//   "z"    z[k] = sum_t gu[t] * u[k + t - px0], u = x upsampled by zero insertion (polyphase here)
//   output y[o] = sum_t gd[t] * a[o*down + t],  a = act(z)
// gu/gd are the filters in correlation orientation (flipped unless flip_filter), gu with the gain up^2
// folded in (host side). Only the z samples that some output reads are computed, and the
// downsampling pass evaluates only kept positions.
//
// Signs (2 bits per z sample, 4 per byte, bit0 = negative, bit1 = clamped) are written in mode
// kWriteSigns and applied in kReadSigns, where the "act" stage becomes the derivative of the forward
// activation (backward pass of the transposed configuration). Tile ownership of sign bytes is
// disjoint (tile widths in z are multiples of 4 samples) so no two blocks write the same byte.
// Copyright 2026 the sg3 authors. Apache-2.0.
#pragma once

#include "cuda_common.cuh"

namespace sg3cuda {

// The parameters both fused kernels (tiled, blocked) take: image geometry, activation and signs.
template <typename A>
struct FusedCommon {
  const void* x;
  const void* b;  // [C] or nullptr
  void* y;
  int64_t sx_n, sx_c, sx_h, sx_w;  // input strides (elements)
  int N, C, H, W;
  int OH, OW;
  int px0, py0;
  A gain, slope, clamp;  // clamp < 0: none
  // Signs (see cuda_launch.cuh).
  int sign_mode;
  uint8_t* s_w;        // write target (mode kWriteSigns)
  const uint8_t* s_r;  // read source (mode kReadSigns)
  int64_t s_plane;     // bytes per (n, c) plane
  int s_row;           // bytes per row
  int s_h, s_wv;       // recorded rows, samples per row
  int sx, sy;          // offset of this call's z grid inside the recorded region
};

template <typename A>
struct FusedParams : FusedCommon<A> {
  const A* gux;  // separable up filter along x [fux] (or nullptr when fu is 2-D)
  const A* guy;  // separable up filter along y [fuy]
  const A* gu2;  // 2-D up filter [fuy, fux] (or nullptr when separable)
  const A* gdx;
  const A* gdy;
  const A* gd2;
  int up, down;
  int fux, fuy, fdx, fdy;
  // Tiling.
  int tile_w, tile_h;
  int buf_a, buf_b;  // shared-memory buffer sizes (elements)
};

// The input plane (n, c) = divmod(plane, C) and its bias (0 without one).
template <typename scalar_t, typename A>
__device__ __forceinline__ const scalar_t* plane_input(const FusedCommon<A>& p, int plane, A* bias) {
  const int n = plane / p.C;
  const int c = plane - n * p.C;
  *bias = p.b != nullptr ? to_acc(static_cast<const scalar_t*>(p.b)[c]) : A(0);
  return static_cast<const scalar_t*>(p.x) + n * p.sx_n + c * p.sx_c;
}

// sum_j g[t0 + j*step] * s[j*sstride] over t0 + j*step < T. With STEP and MAXT known at compile time
// the loop is unrolled and guarded (T <= MAXT is guaranteed by the host).
template <int STEP, int MAXT, typename A>
__device__ __forceinline__ A dot_strided(const A* __restrict__ g, int t0, int T, int step,
                                         const A* __restrict__ s, int sstride) {
  A acc = A(0);
  if constexpr (STEP > 0 && MAXT > 0) {
    constexpr int kJ = (MAXT + STEP - 1) / STEP;
#pragma unroll
    for (int j = 0; j < kJ; ++j) {
      const int t = t0 + j * STEP;
      if (t < T) acc += g[t] * s[j * sstride];
    }
  } else {
    int j = 0;
    for (int t = t0; t < T; t += step, ++j) acc += g[t] * s[j * sstride];
  }
  return acc;
}

// Activation applied to one z sample; returns the 2-bit sign code it produced (write mode).
// P: FusedParams<A> or BlockedParams<A> (fields sign_mode, gain, slope, clamp).
template <typename A, typename P>
__device__ __forceinline__ A fused_act(A v, const P& p, int code_in, int* code_out) {
  if (p.sign_mode == kReadSigns) {
    if (code_in & 2) return A(0);
    return v * p.gain * ((code_in & 1) ? p.slope : A(1));
  }
  int code = 0;
  if (v < A(0)) {
    v *= p.slope;
    code = 1;
  }
  v *= p.gain;
  if (p.clamp >= A(0) && (v > p.clamp || v < -p.clamp)) {
    v = v > A(0) ? p.clamp : -p.clamp;
    code |= 2;
  }
  *code_out = code;
  return v;
}

// UP/DOWN: compile-time factors (0 = runtime). MAXTU/MAXTD: compile-time bounds on taps (0 = runtime).
template <typename scalar_t, int UP, int DOWN, int MAXTU, int MAXTD>
__global__ void __launch_bounds__(256)
    filtered_lrelu_fused_kernel(FusedParams<typename AccType<scalar_t>::type> p) {
  using A = typename AccType<scalar_t>::type;
  SG3_DYNAMIC_SMEM(smem_raw);
  A* buf_a = reinterpret_cast<A*>(smem_raw);
  A* buf_b = buf_a + p.buf_a;

  const int up = UP > 0 ? UP : p.up;
  const int down = DOWN > 0 ? DOWN : p.down;
  const int tid = threadIdx.x;
  const int nthreads = blockDim.x;

  // Output tile and the z / input regions it needs.
  const int ox0 = blockIdx.x * p.tile_w;
  const int oy0 = blockIdx.y * p.tile_h;
  const int tw = min(p.tile_w, p.OW - ox0);
  const int th = min(p.tile_h, p.OH - oy0);
  const int zx0 = ox0 * down, zy0 = oy0 * down;
  const int zw = (tw - 1) * down + p.fdx;
  const int zh = (th - 1) * down + p.fdy;
  const int ix_lo = ceil_div(zx0 - p.px0, up);
  const int iy_lo = ceil_div(zy0 - p.py0, up);
  const int iw = floor_div(zx0 + zw - 1 + p.fux - 1 - p.px0, up) - ix_lo + 1;
  const int ih = floor_div(zy0 + zh - 1 + p.fuy - 1 - p.py0, up) - iy_lo + 1;
  const bool sep_up = p.gu2 == nullptr;
  const bool sep_down = p.gd2 == nullptr;

  // Sign ownership in z (columns [own_x0, own_x1), rows [own_y0, own_y1)): disjoint across tiles.
  const bool last_x = ox0 + p.tile_w >= p.OW;
  const bool last_y = oy0 + p.tile_h >= p.OH;
  const int own_x1 = last_x ? zw : min(zw, p.tile_w * down);
  const int own_y1 = last_y ? zh : min(zh, p.tile_h * down);

  scalar_t* y = static_cast<scalar_t*>(p.y);
  const int planes = p.N * p.C;

  for (int plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    A bv;
    const scalar_t* xp = plane_input<scalar_t>(p, plane, &bv);

    // 1. Input region (+ bias) -> s_x. Separable up: s_x = buf_a; 2-D up: s_x = buf_b.
    A* s_x = sep_up ? buf_a : buf_b;
    __syncthreads();
    for (int i = tid; i < ih * iw; i += nthreads) {
      const int r = i / iw;
      const int q = i - r * iw;
      const int iy = iy_lo + r, ix = ix_lo + q;
      A v = A(0);
      if (iy >= 0 && iy < p.H && ix >= 0 && ix < p.W) v = to_acc(xp[iy * p.sx_h + ix * p.sx_w]) + bv;
      s_x[i] = v;
    }
    __syncthreads();

    // 2. Upsample into s_z = buf_a [zh, zw].
    A* s_z = buf_a;
    if (sep_up) {
      A* s_t = buf_b;  // [ih, zw]: x pass
      for (int i = tid; i < ih * zw; i += nthreads) {
        const int r = i / zw;
        const int kx = i - r * zw;
        const int zx = zx0 + kx;
        const int t0 = pos_mod(p.px0 - zx, up);
        const int q0 = (zx + t0 - p.px0) / up - ix_lo;
        s_t[i] = dot_strided<UP, MAXTU>(p.gux, t0, p.fux, up, s_x + r * iw + q0, 1);
      }
      __syncthreads();
      for (int i = tid; i < zh * zw; i += nthreads) {  // y pass
        const int ky = i / zw;
        const int kx = i - ky * zw;
        const int zy = zy0 + ky;
        const int t0 = pos_mod(p.py0 - zy, up);
        const int r0 = (zy + t0 - p.py0) / up - iy_lo;
        s_z[i] = dot_strided<UP, MAXTU>(p.guy, t0, p.fuy, up, s_t + r0 * zw + kx, zw);
      }
    } else {
      for (int i = tid; i < zh * zw; i += nthreads) {
        const int ky = i / zw;
        const int kx = i - ky * zw;
        const int zy = zy0 + ky, zx = zx0 + kx;
        const int t0y = pos_mod(p.py0 - zy, up);
        const int t0x = pos_mod(p.px0 - zx, up);
        const int r0 = (zy + t0y - p.py0) / up - iy_lo;
        const int q0 = (zx + t0x - p.px0) / up - ix_lo;
        A acc = A(0);
        int r = r0;
        for (int ty = t0y; ty < p.fuy; ty += up, ++r)
          acc += dot_strided<UP, MAXTU>(p.gu2 + ty * p.fux, t0x, p.fux, up, s_x + r * iw + q0, 1);
        s_z[i] = acc;
      }
    }
    __syncthreads();

    // 3. Activation in place, with sign bytes (4 samples per thread step) in write/read modes.
    const int zw4 = (zw + 3) >> 2;
    for (int i = tid; i < zh * zw4; i += nthreads) {
      const int ky = i / zw4;
      const int kx0 = (i - ky * zw4) << 2;
      const int sy = zy0 + ky + p.sy;
      const int sxv = zx0 + kx0 + p.sx;  // value index of the first of the 4 samples
      int codes_in = 0;
      if (p.sign_mode == kReadSigns && sy >= 0 && sy < p.s_h) {
        const uint8_t* row = p.s_r + static_cast<int64_t>(plane) * p.s_plane + static_cast<int64_t>(sy) * p.s_row;
        // The 4 samples may straddle two bytes when the read offset is not a multiple of 4.
        for (int j = 0; j < 4; ++j) {
          const int v = sxv + j;
          if (v >= 0 && v < p.s_wv) codes_in |= ((row[v >> 2] >> ((v & 3) * 2)) & 3) << (2 * j);
          else codes_in |= 2 << (2 * j);  // outside the recorded region: no gradient
        }
      } else if (p.sign_mode == kReadSigns) {
        codes_in = 0xAA;  // whole row outside: all "clamped" (zero gradient)
      }
      int byte = 0;
      for (int j = 0; j < 4; ++j) {
        const int kx = kx0 + j;
        if (kx >= zw) break;
        int code = 0;
        A* v = s_z + ky * zw + kx;
        *v = fused_act(*v, p, (codes_in >> (2 * j)) & 3, &code);
        if (kx < own_x1) byte |= code << (2 * j);
      }
      if (p.sign_mode == kWriteSigns && ky < own_y1 && kx0 < own_x1 && sy >= 0 && sy < p.s_h && sxv >= 0 &&
          sxv < p.s_wv)
        p.s_w[static_cast<int64_t>(plane) * p.s_plane + static_cast<int64_t>(sy) * p.s_row + (sxv >> 2)] = static_cast<uint8_t>(byte);
    }
    __syncthreads();

    // 4. Downsample, evaluating only kept positions, and store.
    scalar_t* yp = y + static_cast<int64_t>(plane) * p.OH * p.OW;
    if (sep_down) {
      A* s_t = buf_b;  // [zh, tw]: x pass at kept columns
      for (int i = tid; i < zh * tw; i += nthreads) {
        const int r = i / tw;
        const int ox = i - r * tw;
        s_t[i] = dot_strided<1, MAXTD>(p.gdx, 0, p.fdx, 1, s_z + r * zw + ox * down, 1);
      }
      __syncthreads();
      for (int i = tid; i < th * tw; i += nthreads) {
        const int oy = i / tw;
        const int ox = i - oy * tw;
        const A v = dot_strided<1, MAXTD>(p.gdy, 0, p.fdy, 1, s_t + oy * down * tw + ox, tw);
        yp[(oy0 + oy) * p.OW + ox0 + ox] = from_acc<scalar_t>(v);
      }
    } else {
      for (int i = tid; i < th * tw; i += nthreads) {
        const int oy = i / tw;
        const int ox = i - oy * tw;
        A acc = A(0);
        for (int ty = 0; ty < p.fdy; ++ty)
          acc += dot_strided<1, MAXTD>(p.gd2 + ty * p.fdx, 0, p.fdx, 1, s_z + (oy * down + ty) * zw + ox * down, 1);
        yp[(oy0 + oy) * p.OW + ox0 + ox] = from_acc<scalar_t>(acc);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Host side: tile choice and the launch of one instance (shared by filtered_lrelu*.cu).


// The FusedCommon fields from the launcher's arguments.
template <typename A>
void fill_common(FusedCommon<A>& p, const FusedArgs& a) {
  p.x = a.x;
  p.b = a.b;
  p.y = a.y;
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
}

// Most planes one launch spreads over grid z; the kernels loop over the rest. The host emulation
// (tests/ops/cuda_emu) lowers it so that its small tests run those loops too.
#ifndef SG3_FUSED_MAX_GRID_Z
#define SG3_FUSED_MAX_GRID_Z 65535
#endif

// Grid of tile_w x tile_h output tiles (x, y) and planes (z); false if too tall.
inline bool fused_grid(const FusedArgs& a, int tile_w, int tile_h, dim3* grid) {
  const int64_t planes = static_cast<int64_t>(a.N) * a.C;
  const unsigned tiles_y = static_cast<unsigned>((a.OH + tile_h - 1) / tile_h);
  if (tiles_y > 65535) return false;
  *grid = dim3(static_cast<unsigned>((a.OW + tile_w - 1) / tile_w), tiles_y,
               static_cast<unsigned>(planes < SG3_FUSED_MAX_GRID_Z ? planes : SG3_FUSED_MAX_GRID_Z));
  return true;
}

struct Tile {
  int w = 0, h = 0, buf_a = 0, buf_b = 0;  // output tile, shared-memory buffers (elements)
};

// Shared-memory buffers for an output tile of tw x th (see the kernel's stage comments).
inline Tile plan_tile(const FusedArgs& a, int tw, int th) {
  Tile t;
  t.w = tw;
  t.h = th;
  const int zw = (tw - 1) * a.down + a.fdx, zh = (th - 1) * a.down + a.fdy;
  const int iw = (zw + a.fux - 2) / a.up + 2, ih = (zh + a.fuy - 2) / a.up + 2;  // upper bounds
  const int down_tmp = a.fd_2d ? 0 : zh * tw;
  if (!a.fu_2d) {
    t.buf_a = ih * iw > zh * zw ? ih * iw : zh * zw;
    t.buf_b = ih * zw > down_tmp ? ih * zw : down_tmp;
  } else {
    t.buf_a = zh * zw;
    t.buf_b = ih * iw > down_tmp ? ih * iw : down_tmp;
  }
  return t;
}

// The largest tile (width a multiple of 4, so sign bytes never straddle tiles) that fits the budget.
inline Tile choose_tile(const FusedArgs& a, size_t acc_size) {
  static const int kTiles[][2] = {{32, 32}, {32, 16}, {16, 16}, {16, 8}, {8, 8}, {8, 4}, {4, 4}, {4, 2}, {4, 1}};
  const int max_w = (a.OW + 3) / 4 * 4;
  for (const auto& c : kTiles) {
    const int tw = c[0] < max_w ? c[0] : max_w;
    const int th = c[1] < a.OH ? c[1] : a.OH;
    const Tile t = plan_tile(a, tw, th);
    if (acc_size * (static_cast<size_t>(t.buf_a) + t.buf_b) <= static_cast<size_t>(kSmemBudget)) return t;
  }
  return Tile{};
}

template <typename scalar_t, int UP, int DOWN, int MAXTU, int MAXTD>
cudaError_t launch_instance(const FusedArgs& a, cudaStream_t stream) {
  using A = typename AccType<scalar_t>::type;
  const Tile tile = choose_tile(a, sizeof(A));
  if (tile.w == 0) return cudaErrorInvalidConfiguration;  // host maps this to a clear message
  FusedParams<A> p;
  fill_common(p, a);
  const A* fu = static_cast<const A*>(a.fu);
  const A* fd = static_cast<const A*>(a.fd);
  p.gux = a.fu_2d ? nullptr : fu;
  p.guy = a.fu_2d ? nullptr : fu;
  p.gu2 = a.fu_2d ? fu : nullptr;
  p.gdx = a.fd_2d ? nullptr : fd;
  p.gdy = a.fd_2d ? nullptr : fd;
  p.gd2 = a.fd_2d ? fd : nullptr;
  p.up = a.up;
  p.down = a.down;
  p.fux = a.fux;
  p.fuy = a.fuy;
  p.fdx = a.fdx;
  p.fdy = a.fdy;
  p.tile_w = tile.w;
  p.tile_h = tile.h;
  p.buf_a = tile.buf_a;
  p.buf_b = tile.buf_b;
  dim3 grid;
  if (!fused_grid(a, tile.w, tile.h, &grid)) return cudaErrorInvalidConfiguration;
  const size_t smem = sizeof(A) * (static_cast<size_t>(tile.buf_a) + tile.buf_b);
  const auto kernel = &filtered_lrelu_fused_kernel<scalar_t, UP, DOWN, MAXTU, MAXTD>;
  SG3_LAUNCH(kernel, grid, 256, smem, stream, p);
  return cudaGetLastError();
}

// Instances for every up, down in {1, 2, 4} with filters of up to 8 * factor taps (filtered_lrelu_fast.cu);
// sets *handled = false when the call is not one of them.
template <typename scalar_t>
cudaError_t launch_fast_general(const FusedArgs& a, cudaStream_t stream, bool* handled);

// X(U, D) for every pair of factors in {1, 2, 4} (the general instances of both kernels).
#define SG3_FOR_EACH_FACTOR_PAIR(X) X(1, 1) X(1, 2) X(1, 4) X(2, 1) X(2, 2) X(2, 4) X(4, 1) X(4, 2) X(4, 4)

}  // namespace sg3cuda
