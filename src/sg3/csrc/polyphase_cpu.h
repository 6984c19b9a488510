// Polyphase 1-D resampling building blocks for the CPU kernels (upfirdn2d, filtered_lrelu).
// Copyright 2026 the sg3 authors. Apache-2.0.
//
// A 1-D "pass" computes, for a correlation filter w[0..t), factors u (up) and D (down) and offset `off`,
//     d[j] = sum_k w[k] * U[j*D + k + off],    U[m] = s[m / u] if m % u == 0 else 0.
// Inserted zeros are never multiplied and only the kept outputs are computed.
//
// Rows are stored "phase-major" so that every inner loop is a unit-stride multiply-add:
// a row with P phases holds element s[a*P + p] at data[p*len + (a - a0)], a in [a0, a0 + len).
// If the output has Po phases and Pi = Po*D/u is an integer, output phase c is
//     d_c[b] = sum over taps (w, p, q) of w * s_p[b + q],
// a weighted sum of shifted input phase arrays (see Pass1D::build). Vertical passes (along y) combine
// whole rows in the same way, so all hot loops go through wsum().
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace sg3cpu {

inline int64_t floordiv(int64_t a, int64_t b) {  // b > 0, rounds toward -infinity
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
inline int64_t posmod(int64_t a, int64_t b) {  // result in [0, b)
  int64_t r = a % b;
  return r < 0 ? r + b : r;
}
inline int64_t ceildiv(int64_t a, int64_t b) { return -floordiv(-a, b); }
inline int64_t gcd64(int64_t a, int64_t b) { return b == 0 ? a : gcd64(b, a % b); }
inline int64_t lcm64(int64_t a, int64_t b) { return a / gcd64(a, b) * b; }
// Row lengths are rounded up to whole vectors so that no inner loop has a scalar tail.
inline int64_t round_up8(int64_t n) { return (n + 7) / 8 * 8; }

// out[0..n) (+)= sum_t ws[t] * srcs[t][0..n). Register-blocked so the compiler keeps the accumulators in
// vector registers across taps; this is the only hot loop of the resampling kernels.
// 256-bit vectors via GCC/Clang vector extensions (unaligned loads/stores through the may_alias types),
// so the hot loop compiles to broadcast + FMA on vector registers whatever the auto-vectorizer decides.
typedef float VecF __attribute__((vector_size(32), aligned(4), may_alias));
typedef double VecD __attribute__((vector_size(32), aligned(8), may_alias));
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  using type = VecF;
  static constexpr int kLanes = 8;
};
template <>
struct VecOf<double> {
  using type = VecD;
  static constexpr int kLanes = 4;
};

template <typename T, bool ACC>
inline void wsum(T* __restrict out, int64_t n, const T* const* srcs, const T* ws, int nt) {
  using V = typename VecOf<T>::type;
  constexpr int W = VecOf<T>::kLanes;
  int64_t b = 0;
  for (; b + 4 * W <= n; b += 4 * W) {  // 4 accumulators in registers across all taps
    V a0, a1, a2, a3;
    if constexpr (ACC) {
      a0 = *reinterpret_cast<const V*>(out + b);
      a1 = *reinterpret_cast<const V*>(out + b + W);
      a2 = *reinterpret_cast<const V*>(out + b + 2 * W);
      a3 = *reinterpret_cast<const V*>(out + b + 3 * W);
    } else {
      a0 = a1 = a2 = a3 = V{};
    }
    for (int t = 0; t < nt; ++t) {
      const T* s = srcs[t] + b;
      const T w = ws[t];
      a0 += w * *reinterpret_cast<const V*>(s);
      a1 += w * *reinterpret_cast<const V*>(s + W);
      a2 += w * *reinterpret_cast<const V*>(s + 2 * W);
      a3 += w * *reinterpret_cast<const V*>(s + 3 * W);
    }
    *reinterpret_cast<V*>(out + b) = a0;
    *reinterpret_cast<V*>(out + b + W) = a1;
    *reinterpret_cast<V*>(out + b + 2 * W) = a2;
    *reinterpret_cast<V*>(out + b + 3 * W) = a3;
  }
  for (; b + W <= n; b += W) {
    V a0 = ACC ? *reinterpret_cast<const V*>(out + b) : V{};
    for (int t = 0; t < nt; ++t) a0 += ws[t] * *reinterpret_cast<const V*>(srcs[t] + b);
    *reinterpret_cast<V*>(out + b) = a0;
  }
  for (; b < n; ++b) {
    T acc = ACC ? out[b] : T(0);
    for (int t = 0; t < nt; ++t) acc += ws[t] * srcs[t][b];
    out[b] = acc;
  }
}

template <typename T>
inline void wsum_any(bool accumulate, T* out, int64_t n, const T* const* srcs, const T* ws, int nt) {
  if (nt == 0) {
    if (!accumulate) std::fill(out, out + n, T(0));
  } else if (accumulate) {
    wsum<T, true>(out, n, srcs, ws, nt);
  } else {
    wsum<T, false>(out, n, srcs, ws, nt);
  }
}

// Layout of a phase-major row: P phases, each covering a in [a0, a0 + len).
struct PhasedLayout {
  int64_t P = 1, a0 = 0, len = 0;
  int64_t size() const { return P * len; }
};

// One 1-D pass, planned for Po output phases (Pi = Po * D / u input phases).
template <typename T>
struct Pass1D {
  struct Tap {
    T w;
    int64_t p, q;  // input phase, shift of a
  };
  int64_t Pi = 1, Po = 1;
  std::vector<std::vector<Tap>> phases;  // per output phase
  int64_t qmin = 0, qmax = 0;

  static constexpr int64_t kMaxTaps = 256;  // per axis; checked by the callers

  static Pass1D build(const T* w, int64_t taps, int64_t up, int64_t down, int64_t off, int64_t Po) {
    Pass1D pass;
    pass.Po = Po;
    pass.Pi = Po * down / up;  // callers choose Po so that this is exact
    pass.phases.resize(Po);
    bool first = true;
    for (int64_t c = 0; c < Po; ++c) {
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t m = c * down + k + off;
        if (posmod(m, up) != 0 || w[k] == T(0)) continue;
        const int64_t e = floordiv(m, up);
        Tap tap{w[k], posmod(e, pass.Pi), floordiv(e, pass.Pi)};
        pass.phases[c].push_back(tap);
        pass.qmin = first ? tap.q : std::min(pass.qmin, tap.q);
        pass.qmax = first ? tap.q : std::max(pass.qmax, tap.q);
        first = false;
      }
    }
    return pass;
  }

  // Input a-range [lo, hi) read when producing outputs b in [b0, b0 + nb).
  int64_t in_lo(int64_t b0) const { return b0 + qmin; }
  int64_t in_hi(int64_t b0, int64_t nb) const { return b0 + nb + qmax; }

  // Outputs b in [b0, b0 + nb) of every phase into out (layout Po x [lo.a0, lo.a0 + lo.len)), reading
  // in (layout Pi x [li.a0, li.a0 + li.len)); accumulate adds to out instead of overwriting it.
  void apply_range(const T* in, const PhasedLayout& li, T* out, const PhasedLayout& lo, int64_t b0, int64_t nb,
                   bool accumulate) const {
    const T* srcs[kMaxTaps];
    T ws[kMaxTaps];
    for (int64_t c = 0; c < Po; ++c) {
      const auto& taps = phases[c];
      const int nt = static_cast<int>(taps.size());
      for (int t = 0; t < nt; ++t) {
        srcs[t] = in + taps[t].p * li.len + (b0 + taps[t].q - li.a0);
        ws[t] = taps[t].w;
      }
      wsum_any(accumulate, out + c * lo.len + (b0 - lo.a0), nb, srcs, ws, nt);
    }
  }
  // Every output of the layout lo.
  void apply(const T* in, const PhasedLayout& li, T* out, const PhasedLayout& lo, bool accumulate) const {
    apply_range(in, li, out, lo, lo.a0, lo.len, accumulate);
  }
};

// dst (layout P x [a0, a0 + len)) = phases of the natural row src[0..n) (+ bias), zero outside [0, n).
template <typename T>
inline void deinterleave(const T* src, int64_t n, T bias, T* dst, const PhasedLayout& l) {
  std::fill(dst, dst + l.size(), T(0));
  for (int64_t p = 0; p < l.P; ++p) {
    T* d = dst + p * l.len - l.a0;
    const int64_t a_lo = std::max<int64_t>(l.a0, ceildiv(-p, l.P));              // first a with a*P + p >= 0
    const int64_t a_hi = std::min<int64_t>(l.a0 + l.len, ceildiv(n - p, l.P));  // first a with a*P + p >= n
    if (l.P == 1) {
      for (int64_t a = a_lo; a < a_hi; ++a) d[a] = src[a] + bias;
    } else {
      for (int64_t a = a_lo; a < a_hi; ++a) d[a] = src[a * l.P + p] + bias;
    }
  }
}

// dst[0..n) = natural order of the phase-major row src (layout P x [a0, ...)), a0 <= 0.
template <typename T, typename O>
inline void interleave(const T* src, const PhasedLayout& l, O* dst, int64_t n) {
  if (l.P == 1) {
    const T* s = src - l.a0;
    for (int64_t j = 0; j < n; ++j) dst[j] = static_cast<O>(s[j]);
    return;
  }
  for (int64_t p = 0; p < l.P; ++p) {
    const T* s = src + p * l.len - l.a0;
    for (int64_t a = 0; a * l.P + p < n; ++a) dst[a * l.P + p] = static_cast<O>(s[a]);
  }
}

// A filter in correlation orientation, either separable (gy x gx) or a full 2-D array (rows).
template <typename T>
struct Filter2 {
  bool separable = true;
  int64_t th = 1, tw = 1;
  std::vector<T> gx, gy;  // separable taps
  std::vector<T> g2;      // [th, tw] when not separable

  // f: 1-D (separable, same taps on both axes) or 2-D [th, tw], convolution orientation unless flip.
  // gain_x/gain_y scale the separable passes; gain2 scales a 2-D filter. Rank-1 2-D filters become separable.
  static Filter2 make(const T* f, int64_t ndim, int64_t th, int64_t tw, bool flip, double gain_sep, double gain2) {
    Filter2 F;
    F.th = th;
    F.tw = tw;
    if (ndim == 1) {
      F.gx.resize(tw);
      for (int64_t k = 0; k < tw; ++k) F.gx[k] = static_cast<T>(f[flip ? k : tw - 1 - k] * gain_sep);
      F.gy = F.gx;
      return F;
    }
    std::vector<double> g(th * tw);
    for (int64_t i = 0; i < th; ++i)
      for (int64_t j = 0; j < tw; ++j)
        g[i * tw + j] = static_cast<double>(flip ? f[i * tw + j] : f[(th - 1 - i) * tw + (tw - 1 - j)]) * gain2;
    // Rank-1 test: g = col * row, anchored at the largest entry.
    int64_t r = 0, c = 0;
    double big = 0;
    for (int64_t i = 0; i < th; ++i)
      for (int64_t j = 0; j < tw; ++j)
        if (std::abs(g[i * tw + j]) > big) big = std::abs(g[i * tw + j]), r = i, c = j;
    const double tol = (sizeof(T) == 4 ? 1e-7 : 1e-14) * big;
    bool rank1 = big > 0;
    for (int64_t i = 0; i < th && rank1; ++i)
      for (int64_t j = 0; j < tw && rank1; ++j)
        rank1 = std::abs(g[i * tw + j] - g[i * tw + c] * g[r * tw + j] / g[r * tw + c]) <= tol;
    if (rank1) {
      F.gy.resize(th);
      F.gx.resize(tw);
      for (int64_t i = 0; i < th; ++i) F.gy[i] = static_cast<T>(g[i * tw + c]);
      for (int64_t j = 0; j < tw; ++j) F.gx[j] = static_cast<T>(g[r * tw + j] / g[r * tw + c]);
      return F;
    }
    F.separable = false;
    F.g2.resize(th * tw);
    for (int64_t i = 0; i < th * tw; ++i) F.g2[i] = static_cast<T>(g[i]);
    return F;
  }

  // The transposed filter (both axes reversed), used by backward passes.
  Filter2 reversed() const {
    Filter2 R = *this;
    std::reverse(R.gx.begin(), R.gx.end());
    std::reverse(R.gy.begin(), R.gy.end());
    std::reverse(R.g2.begin(), R.g2.end());
    return R;
  }

  // Vertical weight of tap row ky (separable) or 1 (2-D: the row is in the horizontal pass).
  T vweight(int64_t ky) const { return separable ? gy[ky] : T(1); }
  // Horizontal taps of row ky.
  const T* hrow(int64_t ky) const { return separable ? gx.data() : g2.data() + ky * tw; }
  int64_t nrows_h() const { return separable ? 1 : th; }
};

}  // namespace sg3cpu
