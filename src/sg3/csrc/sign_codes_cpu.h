// Sign codes of filtered_lrelu on CPU (spec 2.3): the activation that records them in the forward and the
// gradient multipliers that read them back in the backward.
// Copyright 2026 the sg3 authors. Apache-2.0.
//
// 2 bits per z-grid sample: bit0 = z < 0, bit1 = clamped. Packed 4 per byte: sample i of a row in bits
// 2 * (i % 4) of byte i / 4 (filtered_lrelu_cpu.cpp lays a row out phase-major, Lx * nbz samples).
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "polyphase_cpu.h"

namespace sg3cpu {
namespace sign_codes {

typedef int32_t VecI __attribute__((vector_size(32)));

constexpr VecI kCodeShifts = {0, 2, 4, 6, 8, 10, 12, 14};  // lane k's 2-bit code sits at bits 2k of 16

// 8 int32 lanes (values 0..3) to 16 packed bits (2 bytes at dst), and back.
inline void store_codes8(uint8_t* dst, VecI code) {
#if defined(__AVX2__)
  const __m256i c = _mm256_sllv_epi32((__m256i)code, (__m256i)kCodeShifts);
  __m128i v = _mm_or_si128(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
  v = _mm_or_si128(v, _mm_shuffle_epi32(v, 0x4E));
  v = _mm_or_si128(v, _mm_shuffle_epi32(v, 0xB1));
  const uint16_t w = static_cast<uint16_t>(_mm_cvtsi128_si32(v));
#else
  const VecI c = code << kCodeShifts;
  uint16_t w = 0;
  for (int k = 0; k < 8; ++k) w = static_cast<uint16_t>(w | c[k]);
#endif
  std::memcpy(dst, &w, 2);
}
inline VecI load_codes8(const uint8_t* src) {
  uint16_t w;
  std::memcpy(&w, src, 2);
#if defined(__AVX2__)
  const __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32(w), (__m256i)kCodeShifts);
  return (VecI)_mm256_and_si256(v, _mm256_set1_epi32(3));
#else
  return ((VecI{} + int32_t(w)) >> kCodeShifts) & 3;
#endif
}

// a = gain * lrelu(z, slope), clamped; code = (z < 0) + 2 * clamped, packed at codes (z[i]'s code in bits
// 2 * (i % 4) of codes[i / 4]; n is a multiple of 8). float: 8 samples per step in vector registers (the codes
// packed in registers); double: 4 samples (one code byte) per step.
template <typename T, bool WRITE, bool CLAMP>
void activate(T* __restrict z, uint8_t* __restrict codes, int64_t n, T gain, T slope, T clamp) {
  const T gs = gain * slope;
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    const VecF vg = VecF{} + gain, vgs = VecF{} + gs, vc = VecF{} + clamp;
    for (; i + 8 <= n; i += 8) {
      const VecF v = *reinterpret_cast<const VecF*>(z + i);
      const VecI neg = v < VecF{};
      const VecF a = v * (neg ? vgs : vg);
      VecF c = a;
      if constexpr (CLAMP) {
        c = c > vc ? vc : c;
        c = c < -vc ? -vc : c;
      }
      *reinterpret_cast<VecF*>(z + i) = c;
      if constexpr (WRITE) {
        const VecI code = (neg & 1) | ((c != a) & 2);
        store_codes8(codes + i / 4, code);
      }
    }
  }
  for (; i < n; i += 4) {
    int byte = 0;
    for (int k = 0; k < 4 && i + k < n; ++k) {
      const T v = z[i + k];
      const T a = v * (v < T(0) ? gs : gain);
      T c = a;
      if constexpr (CLAMP) {
        c = c > clamp ? clamp : c;
        c = c < -clamp ? -clamp : c;
      }
      z[i + k] = c;
      byte |= (int(v < T(0)) + 2 * int(c != a)) << (2 * k);
    }
    if constexpr (WRITE) codes[i / 4] = static_cast<uint8_t>(byte);
  }
}

// dz *= gain, gain * slope or 0 according to the packed codes (as activate writes them; n a multiple of 8;
// float: the multiplier is a register permute by code).
template <typename T>
void apply_codes(T* __restrict d, const uint8_t* __restrict codes, int64_t n, T m0, T m1) {
  int64_t a = 0;
  if constexpr (std::is_same_v<T, float>) {
    const VecF table = {m0, m1, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    for (; a + 8 <= n; a += 8) {
#if defined(__AVX2__)
      const __m256 m = _mm256_permutevar8x32_ps((__m256)table, (__m256i)load_codes8(codes + a / 4));
      *reinterpret_cast<VecF*>(d + a) *= (VecF)m;
#else
      *reinterpret_cast<VecF*>(d + a) *= __builtin_shuffle(table, load_codes8(codes + a / 4));
#endif
    }
  }
  for (; a < n; ++a) {
    const int c = (codes[a / 4] >> (2 * (a % 4))) & 3;
    d[a] *= c == 0 ? m0 : (c == 1 ? m1 : T(0));
  }
}

}  // namespace sign_codes
}  // namespace sg3cpu
