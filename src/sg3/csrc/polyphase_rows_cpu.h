// Multi-row weighted sums for the separable passes of the CPU filtered_lrelu (builds on polyphase_cpu.h).
// Copyright 2026 the sg3 authors. Apache-2.0.
//
// wsum() computes one output row at a time with 4 vector accumulators; on short rows (a 36-pixel layer has
// 40-48 samples per phase) most of its work falls into the one-accumulator tail, where every multiply-add
// waits for the previous one. The kernel here, mwsum, computes several output rows per sweep instead: O rows
// with the same taps (a horizontal pass over a band of rows), or O rows with their own weights on shared
// source rows (a vertical pass: neighbouring output rows of an up or down pass, each source vector loaded
// once). It keeps O x V vector accumulators in registers (8 here: enough independent multiply-adds in flight to
// hide the FMA latency with 16 vector registers).
#pragma once

#include <vector>

#include "polyphase_cpu.h"

namespace sg3cpu {

// Source rows of a vertical pass: output row r reads source row s = m / f with filter tap k wherever
// m = r * mul + sgn * k + off is a multiple of f and lo <= s < hi.
struct RowMap {
  int64_t mul = 1, sgn = 1, off = 0, f = 1, lo = 0, hi = 0;

  // Fills s[] and k[] (at most `taps` entries, in order of k) for output row r; returns the count.
  int taps_of(int64_t r, int64_t taps, int64_t* s, int64_t* k) const {
    const int64_t m0 = r * mul + off;
    const int64_t k0 = posmod(-sgn * m0, f);  // first tap with m a multiple of f; then every f-th tap
    int64_t ss = (m0 + sgn * k0) / f;         // exact
    int n = 0;
    for (int64_t kk = k0; kk < taps; kk += f, ss += sgn) {
      if (ss < lo || ss >= hi) continue;
      s[n] = ss;
      k[n++] = kk;
    }
    return n;
  }
};

// Row o in [0, O): outs[o][b] = sum_t w(o, t) * src(o, t)[b], b in [0, n), where
//   SHARED:  src(o, t) = srcs[t],                w(o, t) = W[o * nt + t]  (vertical: each source loaded once),
//   !SHARED: src(o, t) = srcs[t] + soff + o * is, w(o, t) = W[t]          (horizontal: O rows, same taps).
template <typename T, int O, int V, bool SHARED>
inline void mwsum(T* const* outs, int64_t n, const T* const* srcs, int64_t soff, int64_t is, const T* W, int nt) {
  using Vec = typename VecOf<T>::type;
  constexpr int L = VecOf<T>::kLanes;
  const auto src = [&](int t, int o) { return SHARED ? srcs[t] : srcs[t] + soff + o * is; };
  const auto wt = [&](int t, int o) { return SHARED ? W[o * nt + t] : W[t]; };
  int64_t b = 0;
  for (; b + V * L <= n; b += V * L) {
    Vec acc[O][V] = {};
    for (int t = 0; t < nt; ++t) {
      for (int o = 0; o < O; ++o) {
        const T w = wt(t, o);
        const T* s = src(t, o) + b;
        for (int v = 0; v < V; ++v) acc[o][v] += w * *reinterpret_cast<const Vec*>(s + v * L);
      }
    }
    for (int o = 0; o < O; ++o)
      for (int v = 0; v < V; ++v) *reinterpret_cast<Vec*>(outs[o] + b + v * L) = acc[o][v];
  }
  for (; b + L <= n; b += L) {
    Vec acc[O] = {};
    for (int t = 0; t < nt; ++t)
      for (int o = 0; o < O; ++o) acc[o] += wt(t, o) * *reinterpret_cast<const Vec*>(src(t, o) + b);
    for (int o = 0; o < O; ++o) *reinterpret_cast<Vec*>(outs[o] + b) = acc[o];
  }
  for (; b < n; ++b) {
    for (int o = 0; o < O; ++o) {
      T acc = T(0);
      for (int t = 0; t < nt; ++t) acc += wt(t, o) * src(t, o)[b];
      outs[o][b] = acc;
    }
  }
}

// Columns of the output-row pair (r, r + 1) (just r when O == 1) of a vertical pass: the union of their
// source rows, increasing, in col_s[0..nu), with weights W[c] (row r) and W[nu + c] (row r + 1, 0 where it does
// not read col c). Returns nu.
template <typename T>
int pair_columns(const RowMap& map, int64_t r, int O, const T* g, int64_t taps, int64_t* col_s, T* W) {
  constexpr int64_t kMax = Pass1D<T>::kMaxTaps;
  int64_t s[2][kMax], k[2][kMax];
  int cnt[2] = {0, 0};
  for (int o = 0; o < O; ++o) {
    cnt[o] = map.taps_of(r + o, taps, s[o], k[o]);
    if (map.sgn < 0) {  // listed with s decreasing: reverse
      std::reverse(s[o], s[o] + cnt[o]);
      std::reverse(k[o], k[o] + cnt[o]);
    }
  }
  int nu = 0, i0 = 0, i1 = 0;
  T w1[2 * kMax];
  while (i0 < cnt[0] || i1 < cnt[1]) {
    const int64_t a = i0 < cnt[0] ? s[0][i0] : INT64_MAX, b = i1 < cnt[1] ? s[1][i1] : INT64_MAX;
    const int64_t sc = std::min(a, b);
    col_s[nu] = sc;
    W[nu] = a == sc ? g[k[0][i0++]] : T(0);
    w1[nu] = b == sc ? g[k[1][i1++]] : T(0);
    ++nu;
  }
  std::copy(w1, w1 + nu, W + nu);
  return nu;
}

// Vertical pass with 1-D taps g[0..taps): output rows r in [r0, r1) at out + (r - r0) * ostride, each
// out(r) = sum over (s, k) of map.taps_of(r) of g[k] * in(s), in(s) = in + (s - s0) * istride, n samples per
// row. Neighbouring output rows go in pairs that read the union of their source rows once. The pairs' columns
// repeat every lcm(2, f) rows with the sources shifted by lcm(2, f) / f * mul, so they are worked out once
// per band (without the [lo, hi) limits) and only pairs at the borders are recomputed.
template <typename T>
void vertical_pass(const RowMap& map, const T* g, int64_t taps, const T* in, int64_t s0, int64_t istride, T* out,
                   int64_t r0, int64_t r1, int64_t ostride, int64_t n) {
  constexpr int64_t kMax = Pass1D<T>::kMaxTaps;
  const int64_t period = map.f % 2 == 0 ? map.f : 2 * map.f, npat = period / 2;
  const int64_t shift = period / map.f * map.mul;  // source shift between pairs one period apart
  RowMap open = map;
  open.lo = INT64_MIN / 4, open.hi = INT64_MAX / 4;
  const int64_t cap = 2 * taps;
  std::vector<int64_t> pat_s(npat * cap);
  std::vector<T> pat_w(npat * 2 * cap);
  std::vector<int> pat_n(npat);
  for (int64_t p = 0; p < npat && r0 + 2 * p + 1 < r1; ++p)
    pat_n[p] = pair_columns(open, r0 + 2 * p, 2, g, taps, pat_s.data() + p * cap, pat_w.data() + p * 2 * cap);
  const T* srcs[2 * kMax];
  int64_t col_s[2 * kMax];
  T W[4 * kMax];
  for (int64_t r = r0; r < r1; r += 2) {
    const int O = r + 1 < r1 ? 2 : 1;
    T* outs[2] = {out + (r - r0) * ostride, out + (r + O - 1 - r0) * ostride};
    const int64_t p = (r - r0) / 2;
    const int64_t* ps = pat_s.data() + (p % npat) * cap;
    const int nu = O == 2 ? pat_n[p % npat] : 0;
    const int64_t d = (p / npat) * shift;
    if (O == 2 && (nu == 0 || (ps[0] + d >= map.lo && ps[nu - 1] + d < map.hi))) {
      for (int c = 0; c < nu; ++c) srcs[c] = in + (ps[c] + d - s0) * istride;
      mwsum<T, 2, 4, true>(outs, n, srcs, 0, 0, pat_w.data() + (p % npat) * 2 * cap, nu);
      continue;
    }
    const int m = pair_columns(map, r, O, g, taps, col_s, W);
    for (int c = 0; c < m; ++c) srcs[c] = in + (col_s[c] - s0) * istride;
    if (O == 2) mwsum<T, 2, 4, true>(outs, n, srcs, 0, 0, W, m);
    else mwsum<T, 1, 8, true>(outs, n, srcs, 0, 0, W, m);
  }
}

// Horizontal pass over nrows rows: row r of `in` (layout li) at in + r * istride, of `out` (layout lo) at
// out + r * ostride; outputs b in [b0, b0 + nb) of every phase are overwritten.
template <typename T>
void hpass_rows(const Pass1D<T>& pass, const T* in, const PhasedLayout& li, int64_t istride, T* out,
                const PhasedLayout& lo, int64_t ostride, int64_t nrows, int64_t b0, int64_t nb) {
  const T* srcs[Pass1D<T>::kMaxTaps];
  T ws[Pass1D<T>::kMaxTaps];
  for (int64_t c = 0; c < pass.Po; ++c) {
    const auto& taps = pass.phases[c];
    const int nt = static_cast<int>(taps.size());
    for (int t = 0; t < nt; ++t) {
      srcs[t] = in + taps[t].p * li.len + (b0 + taps[t].q - li.a0);
      ws[t] = taps[t].w;
    }
    T* oc = out + c * lo.len + (b0 - lo.a0);
    T* rows[4];
    for (int64_t r = 0; r < nrows;) {
      const int64_t O = nrows - r >= 4 ? 4 : (nrows - r >= 2 ? 2 : 1);
      for (int64_t o = 0; o < O; ++o) rows[o] = oc + (r + o) * ostride;
      if (O == 4) mwsum<T, 4, 2, false>(rows, nb, srcs, r * istride, istride, ws, nt);
      else if (O == 2) mwsum<T, 2, 4, false>(rows, nb, srcs, r * istride, istride, ws, nt);
      else mwsum<T, 1, 8, false>(rows, nb, srcs, r * istride, istride, ws, nt);
      r += O;
    }
  }
}

}  // namespace sg3cpu
