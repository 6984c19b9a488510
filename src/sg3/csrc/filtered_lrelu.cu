// Fused filtered_lrelu on CUDA: tile selection and the choice of kernel instance.
//
// Specialised instances (factors and tap bounds known at compile time, inner loops unrolled) cover the
// configurations StyleGAN3 uses in its forward and backward passes: up/down (2, 2) with 12/12 taps,
// (4, 2) with 24/12 taps and its transpose (2, 4) with 12/24 taps, and (1, 1) without filters (ToRGB);
// further instances take every up/down in {1, 2, 4} with filters of up to 8 * factor taps. Everything
// else (other factors, longer filters, float64) runs the generic instance of the same tiled kernel.
// Copyright 2026 the sg3 authors. Apache-2.0.
#include "filtered_lrelu_kernel.cuh"

namespace sg3cuda {
namespace {

struct Tile {
  int w = 0, h = 0, buf_a = 0, buf_b = 0;  // output tile, shared-memory buffers (elements)
};

// Shared-memory buffers for an output tile of tw x th (see the kernel's stage comments).
Tile plan_tile(const FusedArgs& a, int tw, int th) {
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
Tile choose_tile(const FusedArgs& a, size_t acc_size) {
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
  p.x = a.x;
  p.b = a.b;
  p.y = a.y;
  const A* fu = static_cast<const A*>(a.fu);
  const A* fd = static_cast<const A*>(a.fd);
  p.gux = a.fu_2d ? nullptr : fu;
  p.guy = a.fu_2d ? nullptr : fu;
  p.gu2 = a.fu_2d ? fu : nullptr;
  p.gdx = a.fd_2d ? nullptr : fd;
  p.gdy = a.fd_2d ? nullptr : fd;
  p.gd2 = a.fd_2d ? fd : nullptr;
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
  p.up = a.up;
  p.down = a.down;
  p.px0 = a.padx0;
  p.py0 = a.pady0;
  p.fux = a.fux;
  p.fuy = a.fuy;
  p.fdx = a.fdx;
  p.fdy = a.fdy;
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
  p.tile_w = tile.w;
  p.tile_h = tile.h;
  p.buf_a = tile.buf_a;
  p.buf_b = tile.buf_b;
  const int64_t planes = static_cast<int64_t>(a.N) * a.C;
  const unsigned tiles_y = static_cast<unsigned>((a.OH + tile.h - 1) / tile.h);
  if (tiles_y > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>((a.OW + tile.w - 1) / tile.w), tiles_y,
                  static_cast<unsigned>(planes < 65535 ? planes : 65535));
  const size_t smem = sizeof(A) * (static_cast<size_t>(tile.buf_a) + tile.buf_b);
  filtered_lrelu_fused_kernel<scalar_t, UP, DOWN, MAXTU, MAXTD><<<grid, 256, smem, stream>>>(p);
  return cudaGetLastError();
}

// Specialised instances for float32-compute storage types (half, float).
template <typename scalar_t>
cudaError_t launch_fast(const FusedArgs& a, cudaStream_t stream, bool* handled) {
  *handled = false;
  if (a.fux != a.fuy || a.fdx != a.fdy) return cudaSuccess;  // non-square 2-D filters: generic
  *handled = true;
  const int u = a.up, d = a.down, tu = a.fux, td = a.fdx;
  if (u == 2 && d == 2 && tu == 12 && td == 12) return launch_instance<scalar_t, 2, 2, 12, 12>(a, stream);
  if (u == 4 && d == 2 && tu == 24 && td == 12) return launch_instance<scalar_t, 4, 2, 24, 12>(a, stream);
  if (u == 2 && d == 4 && tu == 12 && td == 24) return launch_instance<scalar_t, 2, 4, 12, 24>(a, stream);
  if (u == 1 && d == 1 && tu == 1 && td == 1) return launch_instance<scalar_t, 1, 1, 1, 1>(a, stream);
  if (tu <= 8 * u && td <= 8 * d) {
#define SG3_FAST_CASE(U, D) \
  if (u == U && d == D) return launch_instance<scalar_t, U, D, 8 * U, 8 * D>(a, stream);
    SG3_FAST_CASE(1, 1)
    SG3_FAST_CASE(1, 2)
    SG3_FAST_CASE(1, 4)
    SG3_FAST_CASE(2, 1)
    SG3_FAST_CASE(2, 2)
    SG3_FAST_CASE(2, 4)
    SG3_FAST_CASE(4, 1)
    SG3_FAST_CASE(4, 2)
    SG3_FAST_CASE(4, 4)
#undef SG3_FAST_CASE
  }
  *handled = false;
  return cudaSuccess;
}

}  // namespace

cudaError_t launch_filtered_lrelu(const FusedArgs& a, cudaStream_t stream) {
  if (static_cast<int64_t>(a.N) * a.C * a.OH * a.OW == 0) return cudaSuccess;
  if (a.sign_mode == kWriteSigns && (a.sign_x % 4 != 0)) return cudaErrorInvalidValue;
  switch (a.dtype) {
    case DType::kHalf: {
      bool handled = false;
      const cudaError_t err = launch_fast<__half>(a, stream, &handled);
      return handled ? err : launch_instance<__half, 0, 0, 0, 0>(a, stream);
    }
    case DType::kFloat: {
      bool handled = false;
      const cudaError_t err = launch_fast<float>(a, stream, &handled);
      return handled ? err : launch_instance<float, 0, 0, 0, 0>(a, stream);
    }
    case DType::kBFloat16:
      return launch_instance<__nv_bfloat16, 0, 0, 0, 0>(a, stream);
    case DType::kDouble:
      return launch_instance<double, 0, 0, 0, 0>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace sg3cuda
