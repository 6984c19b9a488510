// upfirdn2d on CUDA: zero-insertion upsampling, zero padding (negative = crop), FIR filtering
// ("valid"), decimation -- spec section 2.1, computed polyphase (inserted zeros are never multiplied).
//
// One pass per launch with a 2-D correlation filter g (the host side flips it unless flip_filter,
// folds the gain in, and runs a separable filter as an x pass and a y pass). Per axis:
//   y[o] = sum_t g[t] * u[o*down + t - pad0],   u[j] = x[j/up] if j % up == 0 else 0.
// Only taps t with (o*down + t - pad0) % up == 0 contribute; they start at t0 = (pad0 - o*down) mod up
// and advance by `up` while the input index advances by 1.
//
// Two kernels: a tiled one (the input region of an output tile staged in shared memory, zero filled
// outside the image so the inner loops carry no bounds checks) and a direct one, used only when even
// the smallest tile's region does not fit the shared-memory budget (very large filters or factors).
// x may have any strides (channels_last and sliced views are read in place); y is contiguous NCHW.
// Copyright 2026 the sg3 authors. Apache-2.0.
#include "cuda_common.cuh"

namespace sg3cuda {
namespace {

template <typename A>
struct UpfirdnParams {
  const void* x;
  void* y;
  const A* g;  // [fh, fw] filter in correlation orientation, gain folded in
  int64_t sx_n, sx_c, sx_h, sx_w;  // input strides (elements)
  int N, C, H, W;                  // input shape
  int OH, OW;                      // output shape
  int upx, upy, downx, downy;
  int padx0, pady0;
  int fw, fh;
  int tile_w, tile_h;  // output tile (tiled kernel only)
};

// Input index range [lo, hi] feeding outputs [o0, o0 + n) along one axis.
__host__ __device__ __forceinline__ void input_range(int o0, int n, int down, int up, int pad0, int taps,
                                                     int* lo, int* hi) {
  *lo = ceil_div(o0 * down - pad0, up);
  *hi = floor_div((o0 + n - 1) * down + taps - 1 - pad0, up);
}

template <typename in_t, typename out_t>
__global__ void upfirdn2d_tiled_kernel(UpfirdnParams<typename AccType<in_t>::type> p) {
  using A = typename AccType<in_t>::type;
  SG3_DYNAMIC_SMEM(smem_raw);
  A* s_g = reinterpret_cast<A*>(smem_raw);  // [fh * fw]
  A* s_x = s_g + p.fh * p.fw;               // [rh, rw] staged input region

  const int tid = threadIdx.x;
  const int nthreads = blockDim.x;
  const int ox0 = blockIdx.x * p.tile_w;
  const int oy0 = blockIdx.y * p.tile_h;
  const int tw = min(p.tile_w, p.OW - ox0);
  const int th = min(p.tile_h, p.OH - oy0);
  int ix_lo, ix_hi, iy_lo, iy_hi;
  input_range(ox0, tw, p.downx, p.upx, p.padx0, p.fw, &ix_lo, &ix_hi);
  input_range(oy0, th, p.downy, p.upy, p.pady0, p.fh, &iy_lo, &iy_hi);
  const int rw = ix_hi - ix_lo + 1;
  const int rh = iy_hi - iy_lo + 1;

  for (int i = tid; i < p.fh * p.fw; i += nthreads) s_g[i] = p.g[i];

  const in_t* x = static_cast<const in_t*>(p.x);
  out_t* y = static_cast<out_t*>(p.y);
  const int planes = p.N * p.C;
  for (int plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const int n = plane / p.C;
    const int c = plane - n * p.C;
    const in_t* xp = x + n * p.sx_n + c * p.sx_c;
    __syncthreads();  // previous plane's readers are done with s_x (and s_g is loaded)
    for (int i = tid; i < rh * rw; i += nthreads) {
      const int r = i / rw;
      const int q = i - r * rw;
      const int iy = iy_lo + r;
      const int ix = ix_lo + q;
      A v = A(0);
      if (iy >= 0 && iy < p.H && ix >= 0 && ix < p.W) v = to_acc(xp[iy * p.sx_h + ix * p.sx_w]);
      s_x[r * rw + q] = v;
    }
    __syncthreads();
    out_t* yp = y + static_cast<int64_t>(plane) * p.OH * p.OW;
    for (int i = tid; i < th * tw; i += nthreads) {
      const int ty = i / tw;
      const int tx = i - ty * tw;
      const int oy = oy0 + ty;
      const int ox = ox0 + tx;
      const int t0y = pos_mod(p.pady0 - oy * p.downy, p.upy);
      const int t0x = pos_mod(p.padx0 - ox * p.downx, p.upx);
      const int ry0 = (oy * p.downy + t0y - p.pady0) / p.upy - iy_lo;  // exact division
      const int rx0 = (ox * p.downx + t0x - p.padx0) / p.upx - ix_lo;
      A acc = A(0);
      int ry = ry0;
      for (int fy = t0y; fy < p.fh; fy += p.upy, ++ry) {
        const A* grow = s_g + fy * p.fw;
        const A* xrow = s_x + ry * rw;
        int rx = rx0;
        for (int fx = t0x; fx < p.fw; fx += p.upx, ++rx) acc += grow[fx] * xrow[rx];
      }
      yp[oy * p.OW + ox] = from_acc<out_t>(acc);
    }
  }
}

// One thread per output sample, bounds checked in the inner loop; no shared memory.
template <typename in_t, typename out_t>
__global__ void upfirdn2d_direct_kernel(UpfirdnParams<typename AccType<in_t>::type> p) {
  using A = typename AccType<in_t>::type;
  const in_t* x = static_cast<const in_t*>(p.x);
  out_t* y = static_cast<out_t*>(p.y);
  const int64_t total = static_cast<int64_t>(p.N) * p.C * p.OH * p.OW;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int ox = static_cast<int>(i % p.OW);
    const int oy = static_cast<int>((i / p.OW) % p.OH);
    const int64_t plane = i / (static_cast<int64_t>(p.OW) * p.OH);
    const int n = static_cast<int>(plane / p.C);
    const int c = static_cast<int>(plane % p.C);
    const in_t* xp = x + n * p.sx_n + c * p.sx_c;
    const int t0y = pos_mod(p.pady0 - oy * p.downy, p.upy);
    const int t0x = pos_mod(p.padx0 - ox * p.downx, p.upx);
    A acc = A(0);
    int iy = (oy * p.downy + t0y - p.pady0) / p.upy;
    for (int fy = t0y; fy < p.fh; fy += p.upy, ++iy) {
      if (iy < 0 || iy >= p.H) continue;
      int ix = (ox * p.downx + t0x - p.padx0) / p.upx;
      for (int fx = t0x; fx < p.fw; fx += p.upx, ++ix) {
        if (ix < 0 || ix >= p.W) continue;
        acc += p.g[fy * p.fw + fx] * to_acc(xp[iy * p.sx_h + ix * p.sx_w]);
      }
    }
    y[i] = from_acc<out_t>(acc);
  }
}

// Largest input region an output tile of `tile` samples can need along one axis.
int max_region(int tile, int down, int up, int taps) { return ((tile - 1) * down + taps - 1) / up + 2; }

template <typename in_t, typename out_t>
cudaError_t launch_typed(const UpfirdnArgs& a, cudaStream_t stream) {
  using A = typename AccType<in_t>::type;
  UpfirdnParams<A> p;
  p.x = a.x;
  p.y = a.y;
  p.g = static_cast<const A*>(a.g);
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
  p.upx = a.upx;
  p.upy = a.upy;
  p.downx = a.downx;
  p.downy = a.downy;
  p.padx0 = a.padx0;
  p.pady0 = a.pady0;
  p.fw = a.fw;
  p.fh = a.fh;
  // The largest tile whose staged region fits the shared-memory budget (none: direct kernel).
  static const int kTiles[][2] = {{64, 16}, {32, 16}, {32, 8}, {16, 8}, {8, 8}, {8, 4}, {4, 4}, {2, 2}, {1, 1}};
  p.tile_w = p.tile_h = 0;
  size_t smem = 0;
  for (const auto& t : kTiles) {
    const int tw = t[0] < a.OW ? t[0] : a.OW;
    const int th = t[1] < a.OH ? t[1] : a.OH;
    const size_t need = sizeof(A) * (static_cast<size_t>(a.fh) * a.fw + static_cast<size_t>(max_region(tw, a.downx, a.upx, a.fw)) *
                                                                        max_region(th, a.downy, a.upy, a.fh));
    if (need <= static_cast<size_t>(kSmemBudget)) {
      p.tile_w = tw;
      p.tile_h = th;
      smem = need;
      break;
    }
  }
  if (p.tile_w > 0) {
    const int64_t planes = static_cast<int64_t>(a.N) * a.C;
    const unsigned tiles_y = static_cast<unsigned>((a.OH + p.tile_h - 1) / p.tile_h);
    if (tiles_y > 65535) return cudaErrorInvalidConfiguration;
    const dim3 grid(static_cast<unsigned>((a.OW + p.tile_w - 1) / p.tile_w), tiles_y,
                    static_cast<unsigned>(planes < 65535 ? planes : 65535));
    const auto kernel = &upfirdn2d_tiled_kernel<in_t, out_t>;
    SG3_LAUNCH(kernel, grid, 256, smem, stream, p);
  } else {
    const int64_t total = static_cast<int64_t>(a.N) * a.C * a.OH * a.OW;
    const auto kernel = &upfirdn2d_direct_kernel<in_t, out_t>;
    SG3_LAUNCH(kernel, grid_blocks(total, 256), 256, 0, stream, p);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_upfirdn2d(const UpfirdnArgs& a, cudaStream_t stream) {
  if (a.dtype_in == DType::kDouble || a.dtype_out == DType::kDouble) {
    if (a.dtype_in != a.dtype_out) return cudaErrorInvalidValue;
    return launch_typed<double, double>(a, stream);
  }
  // float32 compute: any storage mix of half / bf16 / float on either side.
  return dispatch_dtype(a.dtype_in, [&](auto in_tag) {
    return dispatch_dtype(a.dtype_out, [&](auto out_tag) -> cudaError_t {
      using in_t = decltype(in_tag);
      using out_t = decltype(out_tag);
      if constexpr (sizeof(in_t) == 8 || sizeof(out_t) == 8) {
        return cudaErrorInvalidValue;  // handled above
      } else {
        return launch_typed<in_t, out_t>(a, stream);
      }
    });
  });
}

}  // namespace sg3cuda
