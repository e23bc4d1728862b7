// Copyright (c) semillie-mm contributors. All rights reserved.
//
// SiLU and its gradient on float32 CPU tensors, element by element, with
// the scans' exponential (scan_math.h): MSSM's gates and its fuse conv's
// SiLUs run on it in training (ops/silu.py). torch's own silu and
// silu_backward each evaluate exp with Sleef's u10 routine, about 1 ms per
// 2 M elements on 2 threads of the AVX2-only Zen 3, as long as a full
// pass of exp; here 2^x is the table form (AVX2) or vscalefps (AVX-512),
// and the backward also writes SiLU itself, which the fuse conv's weight
// gradient needs, in the same pass.
//
// sigmoid(x) = num / (1 + e) with e = 2^(-|x| log2 e) and num = 1 (x >= 0)
// or e (x < 0), the stable form of the scans' sigmoid_vec;
// silu(x) = x sigmoid(x);
// silu'(x) = sigmoid(x) (1 + x (1 - sigmoid(x))), torch's formula.
// Against float64: SiLU within 6.2e-7 relative (rounding x log2(e) before
// 2^x; torch's 1.4e-7), the gradient within 1.5e-6 of the size of its terms
// (torch's 1.0e-6; tests/ops/test_silu.py). A NaN stays NaN; +inf gives
// inf and a NaN gradient (as torch), -inf gives -inf (torch: NaN).
//
// Every tensor is dense and non-overlapping with the same sizes and strides
// (contiguous or channels-last alike): the elements are walked as one flat
// array. An output may be its input's own storage (in place).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "scan_math.h"

namespace {

using namespace semillie_scan;

#if defined(__AVX512F__)
typedef vf16 VT;
#else
typedef vf8 VT;
#endif
typedef typename VecInfo<VT>::I VI;
constexpr int kW = VecInfo<VT>::W;
// elements per parallel work item: 64 KiB of each operand
constexpr int64_t kGrain = 16384;

__attribute__((always_inline)) inline VT sigmoid_fast(VT v) {
  // -|v|: the sign bit set (a NaN stays NaN)
  const VI bits = reinterpret_cast<const VI&>(v) |
                  static_cast<int32_t>(0x80000000u);
  const VT nax = reinterpret_cast<const VT&>(bits) * float(kLog2e);
#if defined(__AVX512F__)
  const VT e = exp2_nonpos(nax);
#else
  const VT e = exp2_vec<VT, kExpTable>(nax);
#endif
  const VT num = v >= 0.0f ? splat_v<VT>(1.0f) : e;
  return num / (e + 1.0f);
}

// Maps NI input arrays to NO output arrays of n floats, a vector at a
// time: step(v) takes the NI input vectors and returns the NO output
// vectors; an output whose pointer is null is not written. The tail (fewer
// than kW elements) goes through zero-padded copies, so that every element
// takes the same arithmetic. An output may be an input: each vector's
// inputs are all loaded before any of its outputs is stored.
template <size_t NI, size_t NO, class Step>
void map_vectors(int64_t n, const std::array<const float*, NI>& in,
                 const std::array<float*, NO>& out, Step step) {
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    const std::array<const float*, NI> src = in;
    const std::array<float*, NO> dst = out;
    std::array<VT, NI> v;
    int64_t i = b;
    for (; i + kW <= e; i += kW) {
      for (size_t k = 0; k < NI; ++k) v[k] = load_v<VT>(src[k] + i);
      const std::array<VT, NO> r = step(v);
      for (size_t k = 0; k < NO; ++k)
        if (dst[k]) store_v(dst[k] + i, r[k]);
    }
    if (i < e) {
      const size_t bytes = static_cast<size_t>(e - i) * sizeof(float);
      alignas(64) float buf[kW];
      for (size_t k = 0; k < NI; ++k) {
        std::memset(buf, 0, sizeof(buf));
        std::memcpy(buf, src[k] + i, bytes);
        v[k] = load_v<VT>(buf);
      }
      const std::array<VT, NO> r = step(v);
      for (size_t k = 0; k < NO; ++k)
        if (dst[k]) {
          store_v(buf, r[k]);
          std::memcpy(dst[k] + i, buf, bytes);
        }
    }
  });
}

void check(const at::Tensor& t, const at::Tensor& like, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.layout() == at::kStrided &&
                  t.scalar_type() == at::kFloat,
              name, " must be a float32 CPU tensor");
  TORCH_CHECK(t.sizes() == like.sizes() && t.strides() == like.strides(),
              name, " must have x's sizes and strides");
  TORCH_CHECK(t.is_non_overlapping_and_dense(), name,
              " must be dense and non-overlapping");
}

}  // namespace

// out = silu(x); out may be x
void silu_fwd(const at::Tensor& x, at::Tensor& out) {
  check(x, x, "x");
  check(out, x, "out");
  map_vectors<1, 1>(x.numel(), {x.data_ptr<float>()},
                    {out.data_ptr<float>()},
                    [](const std::array<VT, 1>& v) {
                      return std::array<VT, 1>{v[0] * sigmoid_fast(v[0])};
                    });
}

// grad = d * silu'(x) and, when silu has elements, silu = silu(x); grad
// may be d, silu may be x
void silu_bwd(const at::Tensor& x, const at::Tensor& d, at::Tensor& grad,
              at::Tensor& silu) {
  check(x, x, "x");
  check(d, x, "d");
  check(grad, x, "grad");
  const bool with_silu = silu.numel() > 0;
  if (with_silu) check(silu, x, "silu");
  // {grad, silu}
  map_vectors<2, 2>(x.numel(), {x.data_ptr<float>(), d.data_ptr<float>()},
                    {grad.data_ptr<float>(),
                     with_silu ? silu.data_ptr<float>() : nullptr},
                    [](const std::array<VT, 2>& in) {
                      const VT v = in[0];
                      const VT sg = sigmoid_fast(v);
                      const VT one = splat_v<VT>(1.0f);
                      return std::array<VT, 2>{
                          in[1] * (sg * (one + v * (one - sg))), v * sg};
                    });
}

// the backward of MSSM's gate g = ln * silu(z), given dg = dL/dg; with
// s = sigmoid(z), each output only where it has elements:
//   g   = ln * z s                      (the product itself, for W_out)
//   dz  = dg * ln * s (1 + z (1 - s))
//   dln = dg * z s                      (may be dg)
// one pass over the three maps where torch's ops take five
void gate_bwd(const at::Tensor& z, const at::Tensor& ln, const at::Tensor& dg,
              at::Tensor& g, at::Tensor& dz, at::Tensor& dln) {
  check(z, z, "z");
  check(ln, z, "ln");
  check(dg, z, "dg");
  const bool with_g = g.numel() > 0, with_dz = dz.numel() > 0,
             with_dln = dln.numel() > 0;
  if (with_g) check(g, z, "g");
  if (with_dz) check(dz, z, "dz");
  if (with_dln) check(dln, z, "dln");
  // {g, dz, dln}
  map_vectors<3, 3>(
      z.numel(),
      {z.data_ptr<float>(), ln.data_ptr<float>(), dg.data_ptr<float>()},
      {with_g ? g.data_ptr<float>() : nullptr,
       with_dz ? dz.data_ptr<float>() : nullptr,
       with_dln ? dln.data_ptr<float>() : nullptr},
      [](const std::array<VT, 3>& in) {
        const VT zv = in[0], lv = in[1], dv = in[2];
        const VT sg = sigmoid_fast(zv);
        const VT one = splat_v<VT>(1.0f);
        const VT si = zv * sg;
        return std::array<VT, 3>{lv * si,
                                 (dv * lv) * (sg * (one + zv * (one - sg))),
                                 dv * si};
      });
}
