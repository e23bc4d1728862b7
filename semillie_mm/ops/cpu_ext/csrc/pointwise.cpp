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

__attribute__((always_inline)) inline VT load(const float* p) {
  VT v;
  std::memcpy(&v, p, sizeof(VT));
  return v;
}

__attribute__((always_inline)) inline void store(float* p, VT v) {
  std::memcpy(p, &v, sizeof(VT));
}

// f(offset, count) on [0, n) in vectors; the tail (count < kW) through a
// zero-padded copy, so that every element takes the same arithmetic
template <class Fn>
void for_vectors(int64_t n, Fn f) {
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    int64_t i = b;
    for (; i + kW <= e; i += kW) f(i, kW);
    if (i < e) f(i, static_cast<int>(e - i));
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
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  for_vectors(x.numel(), [=](int64_t i, int n) {
    if (n == kW) {
      const VT v = load(xp + i);
      store(op + i, v * sigmoid_fast(v));
      return;
    }
    alignas(64) float buf[kW] = {};
    std::memcpy(buf, xp + i, n * sizeof(float));
    const VT v = load(buf);
    store(buf, v * sigmoid_fast(v));
    std::memcpy(op + i, buf, n * sizeof(float));
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
  const float* xp = x.data_ptr<float>();
  const float* dp = d.data_ptr<float>();
  float* gp = grad.data_ptr<float>();
  float* sp = with_silu ? silu.data_ptr<float>() : nullptr;
  const auto step = [](VT v, VT dv, VT& g, VT& s) {
    const VT sg = sigmoid_fast(v);
    const VT one = splat_v<VT>(1.0f);
    g = dv * (sg * (one + v * (one - sg)));
    s = v * sg;
  };
  for_vectors(x.numel(), [=](int64_t i, int n) {
    VT g, s;
    if (n == kW) {
      step(load(xp + i), load(dp + i), g, s);
      if (sp) store(sp + i, s);
      store(gp + i, g);
      return;
    }
    alignas(64) float bx[kW] = {}, bd[kW] = {};
    std::memcpy(bx, xp + i, n * sizeof(float));
    std::memcpy(bd, dp + i, n * sizeof(float));
    step(load(bx), load(bd), g, s);
    store(bx, s);
    store(bd, g);
    if (sp) std::memcpy(sp + i, bx, n * sizeof(float));
    std::memcpy(gp + i, bd, n * sizeof(float));
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
  const float* zp = z.data_ptr<float>();
  const float* lp = ln.data_ptr<float>();
  const float* dp = dg.data_ptr<float>();
  float* gp = with_g ? g.data_ptr<float>() : nullptr;
  float* zo = with_dz ? dz.data_ptr<float>() : nullptr;
  float* lo = with_dln ? dln.data_ptr<float>() : nullptr;
  const auto step = [](VT zv, VT lv, VT dv, VT& gv, VT& dzv, VT& dlv) {
    const VT sg = sigmoid_fast(zv);
    const VT one = splat_v<VT>(1.0f);
    const VT si = zv * sg;
    gv = lv * si;
    dzv = (dv * lv) * (sg * (one + zv * (one - sg)));
    dlv = dv * si;
  };
  for_vectors(z.numel(), [=](int64_t i, int n) {
    VT gv, dzv, dlv;
    if (n == kW) {
      step(load(zp + i), load(lp + i), load(dp + i), gv, dzv, dlv);
      if (gp) store(gp + i, gv);
      if (zo) store(zo + i, dzv);
      if (lo) store(lo + i, dlv);
      return;
    }
    alignas(64) float bz[kW] = {}, bl[kW] = {}, bd[kW] = {};
    std::memcpy(bz, zp + i, n * sizeof(float));
    std::memcpy(bl, lp + i, n * sizeof(float));
    std::memcpy(bd, dp + i, n * sizeof(float));
    step(load(bz), load(bl), load(bd), gv, dzv, dlv);
    store(bz, gv);
    store(bl, dzv);
    store(bd, dlv);
    if (gp) std::memcpy(gp + i, bz, n * sizeof(float));
    if (zo) std::memcpy(zo + i, bl, n * sizeof(float));
    if (lo) std::memcpy(lo + i, bd, n * sizeof(float));
  });
}
