// upfirdn2d on CPU (spec 2.1; contract in ops.h), polyphase: inserted zeros are never multiplied and
// discarded samples never computed. A rank-1 2-D filter (e.g. setup_filter([1, 3, 3, 1])) runs as two
// 1-D passes. Work is split over (n, c) planes x bands of output rows with at::parallel_for. Without
// upsampling, a separable filter takes a shorter direct path (DirectPlan).
// Copyright 2026 the sg3 authors. Apache-2.0.
#define SG3_OPS_NAMESPACE sg3cpu
#include <ATen/Parallel.h>

#include <vector>

#include "ops.h"
#include "polyphase_cpu.h"

namespace sg3cpu {
namespace {

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
  const auto xc = x.contiguous();
  auto y = at::empty({N, C, OH, OW}, xc.options());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sg3_upfirdn2d_cpu", [&] {
    using T = scalar_t;
    const auto fc = f.to(xc.scalar_type()).contiguous();
    UpfirdnPlan<T> P;
    P.f = Filter2<T>::make(fc.data_ptr<T>(), 2, fh, fw, flip, 1.0, gain);
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
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
