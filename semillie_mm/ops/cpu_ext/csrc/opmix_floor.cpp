// Copyright (c) semillie-mm contributors. All rights reserved.
//
// The op-mix floor of the selective scan on the machine at hand: the
// recurrence's own arithmetic and loads, with nothing around it (no
// gathers, no dt projection or softplus, no strided memory), on data that
// stays in the L1 cache, in every thread of torch's pool at once. The
// benchmarks (benchmarks/harness.py::opmix_floor) time it and state the
// scan rows as ratios to it: what the kernels spend on top of the
// arithmetic they cannot avoid.
//
// Forward, per (step, state, channel) element (d_state 16, one block of 16
// channels per thread, the states in registers, scan16_tile_v itself):
//   x = dt a2[n]; e = exp2(x); h = e h + (dt u) B[n]; y += C[n] h
// and per step the loads of dt, u, B, C and the store of y.
// Backward (the kernels' recomputation and adjoint recurrence): per chunk of
// steps, forward: e, h stored per step; backward: per state
//   ln = lam + g C[n]; x = (ln e) h[t-1]; ddt += x a[n] + ln B[n] u;
//   dA[n] += x dt; du += ln B[n] dt; sB[n] += ln dt u (channel sum);
//   sC[n] += g h[t] (channel sum); lam = ln e
// with lam in registers and the two channel sums per state folded into one
// vector per step (a floor: the kernels need the 16 sums themselves).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "scan_math.h"

namespace {

using namespace semillie_scan;

// deterministic inputs of one thread's tile: dt in (0.01, 0.11), u, B, C,
// g in (-1, 1), a2 = A log2(e) with A in (-1.5, -0.5)
struct Tile {
  std::vector<float> U, Dt, B, C, G, a2, Dv;
  explicit Tile(int64_t m) : U(m * 16), Dt(m * 16), B(m * 16), C(m * 16),
                             G(m * 16), a2(256), Dv(16) {
    uint32_t s = 12345u;
    auto rnd = [&s]() {  // xorshift, in [0, 1)
      s ^= s << 13;
      s ^= s >> 17;
      s ^= s << 5;
      return static_cast<float>(s >> 8) / 16777216.0f;
    };
    for (int64_t i = 0; i < m * 16; ++i) {
      U[i] = 2.0f * rnd() - 1.0f;
      Dt[i] = 0.01f + 0.1f * rnd();
      B[i] = 2.0f * rnd() - 1.0f;
      C[i] = 2.0f * rnd() - 1.0f;
      G[i] = 2.0f * rnd() - 1.0f;
    }
    for (int i = 0; i < 256; ++i)
      a2[i] = -(0.5f + rnd()) * static_cast<float>(kLog2e);
    for (int i = 0; i < 16; ++i) Dv[i] = rnd();
  }
};

template <class VT, int F>
double fwd_floor(int64_t m, int64_t reps) {
  Tile T(m);
  alignas(64) float h[256] = {};
  std::vector<float> Y(m * 16);
  for (int64_t r = 0; r < reps; ++r) {
    for (int off = 0; off < 16; off += VecInfo<VT>::W)
      scan16_tile_v<VT, F>(
          T.U.data(), T.Dt.data(), T.a2.data(), T.Dv.data(), h, m, off,
          [&](int64_t i) {
            return Rows16{&T.B[i * 16], &T.C[i * 16]};
          },
          [&](int64_t i, VT y, int o) {
            std::memcpy(&Y[i * 16 + o], &y, sizeof(VT));
          });
  }
  double s = 0;
  for (float v : Y) s += v;
  for (float v : h) s += v;
  return s;
}

template <class VT, int F>
double bwd_floor(int64_t m, int64_t reps) {
  constexpr int W = VecInfo<VT>::W;
  constexpr size_t S = sizeof(VT);
  Tile T(m);
  std::vector<float> H((m + 1) * 256), E(m * 256), a(256);
  for (int i = 0; i < 256; ++i) a[i] = T.a2[i] / static_cast<float>(kLog2e);
  alignas(64) float dAm[256] = {}, sBC[32] = {};
  std::vector<float> DDT(m * 16), DU(m * 16);
  float* __restrict Hs = H.data();
  float* __restrict Es = E.data();
  float* __restrict dAs = dAm;
  const float* __restrict Us = T.U.data();
  const float* __restrict Ds = T.Dt.data();
  const float* __restrict Gs = T.G.data();
  const float* __restrict Bs = T.B.data();
  const float* __restrict Cs = T.C.data();
  const float* __restrict a2s = T.a2.data();
  const float* __restrict as = a.data();
  for (int64_t r = 0; r < reps; ++r) {
    for (int off = 0; off < 16; off += W) {
      // recompute: the chunk's states and decays
      for (int64_t i = 0; i < m; ++i) {
        VT d, uu;
        std::memcpy(&d, &Ds[i * 16 + off], S);
        std::memcpy(&uu, &Us[i * 16 + off], S);
        const VT du = d * uu;
        const float* Bp = &Bs[i * 16];
#pragma GCC unroll 16
        for (int n = 0; n < 16; ++n) {
          VT an, hp;
          std::memcpy(&an, &a2s[n * 16 + off], S);
          std::memcpy(&hp, &Hs[i * 256 + n * 16 + off], S);
          const VT e = exp2_vec<VT, F>(d * an);
          const VT hc = e * hp + du * Bp[n];
          std::memcpy(&Es[i * 256 + n * 16 + off], &e, S);
          std::memcpy(&Hs[(i + 1) * 256 + n * 16 + off], &hc, S);
        }
      }
      // adjoint, backwards through the chunk
      VT lam[16];
      for (int n = 0; n < 16; ++n) lam[n] = splat_v<VT>(0.0f);
      for (int64_t i = m - 1; i >= 0; --i) {
        VT d, uu, g;
        std::memcpy(&d, &Ds[i * 16 + off], S);
        std::memcpy(&uu, &Us[i * 16 + off], S);
        std::memcpy(&g, &Gs[i * 16 + off], S);
        const VT dtu = d * uu;
        const float* Bp = &Bs[i * 16];
        const float* Cp = &Cs[i * 16];
        VT ddt = splat_v<VT>(0.0f), dut = splat_v<VT>(0.0f);
        VT sb = splat_v<VT>(0.0f), sc = splat_v<VT>(0.0f);
#pragma GCC unroll 16
        for (int n = 0; n < 16; ++n) {
          VT hp, hc, e, an, dA;
          std::memcpy(&hp, &Hs[i * 256 + n * 16 + off], S);
          std::memcpy(&hc, &Hs[(i + 1) * 256 + n * 16 + off], S);
          std::memcpy(&e, &Es[i * 256 + n * 16 + off], S);
          std::memcpy(&an, &as[n * 16 + off], S);
          std::memcpy(&dA, &dAs[n * 16 + off], S);
          const VT ln = lam[n] + g * Cp[n];
          const VT le = ln * e;
          const VT x = le * hp;
          const VT lb = ln * Bp[n];
          ddt += x * an + lb * uu;
          dA += x * d;
          dut += lb * d;
          sb += ln * dtu;
          sc += g * hc;
          lam[n] = le;
          std::memcpy(&dAs[n * 16 + off], &dA, S);
        }
        std::memcpy(&DDT[i * 16 + off], &ddt, S);
        std::memcpy(&DU[i * 16 + off], &dut, S);
        VT acc;
        std::memcpy(&acc, &sBC[off], S);
        acc += sb + sc;
        std::memcpy(&sBC[off], &acc, S);
      }
    }
  }
  double s = 0;
  for (float v : DDT) s += v;
  for (float v : DU) s += v;
  for (float v : dAm) s += v;
  for (float v : sBC) s += v;
  return s;
}

template <int F>
double run_one(int64_t kind, int64_t lanes, int64_t m, int64_t reps) {
  if (kind == 0)
    return lanes == 8 ? fwd_floor<vf8, F>(m, reps) : fwd_floor<vf16, F>(m, reps);
  return lanes == 8 ? bwd_floor<vf8, F>(m, reps) : bwd_floor<vf16, F>(m, reps);
}

}  // namespace

// Runs the op mix `kind` (0 forward, 1 backward) `reps` times over a tile
// of `steps` steps x 16 states x 16 channels in every thread of torch's
// pool (one work item per thread); returns a checksum of the outputs (the
// caller times the call; elements = threads x reps x steps x 256).
// Hidden: each binary runs its own (exported, it bound to the first build
// loaded into a process, so an A/B of two builds timed A's floor as B's).
__attribute__((visibility("hidden"))) double opmix_floor(
    int64_t kind, int64_t lanes, int64_t exp_form, int64_t steps,
    int64_t reps) {
  TORCH_CHECK(kind == 0 || kind == 1, "kind must be 0 (fwd) or 1 (bwd)");
  TORCH_CHECK(lanes == 8 || lanes == 16, "lanes must be 8 or 16");
  TORCH_CHECK(exp_form >= 0 && exp_form <= 3,
              "exp form must be 0, 1, 2 or 3");
  TORCH_CHECK(steps >= 1 && steps <= 4096 && reps >= 1,
              "steps must be in [1, 4096] and reps positive");
  const int64_t nt = at::get_num_threads();
  std::vector<double> sums(nt, 0.0);
  at::parallel_for(0, nt, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      with_exp_form(static_cast<int>(exp_form), [&](auto form) {
        sums[t] = run_one<decltype(form)::value>(kind, lanes, steps, reps);
      });
    }
  });
  double s = 0;
  for (double v : sums) s += v;
  return s;
}
