// Host stand-in for __half (tests only): float storage, so emulated float16 runs check logic, not rounding.
#pragma once
struct __half {
  float v;
};
inline float __half2float(__half h) { return h.v; }
inline __half __float2half_rn(float f) { return __half{f}; }
