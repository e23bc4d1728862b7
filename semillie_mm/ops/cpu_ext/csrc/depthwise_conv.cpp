// Copyright (c) semillie-mm contributors. All rights reserved.
//
// Depth-wise KxK convolution (stride 1, zero padding K/2, odd K) on
// channels-last float32 maps, forward and weight gradient; the input
// gradient is the forward with the kernel flipped. MSSM's 3x3 and 5x5
// depth-wise convs run on it in training: oneDNN's weight gradient of a
// channels-last 5x5 depth-wise conv took 78 ms for a (8, 128, 128, 128) map
// on the 2-core Zen-5 VM, 3x its forward.
//
// Layouts: x, out, g (B, H, W, C) contiguous; w (K*K, C) tap-major (tap
// i * K + j holds w[c, 0, i, j]); bias (C) or empty.
// Work items are rows (b, h) of the output; channels are taken in blocks of
// one vector register (16 float32 lanes with AVX-512, 8 without) so that
// the accumulator of a block stays in a register across the K*K taps. How
// the loops run depends on K (fwd_rows, wgrad_rows): measured on an
// AVX2-only Zen 3; AVX-512 machines take the same forms, not timed there.
#include <torch/extension.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// one vector register of float32 (GCC/Clang vector extension); unaligned
// loads and stores by memcpy. Without AVX-512 a 64-byte vector would live
// on the stack, moved in 64-bit pieces: the AVX2 build's forward took
// 3.6-4.8x the AVX-512 build's on the Zen 4 (3x3, 5x5, 7x7), with 256-bit
// vectors 1.0-1.6x.
#if defined(__AVX512F__)
constexpr int kV = 16;
#else
constexpr int kV = 8;
#endif
typedef float vf __attribute__((vector_size(4 * kV)));

inline vf loadu(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void storeu(float* p, vf v) { std::memcpy(p, &v, sizeof(v)); }

// For K >= 5 the forward takes interior columns (all K taps of a row inside
// the map) NB at a time (fwd_cols): NB accumulators are independent, where
// one accumulator per output vector chains its K*K multiply-adds through the
// FMA latency (4 cycles on Zen 3), and each input vector of a row is loaded
// once for the K taps it feeds. Every output still sums its taps in the same
// order (bias, then rows i, then columns j).
#if defined(__AVX512F__)
constexpr int kNB = 8;
#else
constexpr int kNB = 6;
#endif

// out[col .. col + NB) of one row, channels [c0, c0 + kV), all j in [0, K)
template <int K, int NB>
__attribute__((always_inline)) inline void fwd_cols(
    const float* xbase, const float* w, const float* bias, float* op,
    int64_t W, int64_t C, int i0, int i1, int64_t c0) {
  vf acc[NB];
  const vf b0 = bias ? loadu(bias + c0) : vf{};
  for (int q = 0; q < NB; ++q) acc[q] = b0;
  for (int i = i0; i < i1; ++i) {
    // input column m feeds output q = m - j through tap j: each of the
    // NB + K - 1 input vectors of the row is loaded once
    vf wv[K];
#pragma GCC unroll 8
    for (int j = 0; j < K; ++j) wv[j] = loadu(w + (i * K + j) * C + c0);
    const float* xp = xbase + i * W * C + c0;
#pragma GCC unroll 16
    for (int m = 0; m < NB + K - 1; ++m) {
      const vf xv = loadu(xp + m * C);
#pragma GCC unroll 8
      for (int j = 0; j < K; ++j) {
        const int q = m - j;
        if (q >= 0 && q < NB) acc[q] += xv * wv[j];
      }
    }
  }
  for (int q = 0; q < NB; ++q) storeu(op + q * C + c0, acc[q]);
}

// the scalar channels [Cv, C) of one output pixel (taps j in [j0, j1))
template <int K>
__attribute__((always_inline)) inline void fwd_tail(
    const float* xbase, const float* w, const float* bias, float* op,
    int64_t W, int64_t C, int64_t Cv, int i0, int i1, int j0, int j1) {
  for (int64_t c = Cv; c < C; ++c) {
    float acc = bias ? bias[c] : 0.0f;
    for (int i = i0; i < i1; ++i)
      for (int j = j0; j < j1; ++j)
        acc += xbase[(i * W + j) * C + c] * w[(i * K + j) * C + c];
    op[c] = acc;
  }
}

// one output pixel (any column: taps j in [j0, j1)), vector blocks and the
// scalar tail
template <int K>
__attribute__((always_inline)) inline void fwd_pixel(
    const float* xbase, const float* w, const float* bias, float* op,
    int64_t W, int64_t C, int64_t Cv, int i0, int i1, int j0, int j1) {
  for (int64_t c0 = 0; c0 < Cv; c0 += kV) {
    vf acc = bias ? loadu(bias + c0) : vf{};
    for (int i = i0; i < i1; ++i)
      for (int j = j0; j < j1; ++j)
        acc += loadu(xbase + (i * W + j) * C + c0) *
               loadu(w + (i * K + j) * C + c0);
    storeu(op + c0, acc);
  }
  fwd_tail<K>(xbase, w, bias, op, W, C, Cv, i0, i1, j0, j1);
}

// the forward one pixel at a time (the K = 3 form, see fwd_rows)
template <int K>
void fwd_rows_pixel(const float* x, const float* w, const float* bias,
                    float* out, int64_t H, int64_t W, int64_t C, int64_t r0,
                    int64_t r1) {
  constexpr int P = K / 2;
  const int64_t Cv = C - C % kV;  // channels in full blocks
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / H, h = r % H;
    const int i0 = static_cast<int>(std::max<int64_t>(0, P - h));
    const int i1 = static_cast<int>(std::min<int64_t>(K, H - h + P));
    float* orow = out + r * W * C;
    for (int64_t col = 0; col < W; ++col) {
      const int j0 = static_cast<int>(std::max<int64_t>(0, P - col));
      const int j1 = static_cast<int>(std::min<int64_t>(K, W - col + P));
      fwd_pixel<K>(x + ((b * H + h - P) * W + col - P) * C, w, bias,
                   orow + col * C, W, C, Cv, i0, i1, j0, j1);
    }
  }
}

// the forward with interior columns in blocks of kNB (the K >= 5 form)
template <int K>
void fwd_rows_blocked(const float* x, const float* w, const float* bias,
                      float* out, int64_t H, int64_t W, int64_t C,
                      int64_t r0, int64_t r1) {
  constexpr int P = K / 2;
  const int64_t Cv = C - C % kV;  // channels in full blocks
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / H, h = r % H;
    const int i0 = static_cast<int>(std::max<int64_t>(0, P - h));
    const int i1 = static_cast<int>(std::min<int64_t>(K, H - h + P));
    float* orow = out + r * W * C;
    const float* xrow = x + ((b * H + h - P) * W - P) * C;  // col 0, tap 0
    int64_t col = 0;
    auto pixel = [&](int64_t c) {
      const int j0 = static_cast<int>(std::max<int64_t>(0, P - c));
      const int j1 = static_cast<int>(std::min<int64_t>(K, W - c + P));
      fwd_pixel<K>(xrow + c * C, w, bias, orow + c * C, W, C, Cv, i0, i1,
                   j0, j1);
    };
    for (; col < std::min<int64_t>(P, W); ++col) pixel(col);
    for (; col + kNB <= W - P; col += kNB) {
      for (int64_t c0 = 0; c0 < Cv; c0 += kV)
        fwd_cols<K, kNB>(xrow + col * C, w, bias, orow + col * C, W, C, i0,
                         i1, c0);
      for (int q = 0; Cv < C && q < kNB; ++q)  // their scalar channels
        fwd_tail<K>(xrow + (col + q) * C, w, bias, orow + (col + q) * C, W,
                    C, Cv, i0, i1, 0, K);
    }
    for (; col < W; ++col) pixel(col);
  }
}

// out rows [r0, r1). On the AVX2-only Zen 3 (8 x 128^2 x 128 maps, one
// process, best of 3): K = 5 15.1 ms in blocks against 24.0 pixel by pixel,
// K = 3 11.0 against 7.2, so each K takes its faster form.
template <int K>
void fwd_rows(const float* x, const float* w, const float* bias, float* out,
              int64_t H, int64_t W, int64_t C, int64_t r0, int64_t r1) {
  if constexpr (K >= 5) {
    fwd_rows_blocked<K>(x, w, bias, out, H, W, C, r0, r1);
  } else {
    fwd_rows_pixel<K>(x, w, bias, out, H, W, C, r0, r1);
  }
}

// wgrad_rows one pixel at a time, the K*K sums of a channel block in acc
// (memory), updated at every pixel: the K = 3 form (see wgrad_rows).
template <int K>
void wgrad_rows_pixel(const float* x, const float* g, double* dw,
                      float* acc, int64_t H, int64_t W, int64_t C,
                      int64_t r0, int64_t r1) {
  constexpr int P = K / 2;
  const int64_t Cv = C - C % kV;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / H, h = r % H;
    const int i0 = static_cast<int>(std::max<int64_t>(0, P - h));
    const int i1 = static_cast<int>(std::min<int64_t>(K, H - h + P));
    std::fill(acc, acc + K * K * C, 0.0f);
    const float* grow = g + r * W * C;
    for (int64_t col = 0; col < W; ++col) {
      const int j0 = static_cast<int>(std::max<int64_t>(0, P - col));
      const int j1 = static_cast<int>(std::min<int64_t>(K, W - col + P));
      const float* xbase = x + ((b * H + h - P) * W + col - P) * C;
      const float* gp = grow + col * C;
      for (int64_t c0 = 0; c0 < Cv; c0 += kV) {
        const vf gv = loadu(gp + c0);
        for (int i = i0; i < i1; ++i)
          for (int j = j0; j < j1; ++j) {
            float* ap = acc + (i * K + j) * C + c0;
            storeu(ap, loadu(ap) + gv * loadu(xbase + (i * W + j) * C + c0));
          }
      }
      for (int64_t c = Cv; c < C; ++c)
        for (int i = i0; i < i1; ++i)
          for (int j = j0; j < j1; ++j)
            acc[(i * K + j) * C + c] += gp[c] * xbase[(i * W + j) * C + c];
    }
    for (int64_t t = 0; t < K * K * C; ++t) dw[t] += acc[t];
  }
}

// wgrad_rows by tap rows: per channel block and tap row i, the K sums of
// taps (i, 0 .. K) stay in registers across the row's columns (K
// independent chains), the same sums in the same order (column by column
// from 0.0f) as wgrad_rows_pixel: the K >= 5 form (see wgrad_rows).
template <int K>
void wgrad_rows_taps(const float* x, const float* g, double* dw,
                     float* acc, int64_t H, int64_t W, int64_t C, int64_t r0,
                     int64_t r1) {
  constexpr int P = K / 2;
  const int64_t Cv = C - C % kV;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / H, h = r % H;
    const int i0 = static_cast<int>(std::max<int64_t>(0, P - h));
    const int i1 = static_cast<int>(std::min<int64_t>(K, H - h + P));
    std::fill(acc, acc + K * K * C, 0.0f);
    const float* grow = g + r * W * C;
    const int64_t lo = std::min<int64_t>(P, W);   // first interior column
    const int64_t hi = std::max<int64_t>(lo, W - P);  // first right edge
    for (int i = i0; i < i1; ++i) {
      // input row h - P + i, at column -P (tap j of column col: col + j)
      const float* xr = x + ((b * H + h - P + i) * W - P) * C;
      for (int64_t c0 = 0; c0 < Cv; c0 += kV) {
        vf a[K];
        for (int j = 0; j < K; ++j) a[j] = vf{};
        auto edge = [&](int64_t col) {
          const vf gv = loadu(grow + col * C + c0);
          const int j0 = static_cast<int>(std::max<int64_t>(0, P - col));
          const int j1 = static_cast<int>(std::min<int64_t>(K, W - col + P));
          for (int j = 0; j < K; ++j)
            if (j >= j0 && j < j1)
              a[j] += gv * loadu(xr + (col + j) * C + c0);
        };
        for (int64_t col = 0; col < lo; ++col) edge(col);
        for (int64_t col = lo; col < hi; ++col) {
          const vf gv = loadu(grow + col * C + c0);
          const float* xp = xr + col * C + c0;
          for (int j = 0; j < K; ++j) a[j] += gv * loadu(xp + j * C);
        }
        for (int64_t col = hi; col < W; ++col) edge(col);
        for (int j = 0; j < K; ++j) storeu(acc + (i * K + j) * C + c0, a[j]);
      }
      for (int64_t c = Cv; c < C; ++c)  // the tail block, scalar
        for (int64_t col = 0; col < W; ++col) {
          const int j0 = static_cast<int>(std::max<int64_t>(0, P - col));
          const int j1 = static_cast<int>(std::min<int64_t>(K, W - col + P));
          for (int j = j0; j < j1; ++j)
            acc[(i * K + j) * C + c] +=
                grow[col * C + c] * xr[(col + j) * C + c];
        }
    }
    for (int64_t t = 0; t < K * K * C; ++t) dw[t] += acc[t];
  }
}

// dw[t, c] += sum over the rows' pixels of g[b, h, col, c] * x at tap t;
// float32 sums per row (in acc, column by column), added into the float64
// accumulator `dw`. On the AVX2-only Zen 3 (8 x 128^2 x 128 maps, one
// process, best of 3): K = 5 18.7 ms by tap rows against 23.0 pixel by
// pixel, K = 3 12.5 against 8.6, so each K takes its faster form.
template <int K>
void wgrad_rows(const float* x, const float* g, double* dw, float* acc,
                int64_t H, int64_t W, int64_t C, int64_t r0, int64_t r1) {
  if constexpr (K >= 5) {
    wgrad_rows_taps<K>(x, g, dw, acc, H, W, C, r0, r1);
  } else {
    wgrad_rows_pixel<K>(x, g, dw, acc, H, W, C, r0, r1);
  }
}

void check_map(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided &&
                  t.scalar_type() == at::kFloat,
              name, " must be a float32 CPU tensor");
  TORCH_CHECK(t.dim() == 4 && t.is_contiguous(), name,
              " must be a contiguous (B, H, W, C) tensor");
}

template <typename F>
void dispatch_k(int64_t K, F&& f) {
  switch (K) {
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: TORCH_CHECK(false, "kernel size must be 3, 5 or 7, got ", K);
  }
}

}  // namespace

// out = depth-wise conv of x (+ bias)
void dw_conv_fwd(const at::Tensor& x, const at::Tensor& w,
                 const at::Tensor& bias, at::Tensor& out, int64_t K) {
  check_map(x, "x");
  check_map(out, "out");
  TORCH_CHECK(out.sizes() == x.sizes(), "out must have x's shape");
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  TORCH_CHECK(w.device().is_cpu() && w.layout() == at::kStrided,
              "w must be a CPU tensor");
  TORCH_CHECK(w.scalar_type() == at::kFloat && w.is_contiguous() &&
                  w.dim() == 2 && w.size(0) == K * K && w.size(1) == C,
              "w must be a contiguous float32 (K*K, C) tensor");
  TORCH_CHECK(bias.device().is_cpu() && bias.layout() == at::kStrided,
              "bias must be a CPU tensor");
  const bool has_bias = bias.numel() > 0;
  if (has_bias)
    TORCH_CHECK(bias.scalar_type() == at::kFloat && bias.is_contiguous() &&
                    bias.numel() == C,
                "bias must be a contiguous float32 (C,) tensor");
  // out is written while x, w and bias are read
  at::assert_no_internal_overlap(out);
  at::assert_no_overlap(out, x);
  at::assert_no_overlap(out, w);
  if (has_bias) at::assert_no_overlap(out, bias);
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = has_bias ? bias.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  dispatch_k(K, [&](auto kc) {
    constexpr int KK = decltype(kc)::value;
    at::parallel_for(0, B * H, 1, [=](int64_t r0, int64_t r1) {
      fwd_rows<KK>(xp, wp, bp, op, H, W, C, r0, r1);
    });
  });
}

// weight gradient, (K*K, C) float64
at::Tensor dw_conv_wgrad(const at::Tensor& x, const at::Tensor& g,
                         int64_t K) {
  check_map(x, "x");
  check_map(g, "g");
  TORCH_CHECK(g.sizes() == x.sizes(), "g must have x's shape");
  const int64_t B = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t T = at::get_num_threads();
  auto part = at::zeros({T, K * K, C}, x.options().dtype(at::kDouble));
  const float* xp = x.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  double* pp = part.data_ptr<double>();
  dispatch_k(K, [&](auto kc) {
    constexpr int KK = decltype(kc)::value;
    at::parallel_for(0, B * H, 1, [=](int64_t r0, int64_t r1) {
      const int64_t tid = std::min<int64_t>(at::get_thread_num(), T - 1);
      std::vector<float> acc(KK * KK * C);
      wgrad_rows<KK>(xp, gp, pp + tid * KK * KK * C, acc.data(), H, W, C,
                     r0, r1);
    });
  });
  return part.sum(0);
}
