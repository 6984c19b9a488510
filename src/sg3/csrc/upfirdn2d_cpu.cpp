// upfirdn2d on CPU (spec 2.1; contract in ops.h), polyphase: inserted zeros are never multiplied and
// discarded samples never computed. A rank-1 2-D filter (e.g. setup_filter([1, 3, 3, 1])) runs as two
// 1-D passes. Work is split over (n, c) planes x bands of output rows with at::parallel_for. Without
// upsampling, a separable filter takes a shorter direct path (DirectPlan); narrow planes with a separable
// filter are vectorised across planes instead (LanePlan).
// Copyright 2026 the sg3 authors. Apache-2.0.
#define SG3_OPS_NAMESPACE sg3cpu
#include <ATen/Parallel.h>

#include <vector>

#include "ops.h"
#include "polyphase_cpu.h"
#include "pool_cpu.h"

namespace sg3cpu {
namespace {

// Largest planes (input or output) that the plane-vectorised path takes: rows up to 64 samples wide
// (measured faster than the row paths up to there, e.g. 2-4x at 16 wide), at most 256 rows (workspace).
constexpr int64_t kLaneMaxWidth = 64, kLaneMaxHeight = 256;

template <typename T>
struct UpfirdnPlan {
  Filter2<T> f;
  int64_t H, W, OH, OW, upy, downy, pady0;
  std::vector<Pass1D<T>> hpass;  // one per horizontal filter row (one if separable)
  PhasedLayout lx, lo;           // deinterleaved input row, phase-major output row
};

template <typename T>
void process_band(const UpfirdnPlan<T>& P, const T* xp, T* yp, int64_t j0, int64_t j1, std::vector<T>& ws) {
  const auto& F = P.f;
  const int64_t fh = F.th;
  const int64_t i_lo = std::max<int64_t>(0, ceildiv(j0 * P.downy - P.pady0, P.upy));
  const int64_t i_hi = std::min<int64_t>(P.H, floordiv((j1 - 1) * P.downy + fh - 1 - P.pady0, P.upy) + 1);
  const int64_t nrows = std::max<int64_t>(0, i_hi - i_lo);
  const int64_t row_size = F.separable ? P.lo.size() : P.lx.size();  // cached row per input row
  ws.resize(P.lx.size() + nrows * row_size + P.lo.size());
  T* xrow = ws.data();
  T* cache = xrow + P.lx.size();
  T* orow = cache + nrows * row_size;
  for (int64_t i = i_lo; i < i_hi; ++i) {
    T* dst = cache + (i - i_lo) * row_size;
    if (F.separable) {
      deinterleave(xp + i * P.W, P.W, T(0), xrow, P.lx);
      P.hpass[0].apply(xrow, P.lx, dst, P.lo, false);
    } else {
      deinterleave(xp + i * P.W, P.W, T(0), dst, P.lx);
    }
  }
  const T* srcs[Pass1D<T>::kMaxTaps];
  T wts[Pass1D<T>::kMaxTaps];
  for (int64_t j = j0; j < j1; ++j) {
    int nt = 0;
    bool any = false;
    for (int64_t ky = 0; ky < fh; ++ky) {
      const int64_t m = j * P.downy + ky - P.pady0;
      if (posmod(m, P.upy) != 0) continue;
      const int64_t i = floordiv(m, P.upy);
      if (i < 0 || i >= P.H) continue;
      const T* row = cache + (i - i_lo) * row_size;
      if (F.separable) {
        srcs[nt] = row;
        wts[nt++] = F.gy[ky];
      } else {
        P.hpass[ky].apply(row, P.lx, orow, P.lo, any);
        any = true;
      }
    }
    if (F.separable) {
      wsum_any(false, orow, P.lo.size(), srcs, wts, nt);
    } else if (!any) {
      std::fill(orow, orow + P.lo.size(), T(0));
    }
    interleave(orow, P.lo, yp + j * P.OW, P.OW);
  }
}

// No upsampling and a separable filter (e.g. the discriminator's [1, 3, 3, 1] FIR, with or without down):
// per output row, one vertical weighted sum of the input rows it needs, straight from x (no copies), into a
// zero-bordered row buffer, then one horizontal weighted sum into y (via downx phase arrays when downx > 1).
// Two unit-stride passes per output row instead of the general path's four, which matters for small images.
template <typename T>
struct DirectPlan {
  const Filter2<T>* f;
  int64_t H, W, OH, OW, downx, downy, padx0, pady0;
  int64_t padl, buf_len, phase_len;  // buffer column b holds input column b - padl

  void init(const Filter2<T>& F, int64_t H_, int64_t W_, int64_t OH_, int64_t OW_, int64_t dx, int64_t dy,
            int64_t px0, int64_t py0) {
    f = &F, H = H_, W = W_, OH = OH_, OW = OW_, downx = dx, downy = dy, padx0 = px0, pady0 = py0;
    padl = std::max<int64_t>(0, padx0);
    buf_len = std::max(padl + W, (OW - 1) * downx + F.tw - padx0 + padl);
    phase_len = ceildiv(buf_len, downx) + 1;
  }
  // ws must hold buf_len (+ downx * phase_len when downx > 1) elements.
  void rows(const T* x, T* y, int64_t j0, int64_t j1, T* ws) const {
    T* buf = ws;
    T* ph = ws + buf_len;
    std::fill(buf, buf + padl, T(0));
    std::fill(buf + padl + W, buf + buf_len, T(0));
    const T* srcs[Pass1D<T>::kMaxTaps];
    T wts[Pass1D<T>::kMaxTaps];
    const int64_t b0 = padl - padx0;  // buffer column of output 0, tap 0
    for (int64_t j = j0; j < j1; ++j) {
      int nt = 0;
      for (int64_t ky = 0; ky < f->th; ++ky) {
        const int64_t m = j * downy + ky - pady0;
        if (m < 0 || m >= H || f->gy[ky] == T(0)) continue;
        srcs[nt] = x + m * W;
        wts[nt++] = f->gy[ky];
      }
      wsum_any(false, buf + padl, W, srcs, wts, nt);
      const T* hsrc = buf;
      int64_t stride = 1;
      if (downx > 1) {  // ph[p * phase_len + a] = buf[a * downx + p]
        for (int64_t p = 0; p < downx; ++p) {
          T* d = ph + p * phase_len;
          const int64_t n = ceildiv(buf_len - p, downx);
          for (int64_t a = 0; a < n; ++a) d[a] = buf[a * downx + p];
          std::fill(d + n, d + phase_len, T(0));
        }
        hsrc = ph;
        stride = phase_len;
      }
      nt = 0;
      for (int64_t kx = 0; kx < f->tw; ++kx) {
        if (f->gx[kx] == T(0)) continue;
        const int64_t b = b0 + kx;  // + i * downx for output i
        srcs[nt] = hsrc + (b % downx) * stride + b / downx;
        wts[nt++] = f->gx[kx];
      }
      wsum_any(false, y + j * OW, OW, srcs, wts, nt);
    }
  }
};

// Narrow planes (the discriminator's 4..32-pixel blocks): rows are too short for the row-vectorised paths
// to amortise their per-row set-up, so vectorise across planes instead. A group of L planes (L = vector
// lanes) is transposed to [H][W][L], both 1-D passes then multiply-add whole vectors of L planes, and the
// result is transposed back. Per-axis tap tables list, for every output index, the (weight, input index)
// pairs that are in range and not inserted zeros, so up, down, padding and cropping are handled alike.
// In-register transpose of an 8x8 block of floats: r[l][k] -> r[k][l].
inline void transpose8(VecF r[8]) {
  typedef int VecI __attribute__((vector_size(32)));
  VecF t[8], u[8];
  for (int k = 0; k < 8; k += 2) {
    t[k] = __builtin_shuffle(r[k], r[k + 1], VecI{0, 8, 1, 9, 4, 12, 5, 13});
    t[k + 1] = __builtin_shuffle(r[k], r[k + 1], VecI{2, 10, 3, 11, 6, 14, 7, 15});
  }
  for (int k = 0; k < 8; k += 4) {
    u[k] = __builtin_shuffle(t[k], t[k + 2], VecI{0, 1, 8, 9, 4, 5, 12, 13});
    u[k + 1] = __builtin_shuffle(t[k], t[k + 2], VecI{2, 3, 10, 11, 6, 7, 14, 15});
    u[k + 2] = __builtin_shuffle(t[k + 1], t[k + 3], VecI{0, 1, 8, 9, 4, 5, 12, 13});
    u[k + 3] = __builtin_shuffle(t[k + 1], t[k + 3], VecI{2, 3, 10, 11, 6, 7, 14, 15});
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = __builtin_shuffle(u[k], u[k + 4], VecI{0, 1, 2, 3, 8, 9, 10, 11});
    r[k + 4] = __builtin_shuffle(u[k], u[k + 4], VecI{4, 5, 6, 7, 12, 13, 14, 15});
  }
}

// dst[q * L + l] = src[l * stride + q] for q < n, l < np (lanes l >= np are zero).
template <typename T>
inline void lanes_in(const T* src, int64_t n, int64_t np, T* dst) {
  constexpr int L = VecOf<T>::kLanes;
  int64_t q = 0;
  if constexpr (L == 8 && sizeof(T) == 4) {
    for (; q + 8 <= n; q += 8) {
      VecF r[8];
      for (int l = 0; l < 8; ++l) r[l] = l < np ? *reinterpret_cast<const VecF*>(src + l * n + q) : VecF{};
      transpose8(r);
      for (int k = 0; k < 8; ++k) *reinterpret_cast<VecF*>(dst + (q + k) * 8) = r[k];
    }
  }
  for (; q < n; ++q)
    for (int l = 0; l < L; ++l) dst[q * L + l] = l < np ? src[l * n + q] : T(0);
}

// dst[l * stride + i] = src[i * L + l] for i < n, l < np.
template <typename T>
inline void lanes_out(const T* src, int64_t n, int64_t np, T* dst, int64_t stride) {
  constexpr int L = VecOf<T>::kLanes;
  int64_t i = 0;
  if constexpr (L == 8 && sizeof(T) == 4) {
    for (; i + 8 <= n; i += 8) {
      VecF r[8];
      for (int k = 0; k < 8; ++k) r[k] = *reinterpret_cast<const VecF*>(src + (i + k) * 8);
      transpose8(r);
      for (int l = 0; l < np; ++l) *reinterpret_cast<VecF*>(dst + l * stride + i) = r[l];
    }
  }
  for (; i < n; ++i)
    for (int l = 0; l < np; ++l) dst[l * stride + i] = src[i * L + l];
}

template <typename T>
struct AxisTaps {
  int64_t nt = 0;                  // taps per output (the most any output has; the others are padded)
  std::vector<int64_t> idx, cnt;   // [out][nt] input indices, [out] taps in use
  std::vector<T> w;                // [out][nt] weights, 0 for the padding taps (which read index 0)

  // g: correlation taps; n input samples, out output samples.
  void build(const std::vector<T>& g, int64_t n, int64_t out, int64_t up, int64_t down, int64_t pad0) {
    std::vector<std::vector<std::pair<int64_t, T>>> lists(out);
    for (int64_t j = 0; j < out; ++j) {
      for (int64_t k = 0; k < static_cast<int64_t>(g.size()); ++k) {
        const int64_t m = j * down + k - pad0;
        if (posmod(m, up) != 0 || g[k] == T(0)) continue;
        const int64_t i = floordiv(m, up);
        if (i >= 0 && i < n) lists[j].emplace_back(i, g[k]);
      }
      nt = std::max<int64_t>(nt, static_cast<int64_t>(lists[j].size()));
    }
    idx.assign(out * nt, 0);
    w.assign(out * nt, T(0));
    cnt.assign(out, 0);
    for (int64_t j = 0; j < out; ++j) {
      cnt[j] = static_cast<int64_t>(lists[j].size());
      for (int64_t t = 0; t < cnt[j]; ++t) idx[j * nt + t] = lists[j][t].first, w[j * nt + t] = lists[j][t].second;
    }
  }
  int64_t total() const {
    int64_t s = 0;
    for (const int64_t c : cnt) s += c;
    return s;
  }
};

template <typename T>
struct LanePlan {
  using V = typename VecOf<T>::type;
  static constexpr int L = VecOf<T>::kLanes;
  AxisTaps<T> tx, ty;
  int64_t H, W, OH, OW;
  bool vfirst;  // vertical pass first (on [H][W][L] -> [OH][W][L]), else horizontal first

  void init(const Filter2<T>& F, int64_t H_, int64_t W_, int64_t OH_, int64_t OW_, int64_t upx, int64_t upy,
            int64_t downx, int64_t downy, int64_t padx0, int64_t pady0) {
    H = H_, W = W_, OH = OH_, OW = OW_;
    tx.build(F.gx, W, OW, upx, downx, padx0);
    ty.build(F.gy, H, OH, upy, downy, pady0);
    vfirst = W * ty.total() + OH * OW * tx.nt <= H * OW * tx.nt + OW * ty.total();
  }
  int64_t ws_len() const { return (H * W + (vfirst ? OH * W : H * OW) + OW) * L; }

  // out[i] (L lanes) = sum of the horizontal taps of output column i over in[k] (L lanes), for i < OW;
  // four columns at a time so that four independent multiply-add chains are in flight.
  void hpass(const T* in, T* out) const {
    const int64_t nt = tx.nt;
    const int64_t* ix = tx.idx.data();
    const T* wx = tx.w.data();
    int64_t i = 0;
    for (; i + 4 <= OW; i += 4) {
      V a0 = V{}, a1 = V{}, a2 = V{}, a3 = V{};
      const int64_t* i0 = ix + i * nt;
      const T* w0 = wx + i * nt;
      for (int64_t t = 0; t < nt; ++t) {
        a0 += w0[t] * *reinterpret_cast<const V*>(in + i0[t] * L);
        a1 += w0[nt + t] * *reinterpret_cast<const V*>(in + i0[nt + t] * L);
        a2 += w0[2 * nt + t] * *reinterpret_cast<const V*>(in + i0[2 * nt + t] * L);
        a3 += w0[3 * nt + t] * *reinterpret_cast<const V*>(in + i0[3 * nt + t] * L);
      }
      *reinterpret_cast<V*>(out + i * L) = a0;
      *reinterpret_cast<V*>(out + (i + 1) * L) = a1;
      *reinterpret_cast<V*>(out + (i + 2) * L) = a2;
      *reinterpret_cast<V*>(out + (i + 3) * L) = a3;
    }
    for (; i < OW; ++i) {
      V acc = V{};
      for (int64_t t = 0; t < nt; ++t) acc += wx[i * nt + t] * *reinterpret_cast<const V*>(in + ix[i * nt + t] * L);
      *reinterpret_cast<V*>(out + i * L) = acc;
    }
  }
  // out = sum of the vertical taps of output row j over rows of `len` elements of base.
  void vpass(const T* base, int64_t len, int64_t j, T* out) const {
    const T* srcs[Pass1D<T>::kMaxTaps];
    T wts[Pass1D<T>::kMaxTaps];
    int nt = 0;
    for (int64_t t = j * ty.nt; t < j * ty.nt + ty.cnt[j]; ++t) {
      srcs[nt] = base + ty.idx[t] * len;
      wts[nt++] = ty.w[t];
    }
    wsum_any(false, out, len, srcs, wts, nt);
  }
  // np (<= L) planes starting at x -> y; ws holds ws_len() elements.
  void group(const T* x, T* y, int64_t np, T* ws) const {
    T* tin = ws;
    T* mid = tin + H * W * L;
    T* orow = mid + (vfirst ? OH * W : H * OW) * L;
    lanes_in(x, H * W, np, tin);
    for (int64_t j = 0; j < OH; ++j) {
      if (vfirst) {
        if (j == 0)
          for (int64_t r = 0; r < OH; ++r) vpass(tin, W * L, r, mid + r * W * L);
        hpass(mid + j * W * L, orow);
      } else {
        if (j == 0)
          for (int64_t r = 0; r < H; ++r) hpass(tin + r * W * L, mid + r * OW * L);
        vpass(mid, OW * L, j, orow);
      }
      lanes_out(orow, OW, np, y + j * OW, OH * OW);
    }
  }
};

}  // namespace

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                     int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip,
                     double gain) {
  TORCH_CHECK(x.device().is_cpu() && f.device().is_cpu(), "sg3_ops_cpu.upfirdn2d: x and f must be CPU tensors");
  TORCH_CHECK(x.dim() == 4, "sg3_ops_cpu.upfirdn2d: x must be [N, C, H, W], got shape ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "sg3_ops_cpu.upfirdn2d: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(f.dim() == 2 && f.size(0) >= 1 && f.size(1) >= 1 && f.size(0) <= 256 && f.size(1) <= 256,
              "sg3_ops_cpu.upfirdn2d: f must be a 2-D filter [fh, fw] with 1..256 taps per axis, got shape ",
              f.sizes());
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1,
              "sg3_ops_cpu.upfirdn2d: up and down factors must be >= 1, got up (", upx, ", ", upy, ") down (", downx,
              ", ", downy, ")");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t fh = f.size(0), fw = f.size(1);
  const int64_t OH = floordiv(H * upy + pady0 + pady1 - (fh - 1) + downy - 1, downy);
  const int64_t OW = floordiv(W * upx + padx0 + padx1 - (fw - 1) + downx - 1, downx);
  TORCH_CHECK(OH >= 1 && OW >= 1, "sg3_ops_cpu.upfirdn2d: padding (", padx0, ", ", padx1, ", ", pady0, ", ", pady1,
              ") and filter ", fh, "x", fw, " leave no output for input ", x.sizes());
  // No samples (N, C, H or W = 0): padding alone makes the output, which is all zeros. The planners below
  // divide by the plane count and the plane size.
  if (x.numel() == 0) return at::zeros({N, C, OH, OW}, x.options());
  const auto xc = x.contiguous();
  auto y = empty_output({N, C, OH, OW}, xc.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sg3_upfirdn2d_cpu", [&] {
    using T = scalar_t;
    const auto fc = f.to(xc.scalar_type()).contiguous();
    UpfirdnPlan<T> P;
    P.f = Filter2<T>::make(fc.data_ptr<T>(), 2, fh, fw, flip, 1.0, gain);
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    if (P.f.separable && std::max(W, OW) <= kLaneMaxWidth && std::max(H, OH) <= kLaneMaxHeight &&
        N * C >= LanePlan<T>::L) {
      LanePlan<T> Lp;
      Lp.init(P.f, H, W, OH, OW, upx, upy, downx, downy, padx0, pady0);
      constexpr int64_t kL = LanePlan<T>::L;
      const int64_t groups = ceildiv(N * C, kL);
      const int64_t grain = std::max<int64_t>(1, 16384 / (std::max(H * W, OH * OW) * kL));
      at::parallel_for(0, groups, grain, [&](int64_t g0, int64_t g1) {
        std::vector<T> ws(Lp.ws_len());
        for (int64_t g = g0; g < g1; ++g) {
          const int64_t p0 = g * kL;
          Lp.group(xp + p0 * H * W, yp + p0 * OH * OW, std::min(kL, N * C - p0), ws.data());
        }
      });
      return;
    }
    if (upx == 1 && upy == 1 && P.f.separable) {
      DirectPlan<T> D;
      D.init(P.f, H, W, OH, OW, downx, downy, padx0, pady0);
      // Tasks: whole planes, or bands of rows when there are fewer planes than 4 per thread.
      const int64_t min_tasks = 4 * at::get_num_threads();
      const int64_t band = N * C >= min_tasks ? OH : std::max<int64_t>(1, OH / ceildiv(min_tasks, N * C));
      const int64_t nbands = ceildiv(OH, band);
      const int64_t ws_len = D.buf_len + (downx > 1 ? downx * D.phase_len : 0);
      at::parallel_for(0, N * C * nbands, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, band * OW)),
                       [&](int64_t t0, int64_t t1) {
                         std::vector<T> ws(ws_len);
                         for (int64_t t = t0; t < t1; ++t) {
                           const int64_t plane = t / nbands, b = t % nbands;
                           D.rows(xp + plane * H * W, yp + plane * OH * OW, b * band, std::min(OH, (b + 1) * band),
                                  ws.data());
                         }
                       });
      return;
    }
    P.H = H, P.W = W, P.OH = OH, P.OW = OW, P.upy = upy, P.downy = downy, P.pady0 = pady0;
    const int64_t L = lcm64(upx, downx);
    const int64_t Po = L / downx, nbo = round_up8(ceildiv(OW, Po));
    int64_t qmin = 0, qmax = 0;
    for (int64_t r = 0; r < P.f.nrows_h(); ++r) {
      P.hpass.push_back(Pass1D<T>::build(P.f.hrow(r), fw, upx, downx, -padx0, Po));
      qmin = r == 0 ? P.hpass[r].qmin : std::min(qmin, P.hpass[r].qmin);
      qmax = r == 0 ? P.hpass[r].qmax : std::max(qmax, P.hpass[r].qmax);
    }
    P.lo = {Po, 0, nbo};
    P.lx = {L / upx, qmin, nbo - 1 + qmax - qmin + 1};
    // Bands of output rows: about 128 KiB of cached rows each, and enough tasks for every thread.
    const int64_t row_bytes = (P.f.separable ? P.lo.size() : P.lx.size()) * sizeof(T);
    int64_t band = std::max<int64_t>(1, (128 << 10) / std::max<int64_t>(1, row_bytes * std::max<int64_t>(1, downy)));
    const int64_t min_tasks = 4 * at::get_num_threads();
    if (N * C * ceildiv(OH, band) < min_tasks) band = std::max<int64_t>(1, OH / ceildiv(min_tasks, N * C));
    band = std::min(band, OH);
    const int64_t nbands = ceildiv(OH, band);
    at::parallel_for(0, N * C * nbands, 1, [&](int64_t t0, int64_t t1) {
      std::vector<T> ws;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t plane = t / nbands, b = t % nbands;
        process_band(P, xp + plane * H * W, yp + plane * OH * OW, b * band, std::min(OH, (b + 1) * band), ws);
      }
    });
  });
  return y;
}

}  // namespace sg3cpu
