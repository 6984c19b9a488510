// filtered_lrelu on CPU (spec 2.3; contract in ops.h), fused forward and backward.
// Copyright 2026 the sg3 authors. Apache-2.0.
//
// Along x, rows are kept phase-major (polyphase_cpu.h) with Lx = lcm(up, down) phases on the "z grid"
// (the upsampled samples the downsampler reads), so the upsampling pass never multiplies inserted zeros,
// the downsampling pass computes only kept samples, and every inner loop is a unit-stride multiply-add.
// Along y, output rows are weighted sums of whole rows. One task = one (n, c) plane x one band of output
// rows (bands sized so the band's z rows stay in L2); at::parallel_for runs the tasks.
//
// Forward per band: bias + deinterleave input rows -> horizontal up pass -> vertical up pass (z rows)
// -> lrelu * gain, clamp, record codes -> vertical down pass -> horizontal down pass -> output row.
// Backward per band of dx rows: the transposed passes in reverse order, with the recorded codes applied
// on the z grid (gain, gain * slope or 0). A separable filter runs each 1-D pass over the whole band at once
// (polyphase_rows_cpu.h: horizontal passes several rows per sweep, vertical passes two output rows per
// sweep over their shared source rows), which keeps 8 vector accumulators busy even on 36-pixel layers.
// A 2-D filter (e.g. the radial down filter of config R) runs one horizontal pass per filter row.
// Codes: 2 bits per z-grid sample, packed 4 per byte, so a phase-major z row is Lx * nbz / 4 bytes; written
// and applied by sign_codes_cpu.h.
#define SG3_OPS_NAMESPACE sg3cpu
#include <ATen/Parallel.h>

#include <vector>

#include "ops.h"
#include "polyphase_cpu.h"
#include "polyphase_rows_cpu.h"
#include "sign_codes_cpu.h"

namespace sg3cpu {
namespace {

using sign_codes::activate;
using sign_codes::apply_codes;

template <typename T>
struct FlPlan {
  Filter2<T> fu, fd;                    // correlation taps (fu with gain up^2)
  int64_t N, C, H, W, OH, OW, up, down, px0, py0;
  int64_t L, nbz, Hz;                   // phases, z-grid row length in a, z-grid rows
  PhasedLayout lx, lz, ly;              // forward: input row, z row, output row
  PhasedLayout ldy, ldz, ldx;           // backward: dy row, dz row (with zero halo), dx row
  std::vector<Pass1D<T>> up_h, down_h;  // forward horizontal passes, per filter row
  std::vector<Pass1D<T>> bup_h, bdown_h;  // backward horizontal passes, per filter row
  T gain, slope, clamp;
  bool fd_mirror = false;  // 2-D fd whose row k equals row th-1-k (radial filters): fold the row pairs
  int64_t band;  // output rows (forward) or dx rows (backward) per task
};

template <typename T>
std::vector<T> reversed(const T* w, int64_t n) {
  return std::vector<T>(std::make_reverse_iterator(w + n), std::make_reverse_iterator(w));
}

template <typename T>
void range_of(const std::vector<Pass1D<T>>& passes, int64_t& qmin, int64_t& qmax) {
  qmin = passes[0].qmin, qmax = passes[0].qmax;
  for (const auto& p : passes) qmin = std::min(qmin, p.qmin), qmax = std::max(qmax, p.qmax);
}

template <typename T>
void plan_axes(FlPlan<T>& P) {
  const int64_t L = P.L = lcm64(P.up, P.down);
  const int64_t tuw = P.fu.tw, tdw = P.fd.tw;
  int64_t qmin, qmax;
  // Forward down pass: output phases L / down, input = z grid with L phases.
  const int64_t nbo = round_up8(ceildiv(P.OW, L / P.down));
  for (int64_t r = 0; r < P.fd.nrows_h(); ++r) P.down_h.push_back(Pass1D<T>::build(P.fd.hrow(r), tdw, 1, P.down, 0, L / P.down));
  range_of(P.down_h, qmin, qmax);
  P.nbz = round_up8(nbo + qmax);  // z samples read by all computed outputs: a in [0, nbo - 1 + qmax]
  P.ly = {L / P.down, 0, nbo};
  P.lz = {L, 0, P.nbz};
  // Forward up pass: z grid (L phases) from the input (L / up phases).
  for (int64_t r = 0; r < P.fu.nrows_h(); ++r) P.up_h.push_back(Pass1D<T>::build(P.fu.hrow(r), tuw, P.up, 1, -P.px0, L));
  range_of(P.up_h, qmin, qmax);
  P.lx = {L / P.up, qmin, P.nbz - 1 + qmax - qmin + 1};
  // Backward up pass (transpose of the down pass): z grid from dy (L / down phases).
  for (int64_t r = 0; r < P.fd.nrows_h(); ++r) {
    const auto w = reversed(P.fd.hrow(r), tdw);
    P.bup_h.push_back(Pass1D<T>::build(w.data(), tdw, P.down, 1, -(tdw - 1), L));
  }
  range_of(P.bup_h, qmin, qmax);
  P.ldy = {L / P.down, qmin, P.nbz - 1 + qmax - qmin + 1};
  // Backward down pass (transpose of the up pass): dx (L / up phases) from the z grid.
  const int64_t nbi = round_up8(ceildiv(P.W, L / P.up));
  for (int64_t r = 0; r < P.fu.nrows_h(); ++r) {
    const auto w = reversed(P.fu.hrow(r), tuw);
    P.bdown_h.push_back(Pass1D<T>::build(w.data(), tuw, 1, P.up, P.px0 - tuw + 1, L / P.up));
  }
  range_of(P.bdown_h, qmin, qmax);
  P.ldx = {L / P.up, 0, nbi};
  const int64_t a0 = std::min<int64_t>(0, qmin);
  P.ldz = {L, a0, round_up8(std::max(P.nbz, nbi + qmax) - a0)};
}

// Rows of a band: bands hold about 160 KiB of z rows, and there are enough tasks for every thread.
inline int64_t choose_band(int64_t rows, int64_t planes, int64_t bytes_per_row) {
  int64_t band = std::max<int64_t>(1, (160 << 10) / std::max<int64_t>(1, bytes_per_row));
  const int64_t min_tasks = 4 * at::get_num_threads();
  if (planes * ceildiv(rows, band) < min_tasks) band = std::max<int64_t>(1, rows / ceildiv(min_tasks, planes));
  return std::min(band, rows);
}

template <typename T>
void activate_any(T* z, uint8_t* codes, int64_t n, const FlPlan<T>& P) {
  const bool cl = P.clamp >= T(0);
  if (codes && cl) activate<T, true, true>(z, codes, n, P.gain, P.slope, P.clamp);
  else if (codes) activate<T, true, false>(z, codes, n, P.gain, P.slope, P.clamp);
  else if (cl) activate<T, false, true>(z, codes, n, P.gain, P.slope, P.clamp);
  else activate<T, false, false>(z, codes, n, P.gain, P.slope, P.clamp);
}

// Forward for output rows [j0, j1) of one plane.
template <typename T>
void forward_band(const FlPlan<T>& P, const T* xp, T bias, T* yp, uint8_t* sp, int64_t j0, int64_t j1,
                  std::vector<T>& ws) {
  const bool last = j1 == P.OH;
  const int64_t z_lo = j0 * P.down;
  const int64_t own_hi = last ? P.Hz : j1 * P.down;  // code rows this band writes
  const int64_t z_hi = std::max((j1 - 1) * P.down + P.fd.th, own_hi);
  const int64_t i_lo = std::max<int64_t>(0, ceildiv(z_lo - P.py0, P.up));
  const int64_t i_hi = std::min<int64_t>(P.H, floordiv(z_hi - 1 + P.fu.th - 1 - P.py0, P.up) + 1);
  const int64_t nin = std::max<int64_t>(0, i_hi - i_lo), nj = j1 - j0;
  const bool usep = P.fu.separable, dsep = P.fd.separable;
  const int64_t zs = P.lz.size(), xs = P.lx.size(), ys = P.ly.size();
  const int64_t in_row = usep ? zs : xs;
  ws.resize((usep ? nin * xs : 0) + nin * in_row + (z_hi - z_lo) * zs + (dsep ? nj : 1) * (zs + ys));
  T* xb = ws.data();                      // separable fu: deinterleaved input rows
  T* inb = xb + (usep ? nin * xs : 0);    // input rows after the horizontal up pass (or deinterleaved)
  T* zb = inb + nin * in_row;             // z rows [z_lo, z_hi), activated
  T* rb = zb + (z_hi - z_lo) * zs;        // rows after the vertical down pass
  T* ob = rb + (dsep ? nj : 1) * zs;      // phase-major output rows
  T* deint = usep ? xb : inb;
  for (int64_t i = i_lo; i < i_hi; ++i) deinterleave(xp + i * P.W, P.W, bias, deint + (i - i_lo) * xs, P.lx);
  const RowMap up_map{1, 1, -P.py0, P.up, 0, P.H};
  if (usep) {
    hpass_rows(P.up_h[0], xb, P.lx, xs, inb, P.lz, zs, nin, P.lz.a0, P.lz.len);
    vertical_pass(up_map, P.fu.gy.data(), P.fu.th, inb, i_lo, zs, zb, z_lo, z_hi, zs, zs);
  } else {
    int64_t src[Pass1D<T>::kMaxTaps], tap[Pass1D<T>::kMaxTaps];
    for (int64_t Y = z_lo; Y < z_hi; ++Y) {
      T* z = zb + (Y - z_lo) * zs;
      const int nt = up_map.taps_of(Y, P.fu.th, src, tap);
      for (int t = 0; t < nt; ++t) P.up_h[tap[t]].apply(inb + (src[t] - i_lo) * in_row, P.lx, z, P.lz, t > 0);
      if (nt == 0) std::fill(z, z + zs, T(0));
    }
  }
  for (int64_t Y = z_lo; Y < z_hi; ++Y) {
    const bool own = Y < own_hi && sp != nullptr;
    activate_any(zb + (Y - z_lo) * zs, own ? sp + Y * (zs / 4) : nullptr, zs, P);
  }
  if (dsep) {
    vertical_pass(RowMap{P.down, 1, 0, 1, z_lo, z_hi}, P.fd.gy.data(), P.fd.th, zb, z_lo, zs, rb, j0, j1, zs, zs);
    hpass_rows(P.down_h[0], rb, P.lz, zs, ob, P.ly, ys, nj, P.ly.a0, P.ly.len);
    for (int64_t j = j0; j < j1; ++j) interleave(ob + (j - j0) * ys, P.ly, yp + j * P.OW, P.OW);
    return;
  }
  const T* srcs[2];
  for (int64_t j = j0; j < j1; ++j) {
    const T* zj = zb + (j * P.down - z_lo) * zs;
    if (P.fd_mirror) {  // rows k and th-1-k share their taps: add the z rows, one pass per pair
      const T ones[2] = {T(1), T(1)};
      const int64_t half = P.fd.th / 2;
      for (int64_t k = 0; k < half; ++k) {
        srcs[0] = zj + k * zs;
        srcs[1] = zj + (P.fd.th - 1 - k) * zs;
        wsum_any(false, rb, zs, srcs, ones, 2);
        P.down_h[k].apply(rb, P.lz, ob, P.ly, k > 0);
      }
      if (P.fd.th % 2 == 1) P.down_h[half].apply(zj + half * zs, P.lz, ob, P.ly, half > 0);
    } else {
      for (int64_t k = 0; k < P.fd.th; ++k) P.down_h[k].apply(zj + k * zs, P.lz, ob, P.ly, k > 0);
    }
    interleave(ob, P.ly, yp + j * P.OW, P.OW);
  }
}

// Zero the parts of a dz-layout row outside the z grid a in [0, nbz).
template <typename T>
void zero_halo(T* row, const FlPlan<T>& P) {
  for (int64_t c = 0; c < P.L; ++c) {
    T* r = row + c * P.ldz.len;
    std::fill(r, r - P.ldz.a0, T(0));
    std::fill(r + P.nbz - P.ldz.a0, r + P.ldz.len, T(0));
  }
}

// Backward for dx rows [i0, i1) of one plane.
template <typename T>
void backward_band(const FlPlan<T>& P, const T* dyp, const uint8_t* sp, T* dxp, int64_t i0, int64_t i1,
                   std::vector<T>& ws) {
  const int64_t tuh = P.fu.th, tdh = P.fd.th;
  const int64_t z_lo = std::max<int64_t>(0, i0 * P.up + P.py0 - tuh + 1);
  const int64_t z_hi = std::min<int64_t>(P.Hz, (i1 - 1) * P.up + P.py0 + 1);
  const int64_t nz = std::max<int64_t>(0, z_hi - z_lo);
  const int64_t j_lo = std::max<int64_t>(0, ceildiv(z_lo - tdh + 1, P.down));
  const int64_t j_hi = std::min<int64_t>(P.OH, floordiv(z_hi - 1, P.down) + 1);
  const int64_t ndy = std::max<int64_t>(0, j_hi - j_lo), ni = i1 - i0;
  const bool usep = P.fu.separable, dsep = P.fd.separable;
  const int64_t dzs = P.ldz.size(), dys = P.ldy.size(), dxs = P.ldx.size();
  const int64_t dy_row = dsep ? dzs : dys;
  ws.resize((dsep ? ndy * dys : 0) + ndy * dy_row + nz * dzs + (usep ? ni : 1) * (dzs + dxs));
  T* dyx = ws.data();                     // separable fd: deinterleaved dy rows
  T* dyb = dyx + (dsep ? ndy * dys : 0);  // dy rows after the horizontal pass (or deinterleaved)
  T* dzb = dyb + ndy * dy_row;            // dz rows [z_lo, z_hi), codes applied
  T* rb = dzb + nz * dzs;                 // rows after the vertical pass of dx
  T* ob = rb + (usep ? ni : 1) * dzs;     // phase-major dx rows
  T* deint = dsep ? dyx : dyb;
  for (int64_t j = j_lo; j < j_hi; ++j) deinterleave(dyp + j * P.OW, P.OW, T(0), deint + (j - j_lo) * dys, P.ldy);
  if (dsep) {
    hpass_rows(P.bup_h[0], dyx, P.ldy, dys, dyb, P.ldz, dzs, ndy, 0, P.nbz);
    for (int64_t j = 0; j < ndy; ++j) zero_halo(dyb + j * dzs, P);
  }
  const RowMap dz_map{1, -1, 0, P.down, 0, P.OH};  // forward: y[j] += fd[k] * a[j*down + k]
  if (dsep) {
    vertical_pass(dz_map, P.fd.gy.data(), tdh, dyb, j_lo, dzs, dzb, z_lo, z_hi, dzs, dzs);
  } else if (P.fd_mirror) {
    // Rows k and th-1-k of fd are equal, so the transposed pass of dy row j with row k feeds dz rows
    // j*down + k and j*down + th-1-k: compute it once and add it to both.
    std::fill(dzb, dzb + nz * dzs, T(0));
    const T one[1] = {T(1)};
    for (int64_t j = j_lo; j < j_hi; ++j) {
      const T* row = dyb + (j - j_lo) * dy_row;
      for (int64_t k = 0; k < (tdh + 1) / 2; ++k) {
        const int64_t Ya = j * P.down + k, Yb = j * P.down + tdh - 1 - k;
        const bool in_a = Ya >= z_lo && Ya < z_hi, in_b = Yb != Ya && Yb >= z_lo && Yb < z_hi;
        if (in_a != in_b) {
          P.bup_h[k].apply_range(row, P.ldy, dzb + ((in_a ? Ya : Yb) - z_lo) * dzs, P.ldz, 0, P.nbz, true);
        } else if (in_a) {
          P.bup_h[k].apply_range(row, P.ldy, rb, P.ldz, 0, P.nbz, false);
          for (const int64_t Y : {Ya, Yb}) {
            for (int64_t c = 0; c < P.L; ++c) {
              const int64_t off = c * P.ldz.len - P.ldz.a0;
              const T* src[1] = {rb + off};
              wsum<T, true>(dzb + (Y - z_lo) * dzs + off, P.nbz, src, one, 1);
            }
          }
        }
      }
    }
  } else {
    int64_t src[Pass1D<T>::kMaxTaps], tap[Pass1D<T>::kMaxTaps];
    for (int64_t Y = z_lo; Y < z_hi; ++Y) {
      T* dz = dzb + (Y - z_lo) * dzs;
      const int nt = dz_map.taps_of(Y, tdh, src, tap);
      for (int t = 0; t < nt; ++t)
        P.bup_h[tap[t]].apply_range(dyb + (src[t] - j_lo) * dy_row, P.ldy, dz, P.ldz, 0, P.nbz, t > 0);
      if (nt == 0) std::fill(dz, dz + dzs, T(0));
      zero_halo(dz, P);
    }
  }
  const T m0 = P.gain, m1 = P.gain * P.slope;
  for (int64_t Y = z_lo; Y < z_hi; ++Y) {  // the codes of the forward
    const uint8_t* code = sp + Y * (P.lz.size() / 4);
    T* dz = dzb + (Y - z_lo) * dzs;
    for (int64_t c = 0; c < P.L; ++c) apply_codes(dz + c * P.ldz.len - P.ldz.a0, code + c * P.nbz / 4, P.nbz, m0, m1);
  }
  const RowMap dx_map{P.up, -1, P.py0, 1, z_lo, z_hi};  // forward: z[Y] += fu[k] * u[Y + k], u[i*up + py0] = x[i]
  if (usep) {
    vertical_pass(dx_map, P.fu.gy.data(), tuh, dzb, z_lo, dzs, rb, i0, i1, dzs, dzs);
    hpass_rows(P.bdown_h[0], rb, P.ldz, dzs, ob, P.ldx, dxs, ni, P.ldx.a0, P.ldx.len);
    for (int64_t i = i0; i < i1; ++i) interleave(ob + (i - i0) * dxs, P.ldx, dxp + i * P.W, P.W);
    return;
  }
  int64_t src[Pass1D<T>::kMaxTaps], tap[Pass1D<T>::kMaxTaps];
  for (int64_t i = i0; i < i1; ++i) {
    const int nt = dx_map.taps_of(i, tuh, src, tap);
    for (int t = 0; t < nt; ++t) P.bdown_h[tap[t]].apply(dzb + (src[t] - z_lo) * dzs, P.ldz, ob, P.ldx, t > 0);
    if (nt == 0) std::fill(ob, ob + dxs, T(0));
    interleave(ob, P.ldx, dxp + i * P.W, P.W);
  }
}

void check_filter(const at::Tensor& f, const at::Tensor& x, const char* name) {
  TORCH_CHECK(f.device().is_cpu() && (f.dim() == 1 || f.dim() == 2) && f.numel() >= 1 && f.size(0) <= 256 &&
                  f.size(-1) <= 256,
              "sg3_ops_cpu.filtered_lrelu: ", name, " must be a CPU 1-D [taps] or 2-D [th, tw] filter with 1..256 "
              "taps per axis, got shape ", f.sizes());
  TORCH_CHECK(f.scalar_type() == x.scalar_type(), "sg3_ops_cpu.filtered_lrelu: ", name, " must have dtype ",
              x.scalar_type(), ", got ", f.scalar_type());
}

template <typename T>
Filter2<T> make_filter(const at::Tensor& f, bool flip, double gain_sep, double gain2) {
  const auto fc = f.contiguous();
  const int64_t th = f.dim() == 2 ? f.size(0) : f.size(0), tw = f.size(-1);
  return Filter2<T>::make(fc.data_ptr<T>(), f.dim(), th, tw, flip, gain_sep, gain2);
}

template <typename T>
FlPlan<T> make_plan(const at::Tensor& fu, const at::Tensor& fd, int64_t N, int64_t C, int64_t H, int64_t W,
                    int64_t up, int64_t down, int64_t px0, int64_t px1, int64_t py0, int64_t py1, double gain,
                    double slope, double clamp, bool flip) {
  FlPlan<T> P;
  P.fu = make_filter<T>(fu, flip, double(up), double(up * up));
  P.fd = make_filter<T>(fd, flip, 1.0, 1.0);
  P.N = N, P.C = C, P.H = H, P.W = W, P.up = up, P.down = down, P.px0 = px0, P.py0 = py0;
  P.OH = floordiv(H * up + py0 + py1 - (P.fu.th - 1) - (P.fd.th - 1) + down - 1, down);
  P.OW = floordiv(W * up + px0 + px1 - (P.fu.tw - 1) - (P.fd.tw - 1) + down - 1, down);
  TORCH_CHECK(P.OH >= 1 && P.OW >= 1, "sg3_ops_cpu.filtered_lrelu: padding (", px0, ", ", px1, ", ", py0, ", ", py1,
              ") leaves no output for input ", H, "x", W, " with up ", up, ", down ", down);
  P.Hz = (P.OH - 1) * down + P.fd.th;
  P.gain = T(gain), P.slope = T(slope), P.clamp = T(clamp);
  P.fd_mirror = !P.fd.separable && P.fd.th > 1;
  for (int64_t k = 0; k < P.fd.th / 2 && P.fd_mirror; ++k)
    P.fd_mirror = std::equal(P.fd.hrow(k), P.fd.hrow(k) + P.fd.tw, P.fd.hrow(P.fd.th - 1 - k));
  plan_axes(P);
  return P;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> filtered_lrelu_fwd(const at::Tensor& x, const at::Tensor& fu, const at::Tensor& fd,
                                                      const at::Tensor& b, int64_t up, int64_t down, int64_t padx0,
                                                      int64_t padx1, int64_t pady0, int64_t pady1, double gain,
                                                      double slope, double clamp, bool flip, bool write_signs) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4, "sg3_ops_cpu.filtered_lrelu: x must be a CPU [N, C, H, W] tensor, "
              "got shape ", x.sizes(), " on ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "sg3_ops_cpu.filtered_lrelu: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(up >= 1 && down >= 1, "sg3_ops_cpu.filtered_lrelu: up and down must be >= 1, got ", up, ", ", down);
  check_filter(fu, x, "fu");
  check_filter(fd, x, "fd");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(b.numel() == 0 || (b.dim() == 1 && b.numel() == C && b.scalar_type() == x.scalar_type()),
              "sg3_ops_cpu.filtered_lrelu: b must be empty or [", C, "] of dtype ", x.scalar_type(), ", got shape ",
              b.sizes(), " dtype ", b.scalar_type());
  const auto xc = x.contiguous();
  const auto bc = b.contiguous();
  at::Tensor y, si;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sg3_filtered_lrelu_fwd_cpu", [&] {
    using T = scalar_t;
    const auto P = make_plan<T>(fu, fd, N, C, H, W, up, down, padx0, padx1, pady0, pady1, gain, slope, clamp, flip);
    if (xc.numel() == 0) {  // no samples: every z is 0 (code 0, "positive"), so y = 0 (no division by 0 below)
      y = at::zeros({N, C, P.OH, P.OW}, xc.options());
      si = write_signs ? at::zeros({N, C, P.Hz, P.lz.size() / 4}, xc.options().dtype(at::kByte))
                       : at::empty({0}, xc.options().dtype(at::kByte));
      return;
    }
    y = at::empty({N, C, P.OH, P.OW}, xc.options());
    si = write_signs ? at::empty({N, C, P.Hz, P.lz.size() / 4}, xc.options().dtype(at::kByte))
                     : at::empty({0}, xc.options().dtype(at::kByte));
    const int64_t band = choose_band(P.OH, N * C, P.lz.size() * sizeof(T) * down);
    const int64_t nbands = ceildiv(P.OH, band);
    const T* xp = xc.data_ptr<T>();
    const T* bp = bc.numel() ? bc.data_ptr<T>() : nullptr;
    T* yp = y.data_ptr<T>();
    uint8_t* sp = write_signs ? si.data_ptr<uint8_t>() : nullptr;
    at::parallel_for(0, N * C * nbands, 1, [&](int64_t t0, int64_t t1) {
      std::vector<T> ws;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t plane = t / nbands, k = t % nbands;
        forward_band(P, xp + plane * H * W, bp ? bp[plane % C] : T(0), yp + plane * P.OH * P.OW,
                     sp ? sp + plane * P.Hz * (P.lz.size() / 4) : nullptr, k * band, std::min(P.OH, (k + 1) * band), ws);
      }
    });
  });
  return {y, si};
}

at::Tensor filtered_lrelu_bwd(const at::Tensor& dy, const at::Tensor& fu, const at::Tensor& fd, const at::Tensor& si,
                              int64_t up, int64_t down, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                              int64_t in_h, int64_t in_w, double gain, double slope, bool flip) {
  TORCH_CHECK(dy.device().is_cpu() && dy.dim() == 4, "sg3_ops_cpu.filtered_lrelu_bwd: dy must be a CPU [N, C, OH, OW] "
              "tensor, got shape ", dy.sizes());
  TORCH_CHECK(dy.scalar_type() == at::kFloat || dy.scalar_type() == at::kDouble,
              "sg3_ops_cpu.filtered_lrelu_bwd: dy must be float32 or float64, got ", dy.scalar_type());
  TORCH_CHECK(up >= 1 && down >= 1, "sg3_ops_cpu.filtered_lrelu_bwd: up and down must be >= 1, got ", up, ", ", down);
  check_filter(fu, dy, "fu");
  check_filter(fd, dy, "fd");
  const int64_t N = dy.size(0), C = dy.size(1);
  const auto dyc = dy.contiguous();
  at::Tensor dx;
  AT_DISPATCH_FLOATING_TYPES(dyc.scalar_type(), "sg3_filtered_lrelu_bwd_cpu", [&] {
    using T = scalar_t;
    const auto P = make_plan<T>(fu, fd, N, C, in_h, in_w, up, down, padx0, padx1, pady0, pady1, gain, slope, -1.0, flip);
    TORCH_CHECK(dy.size(2) == P.OH && dy.size(3) == P.OW, "sg3_ops_cpu.filtered_lrelu_bwd: dy must be [", N, ", ", C,
                ", ", P.OH, ", ", P.OW, "] for this configuration, got ", dy.sizes());
    TORCH_CHECK(si.scalar_type() == at::kByte && si.dim() == 4 && si.size(0) == N && si.size(1) == C &&
                    si.size(2) == P.Hz && si.size(3) == P.lz.size() / 4 && si.is_contiguous(),
                "sg3_ops_cpu.filtered_lrelu_bwd: si must be the forward's contiguous uint8 sign tensor [", N, ", ", C,
                ", ", P.Hz, ", ", P.lz.size() / 4, "], got shape ", si.sizes(), " dtype ", si.scalar_type());
    if (N * C * in_h * in_w == 0) {  // an input without samples has an empty (or all-zero) gradient
      dx = at::zeros({N, C, in_h, in_w}, dyc.options());
      return;
    }
    dx = at::empty({N, C, in_h, in_w}, dyc.options());
    const int64_t band = choose_band(in_h, N * C, P.ldz.size() * sizeof(T) * up);
    const int64_t nbands = ceildiv(in_h, band);
    const T* dyp = dyc.data_ptr<T>();
    const uint8_t* sp = si.data_ptr<uint8_t>();
    T* dxp = dx.data_ptr<T>();
    at::parallel_for(0, N * C * nbands, 1, [&](int64_t t0, int64_t t1) {
      std::vector<T> ws;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t plane = t / nbands, k = t % nbands;
        backward_band(P, dyp + plane * P.OH * P.OW, sp + plane * P.Hz * (P.lz.size() / 4), dxp + plane * in_h * in_w,
                      k * band, std::min(in_h, (k + 1) * band), ws);
      }
    });
  });
  return dx;
}

}  // namespace sg3cpu
