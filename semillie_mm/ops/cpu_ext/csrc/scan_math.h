// Copyright (c) semillie-mm contributors. All rights reserved.
//
// Math shared by the CPU scan kernels (ss2d_scan.cpp, selective_scan.cpp):
// lane widths, a branch-free base-2 exponential (scalar and 16 lanes),
// softplus with its derivative, the 16 x 16 row-sum tree of AVX-512, the
// per-block constants, and one step of the forward, of its recomputation
// and of the adjoint recurrence.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace semillie_scan {

// largest d_state the kernels' per-thread arrays take
constexpr int64_t kMaxState = 64;

template <typename T>
struct Lanes;
template <>
struct Lanes<float> {
  static constexpr int V = 16;
};
template <>
struct Lanes<double> {
  static constexpr int V = 8;
};

// a float32 constant as T (float or a GCC vector of floats)
template <class T>
__attribute__((always_inline)) inline T constant_as(float c) {
  if constexpr (std::is_same_v<T, float>) {
    return c;
  } else {
    return T{} + c;
  }
}

// 2^f for f in [-0.5, 0.5] (the exp2 sequences' polynomial): degree-6
// Taylor, coefficients ln2^j / j!, relative error < 1.3e-7; T is float or
// a GCC vector of floats
template <class T>
__attribute__((always_inline)) inline T exp2_poly(T f) {
  T p = constant_as<T>(1.5403530393381610e-04f);
  p = p * f + 1.3333558146428443e-03f;
  p = p * f + 9.6181291076284772e-03f;
  p = p * f + 5.5504108664821580e-02f;
  p = p * f + 2.4022650695910071e-01f;
  p = p * f + 6.9314718055994531e-01f;
  p = p * f + 1.0f;
  return p;
}

// 2^f for f in [-1/16, 1/16] (the table form's polynomial): degree 3 with
// p(0) = 1 exactly (three FMAs), coefficients fitted for the least largest
// relative error on that interval (2.5e-8; Taylor's would be 1.5e-7)
template <class T>
__attribute__((always_inline)) inline T exp2_poly3(T f) {
  T p = constant_as<T>(5.54962158203125e-02f);
  p = p * f + 2.402576208114624e-01f;
  p = p * f + 6.931472420692444e-01f;
  p = p * f + 1.0f;
  return p;
}

// 2^(j/8), j = 0..7, as float32 bit patterns (the table form), twice: a
// 512-bit permute indexes 16 entries, and j's fourth bit must not matter
alignas(64) inline constexpr int32_t kExp2Eighths[16] = {
    0x3f800000, 0x3f8b95c2, 0x3f9837f0, 0x3fa5fed7,
    0x3fb504f3, 0x3fc5672a, 0x3fd744fd, 0x3feac0c7,
    0x3f800000, 0x3f8b95c2, 0x3f9837f0, 0x3fa5fed7,
    0x3fb504f3, 0x3fc5672a, 0x3fd744fd, 0x3feac0c7};

// 2^x for float32, branch-free so that loops over it vectorise. x is
// clamped to [-126, 127] (results below 2^-126, never needed by the scan,
// whose decays multiply a bounded state, come out as ~1e-38); k = round(x)
// by the 1.5 * 2^23 trick (the integer also sits in the low mantissa bits
// of x + 1.5 * 2^23, which gives the exponent field of 2^k), 2^(x - k) by
// a degree-6 Taylor polynomial on [-0.5, 0.5] (relative error < 1.3e-7).
__attribute__((always_inline)) inline float exp2_f32(float x) {
  x = x < -126.0f ? -126.0f : x;
  x = x > 127.0f ? 127.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float t = x + magic;
  const float k = t - magic;
  const float f = x - k;
  const float p = exp2_poly(f);
  const uint32_t bits = (std::bit_cast<uint32_t>(t) + 127u) << 23;
  return p * std::bit_cast<float>(bits);
}

constexpr double kLog2e = 1.4426950408889634;

template <typename T>
__attribute__((always_inline)) inline T exp_scaled(T x_log2) {
  // exp(x) given x * log2(e)
  if constexpr (std::is_same_v<T, float>) {
    return exp2_f32(x_log2);
  } else {
    return std::exp2(x_log2);
  }
}

// GCC/Clang vector extension: one AVX-512 register of float32 (lowered to
// narrower registers where the CPU has none)
typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline vf16 splat(float v) {
  return vf16{} + v;
}

enum ExpForm : int {
  kExpClampScalef = 0,
  kExpScalef = 1,
  kExpMagic = 2,
  kExpTable = 3
};

typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

template <class VT>
struct VecInfo;
template <>
struct VecInfo<vf16> {
  typedef vi16 I;
  static constexpr int W = 16;
};
template <>
struct VecInfo<vf8> {
  typedef vi8 I;
  static constexpr int W = 8;
};

template <class VT>
__attribute__((always_inline)) inline VT splat_v(float v) {
  return VT{} + v;
}

// a whole vector of floats from memory, and back (unaligned)
template <class VT>
__attribute__((always_inline)) inline VT load_v(const float* p) {
  VT v;
  std::memcpy(&v, p, sizeof(VT));
  return v;
}
template <class VT>
__attribute__((always_inline)) inline void store_v(float* p, VT v) {
  std::memcpy(p, &v, sizeof(VT));
}

// f applied to a vf16 as two vf8 halves: exp2_vec of the 16-lane tile on
// builds without AVX-512, where GCC lowers a 64-byte vector's conditions
// lane by lane (vucomiss and cmov per float). Elsewhere those builds keep
// vf16 values out of their hot loops (vfn, lanes16).
__attribute__((always_inline)) inline void split16(vf16 v, vf8& lo,
                                                   vf8& hi) {
  std::memcpy(&lo, &v, sizeof(lo));
  std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof(lo),
              sizeof(hi));
}
__attribute__((always_inline)) inline vf16 join16(vf8 lo, vf8 hi) {
  vf16 out;
  std::memcpy(&out, &lo, sizeof(lo));
  std::memcpy(reinterpret_cast<char*>(&out) + sizeof(lo), &hi, sizeof(hi));
  return out;
}
template <class Fn>
__attribute__((always_inline)) inline vf16 by_halves(vf16 v, Fn f) {
  vf8 lo, hi;
  split16(v, lo, hi);
  return join16(f(lo), f(hi));
}

// x clamped to [-126, 127] as `x < -126 ? -126 : x`, then `x > 127 ? 127
// : x` (a NaN passes): one vmaxps and one vminps with the constant first,
// whose operand order gives exactly those results, where GCC made of the
// ternaries two compares and two blends on AVX2
template <class VT>
__attribute__((always_inline)) inline VT clamp_exp2_arg(VT x) {
#if defined(__AVX512F__)
  if constexpr (VecInfo<VT>::W == 16)
    return _mm512_min_ps(splat_v<VT>(127.0f),
                         _mm512_max_ps(splat_v<VT>(-126.0f), x));
#endif
#if defined(__AVX__)
  if constexpr (VecInfo<VT>::W == 8)
    return _mm256_min_ps(splat_v<VT>(127.0f),
                         _mm256_max_ps(splat_v<VT>(-126.0f), x));
#endif
  x = x < -126.0f ? splat_v<VT>(-126.0f) : x;
  return x > 127.0f ? splat_v<VT>(127.0f) : x;
}

// kExp2Eighths[tb & 7] lane by lane (the low three bits of each index)
template <class VI>
__attribute__((always_inline)) inline VI exp2_eighths(VI tb) {
  constexpr int W = sizeof(VI) / sizeof(int32_t);
#if defined(__AVX512F__)
  if constexpr (W == 16)
    return (VI)_mm512_permutexvar_epi32((__m512i)tb,
                                        _mm512_load_si512(kExp2Eighths));
#endif
#if defined(__AVX2__)
  if constexpr (W == 8)
    return (VI)_mm256_permutevar8x32_epi32(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(kExp2Eighths)),
        (__m256i)tb);
#endif
  VI tab;
  for (int i = 0; i < W; ++i) tab[i] = kExp2Eighths[tb[i] & 7];
  return tab;
}

// 2^x in the table form (ExpForm 3). x is clamped as in form 2 and rounded
// to a multiple of 1/8 by the magic constant 1.5 * 2^20: k8 = round(8 x)
// then sits in the low mantissa bits of t = x + magic. 2^x = 2^(k8 >> 3) *
// 2^((k8 & 7) / 8) * 2^f with f = x - k8 / 8 in [-1/16, 1/16]: the middle
// factor from kExp2Eighths by a lane permute indexed by t's bits, the first
// added to that factor's exponent field as an integer, the last by
// exp2_poly3. Three FMAs and one multiply where form 2 takes six and one,
// for a permute and two integer operations more: where the FMA pipes bound
// the recurrence (an AVX2-only CPU) it runs faster. Relative error < 1.6e-7
// (form 2: 2.4e-7, both with float32 rounding); a NaN stays NaN (it reaches
// the polynomial).
template <class VT>
__attribute__((always_inline)) inline VT exp2_table(VT x) {
  typedef typename VecInfo<VT>::I VI;
  x = clamp_exp2_arg(x);
  const float magic = 1572864.0f;  // 1.5 * 2^20: its ulp is 1/8
  const VT t = x + magic;
  const VT f = x - (t - magic);
  const VT p = exp2_poly3(f);
  const VI tb = reinterpret_cast<const VI&>(t);
  const VI scale =
      exp2_eighths(tb) + ((tb << 20) & static_cast<int32_t>(0xFF800000u));
  return p * reinterpret_cast<const VT&>(scale);
}

#if defined(__AVX512F__)
// 2^x by vscalefps (ExpForms 0 and 1; Clamp: form 0's clamp first)
template <class VT, bool Clamp>
__attribute__((always_inline)) inline VT exp2_scalef(VT x) {
  if constexpr (Clamp) x = clamp_exp2_arg(x);
  VT k;
  if constexpr (VecInfo<VT>::W == 16) {
    k = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT |
                                    _MM_FROUND_NO_EXC);
  } else {
    k = _mm256_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT |
                                    _MM_FROUND_NO_EXC);
  }
  const VT p = exp2_poly(x - k);
  if constexpr (VecInfo<VT>::W == 16) {
    return _mm512_scalef_ps(p, k);
  } else {
    return _mm256_scalef_ps(p, k);
  }
}
#endif

// 2^x in the magic-number form (ExpForm 2): x clamped, rounded by the
// magic constant 1.5 * 2^23, exp2_poly of the rest times 2^k built as bits
template <class VT>
__attribute__((always_inline)) inline VT exp2_magic(VT x) {
  typedef typename VecInfo<VT>::I VI;
  x = clamp_exp2_arg(x);
  const float magic = 12582912.0f;
  const VT t = x + magic;
  const VT f = x - (t - magic);
  const VT p = exp2_poly(f);
  const VI bits = (reinterpret_cast<const VI&>(t) + 127) << 23;
  return p * reinterpret_cast<const VT&>(bits);
}

// 2^x on a whole vector in one of the ExpForm sequences (forms 0 and 1:
// exp2_scalef, on AVX-512 builds only, elsewhere they run as form 2; form
// 2: exp2_magic; form 3: exp2_table). Builds without AVX-512 take a vf16 as
// two vf8 halves (see by_halves).
template <class VT, int F>
__attribute__((always_inline)) inline VT exp2_vec(VT x) {
#if !defined(__AVX512F__)
  if constexpr (VecInfo<VT>::W == 16) {
    constexpr int H = F == kExpTable ? kExpTable : kExpMagic;
    return by_halves(x, [](vf8 h) { return exp2_vec<vf8, H>(h); });
  } else
#endif
  if constexpr (F == kExpTable) {
    return exp2_table(x);
  } else {
#if defined(__AVX512F__)
    if constexpr (F == kExpClampScalef || F == kExpScalef)
      return exp2_scalef<VT, F == kExpClampScalef>(x);
    else
#endif
      return exp2_magic(x);
  }
}

// Calls f(std::integral_constant<int, F>{}) with F the ExpForm `form`
// names (forms are checked where a variant is set; any other runs as 2).
// Builds without AVX-512 run forms 0 and 1 as 2, as exp2_vec does, and do
// not instantiate them.
template <class Fn>
__attribute__((always_inline)) inline void with_exp_form(int form, Fn&& f) {
  switch (form) {
#if defined(__AVX512F__)
    case kExpClampScalef:
      f(std::integral_constant<int, kExpClampScalef>{});
      return;
    case kExpScalef:
      f(std::integral_constant<int, kExpScalef>{});
      return;
#endif
    case kExpTable:
      f(std::integral_constant<int, kExpTable>{});
      return;
    default:
      f(std::integral_constant<int, kExpMagic>{});
      return;
  }
}

// 2^x for x <= 0 (or NaN), softplus's and sigmoid's 2^(-|x| log2 e): on
// AVX-512 the clamped form's numbers with only the lower clamp, one vmaxps
// (x second: a NaN passes) where the two ternary clamps take two compares
// and two blends; the magic-number form (clamped) elsewhere
template <class VT>
__attribute__((always_inline)) inline VT exp2_nonpos(VT x) {
#if defined(__AVX512F__)
  if constexpr (VecInfo<VT>::W == 16) {
    x = _mm512_max_ps(splat_v<VT>(-126.0f), x);
  } else {
    x = _mm256_max_ps(splat_v<VT>(-126.0f), x);
  }
  return exp2_vec<VT, kExpScalef>(x);
#else
  return exp2_vec<VT, kExpMagic>(x);
#endif
}

// softplus(x) = log(1 + e^x) (torch's threshold 20 is immaterial: above it
// the two agree to rounding) and its derivative sigmoid(x), for V lanes.
// float32: e = exp(-|x|) in (0, 1], log1p(e) = 2 atanh(s), s = e / (2 + e)
// in (0, 1/3], by the odd series of atanh to s^13 (relative error < 2e-8),
// on whole vectors (VT; exp2_nonpos). kSig: sig receives sigmoid(v).
template <class VT, bool kSig>
__attribute__((always_inline)) inline VT softplus_vec(VT v, VT* sig) {
  const VT zero = splat_v<VT>(0.0f);
  const VT nax = v < 0.0f ? v : -v;  // -|x|
  const VT e = exp2_nonpos(nax * float(kLog2e));
  const VT s = e / (e + 2.0f);
  const VT z = s * s;
  VT q = splat_v<VT>(1.0f / 13.0f);
  q = q * z + 1.0f / 11.0f;
  q = q * z + 1.0f / 9.0f;
  q = q * z + 1.0f / 7.0f;
  q = q * z + 1.0f / 5.0f;
  q = q * z + 1.0f / 3.0f;
  q = q * z + 1.0f;
  const VT pos = v > 0.0f ? v : zero;
  if constexpr (kSig) {
    const VT num = v >= 0.0f ? splat_v<VT>(1.0f) : e;
    *sig = num / (e + 1.0f);
  }
  return pos + 2.0f * s * q;
}

// sigmoid(x) of whole vectors in the stable form e / (1 + e) with
// e = exp(-|x|) for negative x
template <class VT>
__attribute__((always_inline)) inline VT sigmoid_vec(VT v) {
  const VT nax = v < 0.0f ? v : -v;
  const VT e = exp2_nonpos(nax * float(kLog2e));
  const VT num = v >= 0.0f ? splat_v<VT>(1.0f) : e;
  return num / (e + 1.0f);
}

// the widest float32 vector of the build (outside the scan tiles exp2 is
// exp2_nonpos: vscalefps where the build has AVX-512, the magic-number form
// otherwise)
#if defined(__AVX512F__)
typedef vf16 vfn;
#else
typedef vf8 vfn;
#endif

// out[0, 16) = f(x[0, 16)) (and, kSig, g[0, 16) its second result) on one
// 512-bit vector, or without AVX-512 on two 256-bit halves straight from
// and to memory (a vf16 value there lives on the stack, moved in 64-bit
// pieces: the AVX2 build's tile preparation took longer than its scan)
template <bool kSig, class Fn>
__attribute__((always_inline)) inline void lanes16(const float* x,
                                                   float* out, float* g,
                                                   Fn f) {
  typedef vfn VT;
  for (int off = 0; off < 16; off += VecInfo<VT>::W) {
    VT v, gv;
    std::memcpy(&v, x + off, sizeof(VT));
    const VT o = f(v, kSig ? &gv : nullptr);
    std::memcpy(out + off, &o, sizeof(VT));
    if constexpr (kSig) std::memcpy(g + off, &gv, sizeof(VT));
  }
}

// softplus_vec (float32) or libm (float64) on V lanes in memory
template <typename T, int V, bool kSig = true>
__attribute__((always_inline)) inline void softplus_sig(const T* __restrict x,
                                                        T* __restrict sp,
                                                        T* __restrict sg) {
  if constexpr (std::is_same_v<T, float>) {
    static_assert(V == 16, "one vf16 per block");
    lanes16<kSig>(x, sp, sg, [](auto v, auto* g) {
      typedef decltype(v) VT;
      return softplus_vec<VT, kSig>(v, g);
    });
  } else {
    for (int c = 0; c < V; ++c) {
      const T v = x[c];
      sp[c] = v > T(20) ? v : std::log1p(std::exp(v));
      if constexpr (kSig) sg[c] = T(1) / (T(1) + std::exp(-v));
    }
  }
}

// sigmoid(x) for V lanes (the gate silu(z) = z sigmoid(z)), in the stable
// form e / (1 + e) with e = exp(-|x|) for negative x
template <typename T, int V>
__attribute__((always_inline)) inline void sigmoid(const T* __restrict x,
                                                   T* __restrict sg) {
  if constexpr (std::is_same_v<T, float>) {
    static_assert(V == 16, "one vf16 per block");
    lanes16<false>(x, sg, nullptr, [](auto v, auto*) {
      return sigmoid_vec<decltype(v)>(v);
    });
  } else {
    for (int c = 0; c < V; ++c) sg[c] = T(1) / (T(1) + std::exp(-x[c]));
  }
}

// One block of 16 float32 channels with d_state 16 (scan16_tile_v below):
// m steps of
//   h[n] = exp(dt A[n]) h[n] + dt u B[n],  y = D u + sum_n C[n] h[n]
// with the 16 state vectors held in registers for the whole tile (the
// generic loops keep them in memory: a load and a store per state and
// step). U, Dt: the tile's u and dt, (m, 16) (U may instead be a function
// of the step, u_row); a2 = A log2(e), (16, 16);
// hmem: the state entering the tile (read) and leaving it (written).
// rows(i) gives step i's B and C rows ({const float*, const float*}),
// emit(i, y, off) receives step i's output; nothing else is called between
// the steps (a callback that read the states through a pointer kept them
// on the stack: the checkpoints are taken between segments of a tile,
// scan16_run_ckpt). y is summed over n in two
// interleaved chains, which halves the dependent additions per step.
struct Rows16 {
  const float* B;
  const float* C;
};

// ---------------------------------------------------------------------
// Kernel variants chosen at run time (semillie_mm/ops/cpu_ext/variants.py
// picks one from the CPU's vendor, family and flags when the extension is
// loaded; SEMILLIE_KERNEL_VARIANT forces one). The defaults are the
// variant the kernels were first tuned with on a Zen 5 (issue10 in
// variants.py; the loader always sets the chosen one).
//   lanes: 16 = the d_state-16 tile on whole 512-bit vectors (one AVX-512
//          register per state; two 256-bit halves per register on an AVX2
//          build), 8 = the 16-channel block as two passes of 256-bit
//          vectors (16 states x 8 channels in registers)
//   exp:   the exp2 sequence of that tile: 0 = clamped, vrndscaleps +
//          vscalefps (AVX-512); 1 = the same without the clamps (vscalefps
//          saturates: exp2 of any finite x, under- or overflow included);
//          2 = the portable magic-number rounding and exponent-field
//          arithmetic (clamped); 3 = the table form (exp2_table: eighths
//          from a table, a degree-3 polynomial; every build). Without
//          AVX-512 forms 0 and 1 are form 2.
//   tile:  steps per tile of the fused SS2D forward (16 .. 256)
//   ahead: its software-prefetch distance in tiles (0 = none)
//   pfy:   whether that prefetch also fetches the forward's output rows
//          (y, for writing): 1 as first tuned on a Zen 5; on a Zen 4 the
//          forward ran 4-5 % faster without (AVX2 build, batch 1: 16 %),
//          on a Zen 5 the same within noise
//   bwd16: the backward for d_state 16 in float32 (the fused SS2D
//          kernel's and selective_scan()'s): 0 = the generic per-step
//          recomputation and adjoint (states, decays and adjoints in
//          memory), 1 = a register path, exp2 in the variant's form: on
//          lanes 16 (AVX-512 builds; selective_scan() without the gate)
//          recompute16 / adjoint16 (the 16 adjoints in registers through
//          a chunk), on lanes 8 and on builds without AVX-512 the 256-bit
//          steps recompute_step16_v8 / adjoint_step16_v8 (steps16_v8)
//   spread: where the scans' software prefetches of the next block's /
//          tile's / chunk's lines are issued (every selective_scan(); the
//          fused kernel at d_state 16 in float32, its backward on the
//          bwd16 path):
//          0 = all at once where a tile or block starts (as first tuned),
//          1 = a few a step from inside the recurrence. At once, a
//          block's hundreds of lines outran the core's miss buffers:
//          spread, selective_scan()'s backward took 0.82-0.92x and the
//          fused forward 0.84-0.93x at batch 1 (Zen 5)
struct KernelVariant {
  int lanes = 16;
  int exp = 0;
  int tile = 64;
  int ahead = 2;
  int bwd16 = 0;
  int pfy = 1;
  int spread = 0;
};

// hidden: one variant per binary. Exported, its static was a unique symbol
// that every build loaded into one process shared (an A/B of two builds
// ran both with the variant set last).
__attribute__((visibility("hidden"))) inline KernelVariant&
kernel_variant() {
  static KernelVariant v;
  return v;
}

// The u of step i of a tile (its 16 channels): U is either the tile's
// rows, (m, 16), or a function of i giving a pointer to step i's channels
// where they lie (the fused forward reads u in place, without a copy)
template <class UP>
__attribute__((always_inline)) inline const float* u_row(const UP& U,
                                                         int64_t i) {
  if constexpr (std::is_pointer_v<UP>) {
    return U + i * 16;
  } else {
    return U(i);
  }
}

// U from step i of the tile on (u_row(u_from(U, i), j) = u_row(U, i + j))
template <class UP>
__attribute__((always_inline)) inline auto u_from(const UP& U, int64_t i) {
  if constexpr (std::is_pointer_v<UP>) {
    return U + i * 16;
  } else {
    return [&U, i](int64_t j) { return U(i + j); };
  }
}

// The d_state-16 tile described above, on VT vectors: the lanes
// [off, off + W) of a 16-channel block (U, Dt, a2, Dv, hmem keep the
// block's row stride of 16). emit(i, y, off) gets step i's output.
template <class VT, int F, class UP, class RowsFn, class EmitFn>
__attribute__((always_inline)) inline void scan16_tile_v(
    UP U, const float* __restrict Dt,
    const float* __restrict a2, const float* __restrict Dv, float* hmem,
    int64_t m, int off, RowsFn rows, EmitFn emit) {
  constexpr int W = VecInfo<VT>::W;
  constexpr size_t S = sizeof(VT);
  VT h[16], dvv;
  for (int n = 0; n < 16; ++n) std::memcpy(&h[n], hmem + n * 16 + off, S);
  std::memcpy(&dvv, Dv + off, S);
  for (int64_t i = 0; i < m; ++i) {
    VT d, uu;
    std::memcpy(&d, Dt + i * 16 + off, S);
    std::memcpy(&uu, u_row(U, i) + off, S);
    const VT du = d * uu;
    VT y0 = dvv * uu, y1 = splat_v<VT>(0.0f);
    const Rows16 r = rows(i);
#pragma GCC unroll 16
    for (int n = 0; n < 16; ++n) {
      VT an;
      std::memcpy(&an, a2 + n * 16 + off, S);
      h[n] = exp2_vec<VT, F>(d * an) * h[n] + du * r.B[n];
      if (n & 1) {
        y1 += r.C[n] * h[n];
      } else {
        y0 += r.C[n] * h[n];
      }
    }
    emit(i, y0 + y1, off);
  }
  (void)W;
  for (int n = 0; n < 16; ++n) std::memcpy(hmem + n * 16 + off, &h[n], S);
}

// scan16_tile in the variant v: one pass of 16 lanes or two of 8 (the
// second skipped when the block has at most 8 channels, vc)
template <class UP, class RowsFn, class EmitFn>
inline void scan16_run(const KernelVariant& v, UP U,
                       const float* Dt, const float* a2, const float* Dv,
                       float* hmem, int64_t m, int vc, RowsFn rows,
                       EmitFn emit) {
  with_exp_form(v.exp, [&](auto form) {
    constexpr int F = decltype(form)::value;
    if (v.lanes == 8) {
      for (int off = 0; off < 16 && off < vc; off += 8)
        scan16_tile_v<vf8, F>(U, Dt, a2, Dv, hmem, m, off, rows, emit);
    } else {
      scan16_tile_v<vf16, F>(U, Dt, a2, Dv, hmem, m, 0, rows, emit);
    }
  });
}

// dst[c] = v[c] for c < vc (vc <= W), any vector width
template <class VT>
__attribute__((always_inline)) inline void store_lanes_v(float* dst, VT v,
                                                         int vc) {
  constexpr int W = VecInfo<VT>::W;
  if (vc >= W) {
    std::memcpy(dst, &v, sizeof(VT));
    return;
  }
  for (int c = 0; c < vc; ++c) dst[c] = v[c];
}

// dst[c] += v[c] for c < vc (vc <= W), any vector width
template <class VT>
__attribute__((always_inline)) inline void add_lanes_v(float* dst, VT v,
                                                       int vc) {
  constexpr int W = VecInfo<VT>::W;
  if (vc >= W) {
    VT o;
    std::memcpy(&o, dst, sizeof(VT));
    o += v;
    std::memcpy(dst, &o, sizeof(VT));
    return;
  }
  for (int c = 0; c < vc; ++c) dst[c] += v[c];
}

// scan16_run for both scans' forwards, with the checkpoints taken between
// segments of the tile instead of inside its step loop: the tile's steps
// [0, m) (step t0 + i of the sequence) are cut where (t0 + i) % K == 0, the
// state entering such a step is copied from hmem into the checkpoint rows
// (ck: the block's first channel in chunk 0's row of N = 16 rows of stride
// E; null: no checkpoints, one segment), and each segment runs scan16_run
// with nothing called between its steps but rows and emit. With a
// checkpoint callback inside the loop (it reads the states through a
// pointer) GCC kept the 16 states on the stack, a load and a store per
// state and step; here they stay in registers.
template <class UP, class RowsFn, class EmitFn>
inline void scan16_run_ckpt(const KernelVariant& v, UP U,
                            const float* Dt, const float* a2,
                            const float* Dv, float* hmem, int64_t m, int vc,
                            float* ck, int64_t E, int64_t K, int64_t t0,
                            RowsFn rows, EmitFn emit) {
  for (int64_t i = 0; i < m;) {
    int64_t e = m;
    if (ck) {
      const int64_t r = (t0 + i) % K;
      if (r == 0) {  // the state entering chunk (t0 + i) / K
        float* dst = ck + ((t0 + i) / K) * 16 * E;
        for (int n = 0; n < 16; ++n)
          for (int c = 0; c < vc; ++c) dst[n * E + c] = hmem[n * 16 + c];
      }
      e = std::min(m, i + (K - r));
    }
    scan16_run(
        v, u_from(U, i), Dt + i * 16, a2, Dv, hmem, e - i, vc,
        [&](int64_t j) { return rows(i + j); },
        [&](int64_t j, auto y, int off) { emit(i + j, y, off); });
    i = e;
  }
}

// dst[c] = v[c] for c < vc (vc <= 16)
__attribute__((always_inline)) inline void store_lanes(float* dst, vf16 v,
                                                       int vc) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << vc) - 1u), v);
#else
  for (int c = 0; c < vc; ++c) dst[c] = v[c];
#endif
}

// dst[c] += src[c] for c < vc (vc <= V), whole vectors when vc == V
template <typename T, int V>
__attribute__((always_inline)) inline void add_block(T* __restrict dst,
                                                     const T* __restrict src,
                                                     int vc) {
  if (vc == V) {
    for (int c = 0; c < V; ++c) dst[c] += src[c];
    return;
  }
  for (int c = 0; c < vc; ++c) dst[c] += src[c];
}

// dst[c] += v[c] for c < vc (vc <= 16)
__attribute__((always_inline)) inline void add_lanes(float* dst, vf16 v,
                                                     int vc) {
  if (vc == 16) {
    vf16 o;
    std::memcpy(&o, dst, 64);
    o += v;
    std::memcpy(dst, &o, 64);
  } else {
    for (int c = 0; c < vc; ++c) dst[c] += v[c];
  }
}

// Sums of rows over their lanes by a tree fed one row at a time:
// push(n, row) for n = 0, 1, .. in order (n a compile-time constant after
// unrolling). Level k combines its pending vector with the one coming up
// as soon as both exist (Ops::combine(k, a, b)), so at most one pending
// vector per level stays live; after kL levels the result goes to
// out[n >> kL]. RowSums16 (AVX-512, 16 rows of 16) and RowSums8 (16 rows
// of 8, two results) are its instances.
template <class VT, class Ops, int kL, int kOut>
struct RowTree {
  VT p[kL], out[kOut];
  __attribute__((always_inline)) inline void push(int n, VT r) {
#pragma GCC unroll 4
    for (int k = 0; k < kL; ++k) {
      if (((n >> k) & 1) == 0) {
        p[k] = r;
        return;
      }
      r = Ops::combine(k, p[k], r);
    }
    out[n >> kL] = r;
  }
};

// 8 floats from memory as one vector, and back (load_v / store_v). Filling
// an array of vectors by memcpy into its elements instead made GCC copy the
// rows through the stack in 16-byte pieces, which the transpose's 32-byte
// loads could not forward from (the backward took 1.09x with that gather).
__attribute__((always_inline)) inline vf8 load8(const float* p) {
  return load_v<vf8>(p);
}
__attribute__((always_inline)) inline void store8(float* p, vf8 v) {
  store_v(p, v);
}

// In-register transpose of an 8 x 8 float32 block on 256-bit vectors (the
// builds without AVX-512; GCC vector shuffles, so any x86-64 build):
// r[i] holds row i on entry and column i on return (unpack, in-lane
// shuffle, 128-bit lane swap: 24 shuffles for 64 elements)
__attribute__((always_inline)) inline void transpose8(vf8 r[8]) {
  vf8 t[8];
#pragma GCC unroll 8
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = __builtin_shufflevector(r[2 * k], r[2 * k + 1], 0, 8, 1, 9,
                                       4, 12, 5, 13);
    t[2 * k + 1] = __builtin_shufflevector(r[2 * k], r[2 * k + 1], 2, 10,
                                           3, 11, 6, 14, 7, 15);
  }
#pragma GCC unroll 8
  for (int k = 0; k < 2; ++k) {
    const int a = 4 * k;
    r[a] = __builtin_shufflevector(t[a], t[a + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    r[a + 1] = __builtin_shufflevector(t[a], t[a + 2], 2, 3, 10, 11, 6, 7,
                                       14, 15);
    r[a + 2] = __builtin_shufflevector(t[a + 1], t[a + 3], 0, 1, 8, 9, 4, 5,
                                       12, 13);
    r[a + 3] = __builtin_shufflevector(t[a + 1], t[a + 3], 2, 3, 10, 11, 6,
                                       7, 14, 15);
  }
  // r[j] (j < 4) now holds rows 0-3 of columns j and j + 4, r[4 + j] rows
  // 4-7 of them
#pragma GCC unroll 8
  for (int j = 0; j < 4; ++j) {
    t[j] = __builtin_shufflevector(r[j], r[4 + j], 0, 1, 2, 3, 8, 9, 10, 11);
    t[4 + j] = __builtin_shufflevector(r[j], r[4 + j], 4, 5, 6, 7, 12, 13,
                                       14, 15);
  }
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) r[j] = t[j];
}

#if defined(__AVX512F__)
// In-register transpose of a 16 x 16 float32 block: r[i] holds row i on
// entry and column i on return (unpack, in-lane shuffle, two 128-bit lane
// shuffles: 64 instructions for 256 elements).
__attribute__((always_inline)) inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int k = 0; k < 8; ++k) {
    t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  for (int k = 0; k < 4; ++k) {
    r[4 * k] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
    r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
    r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
    r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
  }
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < 4; ++k) {
      const int a = 8 * h + k;
      t[a] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0x88);
      t[a + 4] = _mm512_shuffle_f32x4(r[a], r[a + 4], 0xDD);
    }
  for (int k = 0; k < 8; ++k) {
    r[k] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
    r[k + 8] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xDD);
  }
}
#endif

#if defined(__AVX512F__)
// The four levels of the row-sum tree below (rows 2k and 2k + 1, then
// the partial sums of rows 4k.., 8k..), one transpose-and-add each
__attribute__((always_inline)) inline __m512 rs_pair(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44),
                       _mm512_shuffle_f32x4(a, b, 0xEE));
}
__attribute__((always_inline)) inline __m512 rs_quad(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88),
                       _mm512_shuffle_f32x4(a, b, 0xDD));
}
__attribute__((always_inline)) inline __m512 rs_oct(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44),
                       _mm512_shuffle_ps(a, b, 0xEE));
}
__attribute__((always_inline)) inline __m512 rs_last(__m512 a, __m512 b) {
  const __m512 w = _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88),
                                 _mm512_shuffle_ps(a, b, 0xDD));
  // w[4 j + i] is the sum of row 4 i + j
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10,
                                        14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, w);
}

// out[n] = sum_c M[n * 16 + c] for a 16 x 16 float32 matrix (64-byte
// aligned): a transpose-and-add tree (46 instructions for the 16 sums
// instead of 16 horizontal reductions)
__attribute__((always_inline)) inline __m512 row_sums16(const float* M) {
  __m512 s[8], u[4], v[2];
  for (int k = 0; k < 8; ++k)
    s[k] = rs_pair(_mm512_load_ps(M + (2 * k) * 16),
                   _mm512_load_ps(M + (2 * k + 1) * 16));
  for (int k = 0; k < 4; ++k) u[k] = rs_quad(s[2 * k], s[2 * k + 1]);
  // u[k]: 128-bit lane j holds 4 partial sums of row 4k + j
  for (int k = 0; k < 2; ++k) v[k] = rs_oct(u[2 * k], u[2 * k + 1]);
  return rs_last(v[0], v[1]);
}

// The sums of four rows of 16 (a[c], b[c], c[c], d[c] summed over c) as
// one 128-bit vector, by the first two levels of the row-sum tree and two
// in-lane steps
__attribute__((always_inline)) inline __m128 tail_rows4(__m512 a, __m512 b,
                                                        __m512 c, __m512 d) {
  // 128-bit lane j of u holds 4 partial sums of row j
  const __m512 u = rs_quad(rs_pair(a, b), rs_pair(c, d));
  __m512 t = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, 0x4E));
  t = _mm512_add_ps(t, _mm512_shuffle_ps(t, t, 0xB1));
  // every element of lane j is row j's sum: take elements 0, 4, 8, 12
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0,
                                        0, 0, 0, 0, 0);
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(idx, t));
}

// row_sums16 fed one row at a time (RowTree; its four levels rs_pair ..
// rs_last): no row goes through memory. The same operations on the same
// pairs as row_sums16: the same bits. out[0]: the 16 sums.
struct RowSums16Ops {
  static __attribute__((always_inline)) inline __m512 combine(int k,
                                                              __m512 a,
                                                              __m512 b) {
    return k == 0 ? rs_pair(a, b)
                  : k == 1 ? rs_quad(a, b) : k == 2 ? rs_oct(a, b)
                                                    : rs_last(a, b);
  }
};
typedef RowTree<__m512, RowSums16Ops, 4, 1> RowSums16;
#endif

#if defined(__AVX512F__)
// The backward's recomputation for one block of 16 float32 channels with
// d_state 16, m steps with the states in registers: E[i] = exp(dt A) and
// H[i + 1] = E[i] H[i] + dt u B (H: (m + 1, 16, 16), row 0 the state
// entering the chunk; E: (m, 16, 16)). Dl, Ul: the chunk's dt and u (m,
// 16); a2 = A log2(e) (16, 16); rows(i) gives step i's B row.
template <int F, class RowsFn>
__attribute__((always_inline)) inline void recompute16(
    int64_t m, const float* __restrict Dl, const float* __restrict Ul,
    const float* __restrict a2, float* __restrict H, float* __restrict E,
    RowsFn rows) {
  vf16 h[16];
  for (int n = 0; n < 16; ++n) std::memcpy(&h[n], H + n * 16, 64);
  for (int64_t i = 0; i < m; ++i) {
    vf16 d, uu;
    std::memcpy(&d, Dl + i * 16, 64);
    std::memcpy(&uu, Ul + i * 16, 64);
    const vf16 du = d * uu;
    const float* Bp = rows(i);
    float* Ei = E + i * 256;
    float* Hi = H + (i + 1) * 256;
#pragma GCC unroll 16
    for (int n = 0; n < 16; ++n) {
      vf16 an;
      std::memcpy(&an, a2 + n * 16, 64);
      const vf16 e = exp2_vec<vf16, F>(d * an);
      h[n] = e * h[n] + du * Bp[n];
      std::memcpy(Ei + n * 16, &e, 64);
      std::memcpy(Hi + n * 16, &h[n], 64);
    }
  }
}

// recompute16 with the variant's exp2 form (both scans' backwards)
template <class RowsFn>
inline void recompute16_run(const KernelVariant& v, int64_t m,
                            const float* Dl, const float* Ul,
                            const float* a2, float* H, float* E,
                            RowsFn rows) {
  with_exp_form(v.exp, [&](auto form) {
    recompute16<decltype(form)::value>(m, Dl, Ul, a2, H, E, rows);
  });
}

// The adjoint recurrence over one chunk of m steps, backwards, for one
// block of 16 float32 channels with d_state 16 (adjoint_step's sums) with
// the 16 adjoints lam[n] in registers from the chunk's last step to its
// first. lam (16, 16) enters and leaves in memory; dAc (16, 16)
// accumulates x dt. Per step i: H, E as recompute16 left them; Dl, Ul, Gl:
// dt, u, dL/dy (m, 16); a = A (16, 16); rows(i) = {B, C} of the step.
// step(i, ddt, lb_d, sB, sC) is called after the step's sums: ddt (16
// channels, dL/ddt), lb_d = sum_n lam_n B[n] dt per channel (dL/du from
// the recurrence) and sB, sC (16 states, the channel sums).
template <class RowsFn, class StepFn>
__attribute__((always_inline)) inline void adjoint16(
    int64_t m, const float* __restrict Dl, const float* __restrict Ul,
    const float* __restrict Gl, const float* __restrict a,
    const float* __restrict H, const float* __restrict E, float* lam_mem,
    float* __restrict dAc, RowsFn rows, StepFn step) {
  vf16 lam[16];
  for (int n = 0; n < 16; ++n) std::memcpy(&lam[n], lam_mem + n * 16, 64);
  for (int64_t i = m - 1; i >= 0; --i) {
    vf16 d, uu, g;
    std::memcpy(&d, Dl + i * 16, 64);
    std::memcpy(&uu, Ul + i * 16, 64);
    std::memcpy(&g, Gl + i * 16, 64);
    const vf16 dtu = d * uu;
    const Rows16 r = rows(i);
    const float* Hp = H + i * 256;
    const float* Hc = H + (i + 1) * 256;
    const float* Ei = E + i * 256;
    vf16 ddt0 = splat(0.0f), ddt1 = splat(0.0f);
    vf16 lbs0 = splat(0.0f), lbs1 = splat(0.0f);
    RowSums16 sumB, sumC;  // the channel sums of pb, pc
#pragma GCC unroll 16
    for (int n = 0; n < 16; ++n) {
      vf16 hp, hc, e, an, da;
      std::memcpy(&hp, Hp + n * 16, 64);
      std::memcpy(&hc, Hc + n * 16, 64);
      std::memcpy(&e, Ei + n * 16, 64);
      std::memcpy(&an, a + n * 16, 64);
      std::memcpy(&da, dAc + n * 16, 64);
      const vf16 ln = lam[n] + g * r.C[n];
      const vf16 le = ln * e;     // the adjoint entering step i - 1
      const vf16 x = le * hp;     // dL/d(dt A[n]) = ln e h[t-1]
      const vf16 lb = ln * r.B[n];
      if (n & 1) {
        ddt1 += x * an;
        lbs1 += lb;
      } else {
        ddt0 += x * an;
        lbs0 += lb;
      }
      da += x * d;
      std::memcpy(dAc + n * 16, &da, 64);
      sumB.push(n, ln * dtu);
      sumC.push(n, g * hc);
      lam[n] = le;
    }
    const vf16 lbs = lbs0 + lbs1;
    // ddt gets sum_n ln B[n] u, dut sum_n ln B[n] dt: one product each
    step(i, ddt0 + ddt1 + lbs * uu, lbs * d, sumB.out[0], sumC.out[0]);
  }
  for (int n = 0; n < 16; ++n) std::memcpy(lam_mem + n * 16, &lam[n], 64);
}
#endif

// ---------------------------------------------------------------------
// The backward's steps for one block of 16 float32 channels with d_state
// 16 on 256-bit vectors: the register path (variant bwd16) of lanes 8 and
// of builds without AVX-512, whose 16 vector registers cannot hold
// adjoint16's states. The chunk loops stay the generic ones (states,
// decays and adjoints in memory, where they sit in L1); what the steps
// change against recompute_step / adjoint_step: the states unrolled, the
// per-step accumulators in registers (the generic loops carry ddt and dut
// through memory, one store-to-load dependency per state), the 2 x 16
// channel sums by a shuffle-and-add tree instead of 32 horizontal
// reductions, and exp2 in the variant's vector form.

// 16 rows of 8 lanes summed over their lanes (RowTree): out[0] receives
// the sums of rows 0-7, out[1] of rows 8-15. Levels 0 and 1 add
// neighbouring lanes in pairs, level 2 the two 128-bit halves of rows
// 4k..4k+3 (lanes 0-3 and 4-7).
struct RowSums8Ops {
  // [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, a6+a7, b4+b5, b6+b7]
  static __attribute__((always_inline)) inline vf8 pair(vf8 a, vf8 b) {
    return __builtin_shufflevector(a, b, 0, 2, 8, 10, 4, 6, 12, 14) +
           __builtin_shufflevector(a, b, 1, 3, 9, 11, 5, 7, 13, 15);
  }
  static __attribute__((always_inline)) inline vf8 combine(int k, vf8 a,
                                                           vf8 b) {
    if (k < 2) return pair(a, b);
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15);
  }
};
typedef RowTree<vf8, RowSums8Ops, 3, 2> RowSums8;

// recompute_step (N = 16, V = 16) on two 256-bit halves, exp2 in form F
template <int F>
__attribute__((always_inline)) inline void recompute_step16_v8(
    const float* __restrict Bp, const float* __restrict d,
    const float* __restrict uu, const float* __restrict a2,
    const float* __restrict Hp, float* __restrict Hc, float* __restrict En,
    float* __restrict dtu) {
  for (int off = 0; off < 16; off += 8) {
    vf8 dv, uv;
    std::memcpy(&dv, d + off, 32);
    std::memcpy(&uv, uu + off, 32);
    const vf8 du = dv * uv;
    std::memcpy(dtu + off, &du, 32);
#pragma GCC unroll 16
    for (int n = 0; n < 16; ++n) {
      const int o = n * 16 + off;
      vf8 an, hp;
      std::memcpy(&an, a2 + o, 32);
      std::memcpy(&hp, Hp + o, 32);
      const vf8 e = exp2_vec<vf8, F>(dv * an);
      const vf8 hc = e * hp + du * Bp[n];
      std::memcpy(En + o, &e, 32);
      std::memcpy(Hc + o, &hc, 32);
    }
  }
}

// recompute_step16_v8 in the variant's exp2 form (builds without AVX-512
// have forms 2 and 3 only: any other runs as 2)
__attribute__((always_inline)) inline void recompute_step16_v8_run(
    int exp, const float* Bp, const float* d, const float* uu,
    const float* a2, const float* Hp, float* Hc, float* En, float* dtu) {
  with_exp_form(exp, [&](auto form) {
    recompute_step16_v8<decltype(form)::value>(Bp, d, uu, a2, Hp, Hc, En,
                                               dtu);
  });
}

// adjoint_step (N = 16, V = 16, float32) on two 256-bit halves per state,
// the same arguments and results: ddt, dut accumulate; sB, sC receive the
// 16 channel sums (add: are added to them); lam, dAc updated in place
__attribute__((always_inline)) inline void adjoint_step16_v8(
    const float* __restrict Bp, const float* __restrict Cp,
    const float* __restrict Hp, const float* __restrict Hc,
    const float* __restrict En, const float* __restrict a,
    float* __restrict lam, float* __restrict dAc, const float* __restrict d,
    const float* __restrict uu, const float* __restrict g,
    const float* __restrict dtu, float* __restrict ddt,
    float* __restrict dut, float* __restrict sB, float* __restrict sC,
    bool add) {
  vf8 dv[2], gv[2], tv[2];
  for (int h = 0; h < 2; ++h) {
    std::memcpy(&dv[h], d + 8 * h, 32);
    std::memcpy(&gv[h], g + 8 * h, 32);
    std::memcpy(&tv[h], dtu + 8 * h, 32);
  }
  // ddt's and lbs's sums over the states in two chains each (even and odd
  // n; one chain of 16 FMAs was the step's longest dependency)
  vf8 xa[2][2] = {}, lbs[2][2] = {};
  RowSums8 rb, rc;
#pragma GCC unroll 16
  for (int n = 0; n < 16; ++n) {
    vf8 pb, pc;
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const int o = n * 16 + 8 * h;
      vf8 l, hp, hc, e, an, da;
      std::memcpy(&l, lam + o, 32);
      std::memcpy(&hp, Hp + o, 32);
      std::memcpy(&hc, Hc + o, 32);
      std::memcpy(&e, En + o, 32);
      std::memcpy(&an, a + o, 32);
      std::memcpy(&da, dAc + o, 32);
      const vf8 ln = l + gv[h] * Cp[n];
      const vf8 ln_e = ln * e;  // the adjoint entering the step before
      const vf8 x = ln_e * hp;  // dL/d(dt A[n]) = ln e h[t-1]
      xa[h][n & 1] += x * an;
      lbs[h][n & 1] += ln * Bp[n];
      da += x * dv[h];
      std::memcpy(dAc + o, &da, 32);
      const vf8 b = ln * tv[h], c = gv[h] * hc;
      pb = h ? pb + b : b;
      pc = h ? pc + c : c;
      std::memcpy(lam + o, &ln_e, 32);
    }
    rb.push(n, pb);
    rc.push(n, pc);
  }
  for (int h = 0; h < 2; ++h) {
    vf8 uv, dd, du;
    std::memcpy(&uv, uu + 8 * h, 32);
    std::memcpy(&dd, ddt + 8 * h, 32);
    std::memcpy(&du, dut + 8 * h, 32);
    // ddt gets sum_n ln B[n] u, dut sum_n ln B[n] dt: one product each
    const vf8 lb = lbs[h][0] + lbs[h][1];
    dd += xa[h][0] + xa[h][1] + lb * uv;
    du += lb * dv[h];
    std::memcpy(ddt + 8 * h, &dd, 32);
    std::memcpy(dut + 8 * h, &du, 32);
  }
  const auto put = [add](float* p, vf8 v) {
    store8(p, add ? load8(p) + v : v);
  };
  put(sB, rb.out[0]);
  put(sB + 8, rb.out[1]);
  put(sC, rc.out[0]);
  put(sC + 8, rc.out[1]);
}

// whether a backward at d_state N takes the steps above: float32 (checked
// by the caller), N 16 and variant bwd16, on lanes 8 or on a build without
// AVX-512 (where lanes 16's register path, adjoint16, does not exist)
inline bool steps16_v8(const KernelVariant& v, int64_t N) {
#if defined(__AVX512F__)
  return N == 16 && v.bwd16 && v.lanes == 8;
#else
  return N == 16 && v.bwd16;
#endif
}

// Per-block constants of both kernels, V lanes each, zero past the block's
// vc channels: a2 = A log2(e) (N, V), the skip weights D and the delta bias
// (D and bias may be null: zeros).
template <typename T, int V>
inline void load_block_consts(const T* A, const T* D, const T* bias,
                              int64_t c0, int vc, int64_t N, T* a2, T* Dv,
                              T* bv) {
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < V; ++c)
      a2[n * V + c] = c < vc ? A[(c0 + c) * N + n] * T(kLog2e) : T(0);
  for (int c = 0; c < V; ++c) {
    Dv[c] = (D && c < vc) ? D[c0 + c] : T(0);
    bv[c] = (bias && c < vc) ? bias[c0 + c] : T(0);
  }
}

// The state entering a chunk into the checkpoint row ck (N rows of stride
// E): ck[n * E + c] = h[n * V + c] for c < vc.
template <typename T, int V>
inline void store_state(T* ck, int64_t E, const T* h, int64_t N, int vc) {
  for (int64_t n = 0; n < N; ++n)
    for (int c = 0; c < vc; ++c) ck[n * E + c] = h[n * V + c];
}

// The backward's way back: the state entering a chunk from its checkpoint
// row ck (N rows of stride E) into h (N, V), zero past vc; with prev, the
// chunk before's rows (ck - N E, the next the backward reads, written long
// before) prefetched.
template <typename T, int V>
inline void load_state(const T* ck, int64_t E, T* h, int64_t N, int vc,
                       bool prev) {
  for (int64_t n = 0; n < N; ++n) {
    if (prev) __builtin_prefetch(ck + (n - N) * E, 0);
    if (vc == V) {
      std::memcpy(&h[n * V], ck + n * E, V * sizeof(T));
    } else {
      for (int c = 0; c < V; ++c) h[n * V + c] = c < vc ? ck[n * E + c] : T(0);
    }
  }
}

// One step of the forward for one block of V channels (the generic-d_state
// path of both kernels; d_state 16 in float32 runs scan16_run): per state
// n, h[n] = exp(dt A[n]) h[n] + dt u B[n] in place, and
// yv = D u + sum_n C[n] h[n] (Bp, Cp: the step's B and C rows; d, uu: its
// dt and u; a2 = A log2(e) and h: (N, V); du: scratch of V).
template <typename T, int V>
__attribute__((always_inline)) inline void forward_step(
    int64_t N, const T* Bp, const T* Cp, const T* __restrict d,
    const T* __restrict uu, const T* __restrict a2, const T* __restrict Dv,
    T* __restrict h, T* __restrict du, T* __restrict yv) {
  for (int c = 0; c < V; ++c) {
    du[c] = d[c] * uu[c];
    yv[c] = Dv[c] * uu[c];
  }
  for (int64_t n = 0; n < N; ++n) {
    const T bn = Bp[n], cn = Cp[n];
    T* hn = h + n * V;
    const T* an = a2 + n * V;
#pragma omp simd
    for (int c = 0; c < V; ++c) {
      const T hv = exp_scaled(d[c] * an[c]) * hn[c] + du[c] * bn;
      hn[c] = hv;
      yv[c] += cn * hv;
    }
  }
}

// One step of the backward's recomputation for one block of V channels:
// e[n] = exp(dt A[n]) into En, h[t, n] = e[n] h[t-1, n] + dt u B[n] into Hc
// (Hp, Hc, En, a2 = A log2(e): (N, V)); dtu receives dt u.
template <typename T, int V>
__attribute__((always_inline)) inline void recompute_step(
    int64_t N, const T* __restrict Bp, const T* __restrict d,
    const T* __restrict uu, const T* __restrict a2, const T* __restrict Hp,
    T* __restrict Hc, T* __restrict En, T* __restrict dtu) {
  for (int c = 0; c < V; ++c) dtu[c] = d[c] * uu[c];
  for (int64_t n = 0; n < N; ++n) {
    const T bn = Bp[n];
    const T* hp = Hp + n * V;
    T* hc = Hc + n * V;
    T* en = En + n * V;
    const T* an = a2 + n * V;
#pragma omp simd
    for (int c = 0; c < V; ++c) {
      const T e = exp_scaled(d[c] * an[c]);
      en[c] = e;
      hc[c] = e * hp[c] + dtu[c] * bn;
    }
  }
}

// One step of the adjoint recurrence of the selective scan for one block of
// V channels (the backward of both kernels). Per state n, with
// ln = lam[n] + g C[n] = dL/dh[t, n] and x = (ln e[n]) h[t-1, n]:
//   ddt += x A[n] + ln B[n] u,   dA[n] += x dt,   du += ln B[n] dt,
//   sB[n] = sum_c ln dt u,  sC[n] = sum_c g h[t, n],  lam[n] = ln e[n]
// Hp, Hc, En: the states entering and leaving the step and the decays,
// (N, V); a = A, lam, dAc: (N, V); d, uu, g, dtu: dt, u, dL/dy and dt u of
// the step; ddt, dut accumulate. sB, sC receive the N channel sums (add: the
// sums are added to them; for d_state 16 on AVX-512 by two transpose-and-add
// trees instead of 2 x 16 horizontal reductions: backward -28%).
template <typename T, int V>
__attribute__((always_inline)) inline void adjoint_step(
    int64_t N, const T* __restrict Bp, const T* __restrict Cp,
    const T* __restrict Hp, const T* __restrict Hc, const T* __restrict En,
    const T* __restrict a, T* __restrict lam, T* __restrict dAc,
    const T* __restrict d, const T* __restrict uu, const T* __restrict g,
    const T* __restrict dtu, T* __restrict ddt, T* __restrict dut,
    T* __restrict sB, T* __restrict sC, bool add = false) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (N == 16) {  // the default d_state: rows, then one tree each
      alignas(64) float PB[256], PC[256];
      for (int64_t n = 0; n < 16; ++n) {
        const T bn = Bp[n], cn = Cp[n];
        const T* hp = Hp + n * V;
        const T* hc = Hc + n * V;
        const T* en = En + n * V;
        const T* an = a + n * V;
        T* ln_ = lam + n * V;
        T* dac = dAc + n * V;
        float* pb = PB + n * 16;
        float* pc = PC + n * 16;
#pragma omp simd
        for (int c = 0; c < V; ++c) {
          const T ln = ln_[c] + g[c] * cn;
          const T le = ln * en[c];
          const T x = le * hp[c];
          const T lb = ln * bn;
          ddt[c] += (x * an[c] + lb * uu[c]);
          dac[c] += x * d[c];
          dut[c] += lb * d[c];
          pb[c] = ln * dtu[c];
          pc[c] = g[c] * hc[c];
          ln_[c] = le;
        }
      }
      __m512 rb = row_sums16(PB), rc = row_sums16(PC);
      if (add) {
        rb = _mm512_add_ps(_mm512_loadu_ps(sB), rb);
        rc = _mm512_add_ps(_mm512_loadu_ps(sC), rc);
      }
      _mm512_storeu_ps(sB, rb);
      _mm512_storeu_ps(sC, rc);
      return;
    }
  }
#endif
  for (int64_t n = 0; n < N; ++n) {
    const T bn = Bp[n], cn = Cp[n];
    const T* hp = Hp + n * V;
    const T* hc = Hc + n * V;
    const T* en = En + n * V;
    const T* an = a + n * V;
    T* ln_ = lam + n * V;
    T* dac = dAc + n * V;
    T s_b = T(0), s_c = T(0);
#pragma omp simd reduction(+ : s_b, s_c)
    for (int c = 0; c < V; ++c) {
      const T ln = ln_[c] + g[c] * cn;
      const T le = ln * en[c];  // the adjoint entering the step before
      const T x = le * hp[c];   // dL/d(dt A[n]) = ln e[n] h[t-1, n]
      const T lb = ln * bn;
      // parenthesised: one dependent add per state on the accumulators,
      // not two FMAs
      ddt[c] += (x * an[c] + lb * uu[c]);
      dac[c] += x * d[c];
      dut[c] += lb * d[c];
      s_b += ln * dtu[c];
      s_c += g[c] * hc[c];
      ln_[c] = le;
    }
    sB[n] = add ? sB[n] + s_b : s_b;
    sC[n] = add ? sC[n] + s_c : s_c;
  }
}

// The backward's two steps for one block, dispatched: the 256-bit register
// steps (recompute_step16_v8_run, adjoint_step16_v8) where steps8 (float32,
// V 16 and N 16 only: steps16_v8 decides), the generic ones otherwise. The
// arguments are those of recompute_step and adjoint_step (exp: the variant's
// exp2 form, used by the register step).
template <typename T, int V>
__attribute__((always_inline)) inline void recompute_step_sel(
    bool steps8, int exp, int64_t N, const T* Bp, const T* d, const T* uu,
    const T* a2, const T* Hp, T* Hc, T* En, T* dtu) {
  if constexpr (std::is_same_v<T, float> && V == 16) {
    if (steps8) {
      recompute_step16_v8_run(exp, Bp, d, uu, a2, Hp, Hc, En, dtu);
      return;
    }
  }
  (void)exp;
  recompute_step<T, V>(N, Bp, d, uu, a2, Hp, Hc, En, dtu);
}

template <typename T, int V>
__attribute__((always_inline)) inline void adjoint_step_sel(
    bool steps8, int64_t N, const T* Bp, const T* Cp, const T* Hp,
    const T* Hc, const T* En, const T* a, T* lam, T* dAc, const T* d,
    const T* uu, const T* g, const T* dtu, T* ddt, T* dut, T* sB, T* sC,
    bool add) {
  if constexpr (std::is_same_v<T, float> && V == 16) {
    if (steps8) {
      adjoint_step16_v8(Bp, Cp, Hp, Hc, En, a, lam, dAc, d, uu, g, dtu, ddt,
                        dut, sB, sC, add);
      return;
    }
  }
  adjoint_step<T, V>(N, Bp, Cp, Hp, Hc, En, a, lam, dAc, d, uu, g, dtu, ddt,
                     dut, sB, sC, add);
}

}  // namespace semillie_scan
