// Copyright (c) semillie-mm contributors. All rights reserved.
//
// Fused four-direction selective scan of SS2D on CPU (forward and backward).
//
// Layouts (channels-last, row-major pixel order p = h * W + w):
//   u     (batch, L, E)        the map, any strides with channel stride 1
//   xdbl  (batch, L, R + 2N)   x_proj output of this direction, any batch
//                              and row strides with element stride 1:
//                              [dt_low (R) | B (N) | C (N)] per pixel
//   Wdt   (E, R), bias (E)     dt_proj weight and bias of this direction
//   A     (E, N), D (E)
//   y     (batch, L, E)        output, accumulated (+=) over directions
//                              (or written: the first direction)
// Direction `dir` visits the pixels in the order
//   0: row-major            p = t
//   1: column-major         p = (t % H) * W + t / H
//   2: row-major, reversed  p = L - 1 - t
//   3: column-major, rev.   like 1 with t -> L - 1 - t
// so no flipped or transposed copy of any map is made.
//
// Per batch b, channel c, state n, step t (at pixel p = p(t)):
//   dt      = softplus(bias[c] + sum_r xdbl[p, r] Wdt[c, r])   (dt_proj fused)
//   h[t, n] = exp(dt A[c, n]) h[t-1, n] + dt B[p, n] u[p, c]
//   y[p, c] += sum_n C[p, n] h[t, n] + D[c] u[p, c]
//
// Vectorisation: channels are taken in blocks of V lanes (V = 16 float32 /
// 8 float64: one AVX-512 register); every inner loop runs over the V lanes
// with the state index n outside, so the compiler emits full-width vector
// code (-O3, FMA contraction). exp(dt A) is computed as exp2(dt * A log2 e)
// with A pre-scaled once, softplus as max(x, 0) + log1p(exp(-|x|)), both by
// branch-free polynomials (float32); float64 (used by the tests) calls libm.
// A forward work item is one batch element and a range of channel blocks,
// walked in tiles of 64 steps: first the tile's u and dt of every block
// (each pixel's xdbl row and the blocks' channels of u read once, next to
// each other), then block by block the recurrence over the tile (for
// d_state 16 in float32 with the 16 states in registers, scan16_run in
// scan_math.h). The pixels of the tile after next are prefetched by
// software: the column-major directions jump W pixels per step, which the
// hardware prefetchers do not follow (batch-1 forward 0.35 -> 0.28
// ns/element with the register path).
//
// Backward: the forward stores the state entering every chunk of K steps;
// the backward recomputes one chunk's states and decays into per-thread
// buffers and runs the adjoint recurrence backwards through it. dxdbl
// (d dt_low, dB, dC) is shared by all channels: backward work items are
// (slot, batch) pairs, slot s handles every S-th channel block and writes
// its own partial dxdbl buffer (S = 1 unless the batch is smaller than the
// thread count); the caller sums the slots. For d_state 16 on AVX-512 the
// 2 x 16 channel sums per step (dB, dC) are one transpose-and-add tree each
// instead of 16 horizontal reductions (backward -28%). Per chunk the
// backward copies the chunk's xdbl rows into a contiguous buffer, takes the
// item's blocks in groups of four: gathers the group's u, dy and dt pixel
// by pixel (a pixel's lines of all four next to each other), runs each
// block's recurrences on contiguous buffers only, adds the group's du
// pixel by pixel; and writes the chunk's dxdbl rows at its end. In the
// column-major directions with power-of-two widths the pixels of a column
// share their cache sets; the per-step strided reads and read-add-writes
// inside the recurrences' loop had made them 20-30 % slower than the
// row-major ones (Zen 5, 256 x 256: backward 0.86-0.87x with the groups,
// row-major 0.95x, 8 x 128 x 128 0.93-1.0x).
#include <torch/extension.h>
#include <ATen/MemoryOverlap.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "scan_math.h"

namespace {

using namespace semillie_scan;

constexpr int64_t kMaxRank = 64;

inline int64_t position(int64_t t, int64_t L, int64_t H, int64_t W, int dir) {
  if (dir >= 2) t = L - 1 - t;
  if (dir & 1) return (t % H) * W + t / H;
  return t;
}

struct Map {  // (batch, L, channels) with channel stride 1
  int64_t sb, sl;
};

struct Problem {
  int64_t nb, H, W, L, E, N, R, X;  // X = R + 2N (xdbl row length)
  // xdbl's batch and row strides (a row's X numbers are contiguous: a
  // column block of one (batch, L, 4 X) product of all four directions
  // works); the backward's dxdbl: slot, batch and row strides
  int64_t xsb, xsl, dss = 0, dsb = 0, dsl = 0;
  int dir;
  int64_t K, nchunks;
};

// per-block parameters, V lanes each (zero-padded past E)
template <typename T, int V>
struct BlockParams {
  alignas(64) T a2[kMaxState * V];  // A * log2(e)
  alignas(64) T wd[kMaxRank * V];   // Wdt[c, r]
  alignas(64) T bias[V];
  alignas(64) T Dv[V];
  void load(const T* A, const T* Wdt, const T* bias_, const T* D, int64_t c0,
            int vc, const Problem& P) {
    load_block_consts<T, V>(A, D, bias_, c0, vc, P.N, a2, Dv, bias);
    for (int64_t r = 0; r < P.R; ++r)
      for (int c = 0; c < V; ++c)
        wd[r * V + c] = c < vc ? Wdt[(c0 + c) * P.R + r] : T(0);
  }
  // raw delta of the block at one pixel: bias + sum_r xr[r] Wdt[c, r]
  __attribute__((always_inline)) inline void raw_delta(const T* xr,
                                                       int64_t R,
                                                       T* out) const {
    for (int c = 0; c < V; ++c) out[c] = bias[c];
    for (int64_t r = 0; r < R; ++r) {
      const T x = xr[r];
      for (int c = 0; c < V; ++c) out[c] += x * wd[r * V + c];
    }
  }
  // float32: the block's dt at one pixel, softplus(raw_delta), the same
  // operations in registers (raw_delta's sums went through memory: the
  // forward's tile preparation -15 %, Zen 4), on one 512-bit vector or two
  // 256-bit ones (vfn); sig, when not null, receives the softplus
  // derivative
  __attribute__((always_inline)) inline void dt16(const float* xr,
                                                  int64_t R, float* out,
                                                  float* sig) const {
    constexpr int W = VecInfo<vfn>::W;
    constexpr size_t S = sizeof(vfn);
    for (int off = 0; off < 16; off += W) {
      vfn acc, w, g;
      std::memcpy(&acc, bias + off, S);
      for (int64_t r = 0; r < R; ++r) {
        std::memcpy(&w, wd + r * V + off, S);
        acc += xr[r] * w;
      }
      if (sig) {
        const vfn dt = softplus_vec<vfn, true>(acc, &g);
        std::memcpy(out + off, &dt, S);
        std::memcpy(sig + off, &g, S);
      } else {
        const vfn dt = softplus_vec<vfn, false>(acc, nullptr);
        std::memcpy(out + off, &dt, S);
      }
    }
  }
};

template <typename T>
void fwd_range(const T* u, Map su, const T* xdbl, const T* Wdt,
               const T* bias, const T* A, const T* D, T* y, Map sy,
               T* ckpt, const Problem P, int64_t bpi, int64_t ipb,
               bool acc, int64_t begin, int64_t end) {
  // one work range of fwd_impl; a function of its own with every
  // argument by value: inside the parallel_for lambda, reads through the
  // by-reference captures could alias the stores to y and were reloaded
  // at every step (-25% with OpenMP on)
  constexpr int V = Lanes<T>::V;
  const int64_t nblk = (P.E + V - 1) / V;
  // steps per tile and the prefetch distance, in steps: the run-time
  // variant (64 and 2 tiles unless variants.py or SEMILLIE_KERNEL_VARIANT
  // chose others)
  const KernelVariant kv = kernel_variant();
  const int64_t kTile = kv.tile;
  const int64_t kAhead = kv.ahead * kTile;
  const bool pfy = kv.pfy != 0;
  std::vector<BlockParams<T, V>> prm(bpi);
  std::vector<T> hbuf(bpi * P.N * V);
  // the tile's u and dt, block-major: [(j * kTile + i) * V + c]
  std::vector<T> Ut(kTile * bpi * V), Dt(kTile * bpi * V);
  std::vector<int64_t> pos(kTile), posa(kTile);
  const bool spread = std::is_same_v<T, float> && P.N == 16 && kv.spread;
  alignas(64) T du[V], yv[V], raw[V], sg[V];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / ipb;
    const int64_t j0 = (item % ipb) * bpi;
    const int64_t j1 = std::min(nblk, j0 + bpi);
    const int64_t nj = j1 - j0;
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t c0 = j * V;
      prm[j - j0].load(A, Wdt, bias, D, c0,
                       static_cast<int>(std::min<int64_t>(V, P.E - c0)), P);
    }
    std::fill(hbuf.begin(), hbuf.end(), T(0));
    const T* ub = u + b * su.sb;
    const T* xb = xdbl + b * P.xsb;
    T* yb = y + b * sy.sb;
    for (int64_t t0 = 0; t0 < P.L; t0 += kTile) {
      const int64_t m = std::min(kTile, P.L - t0);
      // software prefetch of a later tile's pixels: the column-major
      // directions jump W pixels per step, which no hardware prefetcher
      // follows
      // (with the variant's spread, at d_state 16 in float32: issued a
      // pixel a step inside each block's scan, in rows below; all at once
      // they outran the miss buffers. With lanes 8 rows(i) runs once per
      // half block, so the lines go out twice; the AVX2 build, lanes 8,
      // was level with the old placement: 0.98x / 1.01x)
      const int64_t ma =
          kAhead > 0 ? std::max<int64_t>(
                           0, std::min(m, P.L - t0 - kAhead))
                     : 0;  // pixels of the later tile
      for (int64_t i = 0; i < ma; ++i)
        posa[i] = position(t0 + kAhead + i, P.L, P.H, P.W, P.dir);
      for (int64_t i = 0; !spread && i < ma; ++i) {
        const int64_t p = posa[i];
        const T* xr = xb + p * P.xsl;
        for (int64_t o = 0; o < P.X; o += 64 / sizeof(T))
          __builtin_prefetch(xr + o, 0);
        for (int64_t j = 0; j < nj; ++j) {
          __builtin_prefetch(ub + p * su.sl + (j0 + j) * V, 0);
          if (pfy) __builtin_prefetch(yb + p * sy.sl + (j0 + j) * V, 1);
        }
      }
      // the reversed directions (2, 3) walk the pixels downwards in
      // memory: there each pixel's channel blocks are read from the last,
      // so that every stream of u descends and the hardware prefetchers
      // follow it (read upwards within the pixel they fetched the wrong
      // way: these directions' tile preparation took 1.7-1.9x that of
      // directions 0 and 1, Zen 4)
      const bool down = P.dir >= 2;
      for (int64_t i = 0; i < m; ++i) {
        const int64_t p = position(t0 + i, P.L, P.H, P.W, P.dir);
        pos[i] = p;
        const T* xr = xb + p * P.xsl;
        // the rest of the xdbl row (B and C; dt reads its first line)
        for (int64_t o = 64 / sizeof(T); o < P.X; o += 64 / sizeof(T))
          __builtin_prefetch(xr + o, 0, 3);
        for (int64_t jj = 0; jj < nj; ++jj) {
          const int64_t j = down ? nj - 1 - jj : jj;
          const int64_t c0 = (j0 + j) * V;
          const int vc = static_cast<int>(std::min<int64_t>(V, P.E - c0));
          const T* up = ub + p * su.sl + c0;
          T* ut = &Ut[(j * kTile + i) * V];
          // the d_state-16 path reads a whole block's u in place, fetched
          // into L1 here with the y row it adds to (the copy and the y
          // loads that missed took 6-8 % of the forward each, Zen 5,
          // timing-only builds); the others take the tile's copy
          if (vc < V) {
            for (int c = 0; c < V; ++c) ut[c] = c < vc ? up[c] : T(0);
          } else if (!std::is_same_v<T, float> || P.N != 16) {
            for (int c = 0; c < V; ++c) ut[c] = up[c];
          } else {
            __builtin_prefetch(up, 0, 3);
            if (acc) __builtin_prefetch(yb + p * sy.sl + c0, 1, 3);
          }
          if constexpr (std::is_same_v<T, float>) {
            prm[j].dt16(xr, P.R, &Dt[(j * kTile + i) * V], nullptr);
          } else {
            prm[j].raw_delta(xr, P.R, raw);
            softplus_sig<T, V, false>(raw, &Dt[(j * kTile + i) * V], sg);
          }
        }
      }
      for (int64_t j = 0; j < nj; ++j) {
        const BlockParams<T, V>& q = prm[j];
        const int64_t c0 = (j0 + j) * V;
        const int vc = static_cast<int>(std::min<int64_t>(V, P.E - c0));
        T* h = &hbuf[j * P.N * V];
        const T* Uj = &Ut[j * kTile * V];
        const T* Dj = &Dt[j * kTile * V];
        if constexpr (std::is_same_v<T, float>) {
          if (P.N == 16) {  // the default d_state: states in registers
            T* ck = ckpt ? ckpt + (b * P.nchunks * 16) * P.E + c0 : nullptr;
            const T* ua = ub + c0;
            T* ya = yb + c0;
            const auto rows = [&](int64_t i) {
              if (i < ma) {  // the later tile's pixel i: this block's lines
                const int64_t p = posa[i];
                __builtin_prefetch(ua + p * su.sl, 0);
                if (pfy) __builtin_prefetch(ya + p * sy.sl, 1);
                if (j == 0) {  // and the xdbl row, with the first block
                  const T* xr = xb + p * P.xsl;
                  for (int64_t o = 0; o < P.X; o += 64 / sizeof(T))
                    __builtin_prefetch(xr + o, 0);
                }
              }
              const T* Bp = xb + pos[i] * P.xsl + P.R;
              return Rows16{Bp, Bp + 16};
            };
            const auto emit = [&](int64_t i, auto yv, int off) {
              T* yp = yb + pos[i] * sy.sl + c0 + off;
              if (acc) {
                add_lanes_v(yp, yv, vc - off);
              } else {
                store_lanes_v(yp, yv, vc - off);
              }
            };
            if (vc == V) {  // u in place
              const T* uc = ub + c0;
              scan16_run_ckpt(
                  kv, [&](int64_t i) { return uc + pos[i] * su.sl; }, Dj,
                  q.a2, q.Dv, h, m, vc, ck, P.E, P.K, t0, rows, emit);
            } else {
              scan16_run_ckpt(kv, Uj, Dj, q.a2, q.Dv, h, m, vc, ck, P.E,
                              P.K, t0, rows, emit);
            }
            continue;
          }
        }
        for (int64_t i = 0; i < m; ++i) {
          const int64_t t = t0 + i;
          const int64_t p = pos[i];
          const T* Bp = xb + p * P.xsl + P.R;
          if (ckpt && t % P.K == 0)  // the state entering chunk t / K
            store_state<T, V>(
                ckpt + ((b * P.nchunks + t / P.K) * P.N) * P.E + c0, P.E, h,
                P.N, vc);
          forward_step<T, V>(P.N, Bp, Bp + P.N, Dj + i * V, Uj + i * V, q.a2,
                             q.Dv, h, du, yv);
          T* yp = yb + p * sy.sl + c0;
          for (int c = 0; c < vc; ++c) yp[c] = acc ? yp[c] + yv[c] : yv[c];
        }
      }
    }
  }
}

template <typename T>
void fwd_impl(const T* u, Map su, const T* xdbl, const T* Wdt, const T* bias,
              const T* A, const T* D, T* y, Map sy, T* ckpt,
              const Problem& P, bool acc) {
  constexpr int V = Lanes<T>::V;
  const int64_t nblk = (P.E + V - 1) / V;
  const int64_t per_b =
      std::max<int64_t>(1, (at::get_num_threads() + P.nb - 1) / P.nb);
  const int64_t bpi = (nblk + std::min(per_b, nblk) - 1) / std::min(per_b, nblk);
  const int64_t ipb = (nblk + bpi - 1) / bpi;  // items per batch element
  // steps are taken in tiles of kTile: the tile's dt (dt_proj + softplus)
  // and u are computed first for all blocks of the item, so that these
  // independent computations overlap instead of sitting on the recurrence's
  // critical path
  at::parallel_for(0, P.nb * ipb, 1, [&](int64_t begin, int64_t end) {
    fwd_range<T>(u, su, xdbl, Wdt, bias, A, D, y, sy, ckpt, P, bpi, ipb,
                 acc, begin, end);
  });
}

template <typename T>
void bwd_range(const T* u, Map su, const T* xdbl, const T* Wdt,
               const T* bias, const T* A, const T* D, const T* dy, Map sdy,
               const T* ckpt, T* du, Map sdu, T* dxp, int64_t S, double* dA,
               double* dD, double* dW, double* dbias, const Problem P,
               int64_t begin, int64_t end) {
  // one work range of bwd_impl, all arguments by value (see fwd_range)
  constexpr int V = Lanes<T>::V;
  const int64_t nblk = (P.E + V - 1) / V;
  const int64_t K = P.K, N = P.N, R = P.R, X = P.X;
  // a chunk's blocks are taken in groups of up to kGroup: gathered pixel
  // by pixel, then each block's recurrences, then the group's du written
  // pixel by pixel
  constexpr int64_t kGroup = 4;
  constexpr int64_t kOutAhead = 8;  // prefetch distance of the outputs
  constexpr int64_t kGatherAhead = 4;  // and of the gather (see below)
  std::vector<T> Hbuf((K + 1) * N * V), Ebuf(K * N * V);
  std::vector<T> Dl(kGroup * K * V), Sl(kGroup * K * V), Ul(kGroup * K * V),
      Gl(kGroup * K * V), DUl(kGroup * K * V);
  // the chunk's xdbl rows and this slot's dxdbl rows, contiguous
  std::vector<T> XL(K * X), DXL(K * X);
  // the chunk's positions and, when prefetching, those of the chunk before
  std::vector<int64_t> pos(K), posn(K);
  const KernelVariant kv = kernel_variant();
  const bool steps8 = std::is_same_v<T, float> && steps16_v8(kv, N);
  // what a channel block carries from chunk to chunk: its constants, the
  // adjoints lam and the float64 totals. The blocks of an item are walked
  // inside each chunk (not each block through all chunks): the chunk's
  // rows of xdbl and of dxp, which all its blocks read and add to, then
  // stay in cache from one block to the next instead of being streamed
  // from memory once per block
  struct BlockState {
    BlockParams<T, V> q;
    alignas(64) T an[kMaxState * V], lam[kMaxState * V];
    alignas(64) double dAa[kMaxState * V], dWa[kMaxRank * V], dDa[V],
        dba[V];
  };
  std::vector<BlockState> states((nblk + S - 1) / S);
  alignas(64) T dAc[kMaxState * V];
  alignas(64) T dut[V], ddtv[V], dtu[V], raw[V];
  alignas(64) T sBn[kMaxState], sCn[kMaxState];
  // per-chunk sums in T, added to the float64 totals once a chunk
  alignas(64) T dWc[kMaxRank * V], dDc[V], dbc[V];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t s = item / P.nb;
    const int64_t b = item % P.nb;
    T* dxs = dxp + s * P.dss + b * P.dsb;
    const T* xb = xdbl + b * P.xsb;
    const int64_t nbi = (nblk - s + S - 1) / S;  // the item's blocks
    // first channel and width of the item's block jb: slot s takes every
    // S-th block
    const auto cols = [&](int64_t jb) {
      const int64_t c0 = (s + jb * S) * V;
      return std::pair<int64_t, int>(
          c0, static_cast<int>(std::min<int64_t>(V, P.E - c0)));
    };
    const auto block_of = [&](int64_t jb) {
      BlockState& st = states[jb];
      return std::tie(st.q, st.an, st.lam, st.dAa, st.dWa, st.dDa, st.dba);
    };
    for (int64_t jb = 0; jb < nbi; ++jb) {  // each block's state, zeroed
      const auto [c0, vc] = cols(jb);
      auto [q, an, lam, dAa, dWa, dDa, dba] = block_of(jb);
      q.load(A, Wdt, bias, D, c0, vc, P);
      for (int64_t n = 0; n < N; ++n)
        for (int c = 0; c < V; ++c) {
          an[n * V + c] = c < vc ? A[(c0 + c) * N + n] : T(0);
          lam[n * V + c] = T(0);
          dAa[n * V + c] = 0.0;
          dAc[n * V + c] = T(0);
        }
      for (int64_t j = 0; j < R * V; ++j) {
        dWa[j] = 0.0;
        dWc[j] = T(0);
      }
      for (int c = 0; c < V; ++c) {
        dDa[c] = 0.0;
        dba[c] = 0.0;
        dDc[c] = T(0);
        dbc[c] = T(0);
      }
    }
    for (int64_t k = P.nchunks - 1; k >= 0; --k) {
      const int64_t t0 = k * K;
      const int64_t m = std::min(K, P.L - t0);
      // With the variant's prefetch on (ahead > 0), the pixels of the
      // chunk before (the next one walked) are prefetched step by step:
      // the column-major directions jump W pixels per step, which the
      // hardware prefetchers do not follow.
      const bool pf = kv.ahead > 0 && k > 0;
      const bool pf_out = kv.ahead > 0;
      // d_state 16 in float32 on the register path: the chunk before's
      // lines of each block are prefetched during the block's
      // recomputation, one pixel a step (issued in the gather, all at
      // once, they outran the miss buffers)
      bool spread = false;
#if defined(__AVX512F__)
      spread = std::is_same_v<T, float> && N == 16 && kv.bwd16 && kv.spread;
#endif
      // With spread, the column-major directions (a step W pixels on)
      // also prefetch the gather's own lines kGatherAhead pixels ahead:
      // the chunk-ahead lines of a column share cache sets and some are
      // gone by the gather; the hardware's stride prefetcher, keyed by the
      // load's address, had covered them in one build and not in another
      // of the same source (column-major gather copies 3.5 % against 15 %
      // of the backward's samples: 0.94x / 1.06x)
      const bool cols_step = (P.dir & 1) != 0;
      // the chunk's positions and xdbl rows, read by all its blocks
      for (int64_t i = 0; i < m; ++i) {
        const int64_t p = position(t0 + i, P.L, P.H, P.W, P.dir);
        pos[i] = p;
        if (pf) {
          const int64_t pn = position(t0 - K + i, P.L, P.H, P.W, P.dir);
          posn[i] = pn;
          const T* xr = xb + pn * P.xsl;
          T* dr = dxs + pn * P.dsl;
          for (int64_t o = 0; o < X; o += 64 / sizeof(T)) {
            __builtin_prefetch(xr + o, 0);
            __builtin_prefetch(dr + o, 1);
          }
          __builtin_prefetch(dr + X - 1, 1);
        }
        std::memcpy(&XL[i * X], xb + p * P.xsl, X * sizeof(T));
      }
      for (int64_t g0 = 0; g0 < nbi; g0 += kGroup) {
        const int64_t ng = std::min<int64_t>(kGroup, nbi - g0);
        // gather the group's u, dy and its dt and softplus derivative,
        // pixel by pixel (a pixel's lines of all blocks next to each
        // other)
        for (int64_t i = 0; i < m; ++i) {
          const int64_t p = pos[i];
          const int64_t pn = pf ? posn[i] : 0;
          for (int64_t j = 0; j < ng; ++j) {
            const auto [c0, vc] = cols(g0 + j);
            const T* up = u + b * su.sb + c0;
            const T* gp = dy + b * sdy.sb + c0;
            if (spread && cols_step && i + kGatherAhead < m) {
              const int64_t pa = pos[i + kGatherAhead];
              __builtin_prefetch(up + pa * su.sl, 0);
              __builtin_prefetch(gp + pa * sdy.sl, 0);
            }
            if (pf && !spread) {
              __builtin_prefetch(up + pn * su.sl, 0);
              __builtin_prefetch(gp + pn * sdy.sl, 0);
              __builtin_prefetch(du + b * sdu.sb + c0 + pn * sdu.sl, 1);
            }
            up += p * su.sl;
            gp += p * sdy.sl;
            const int64_t o = (j * K + i) * V;
            if (vc == V) {
              std::memcpy(&Ul[o], up, V * sizeof(T));
              std::memcpy(&Gl[o], gp, V * sizeof(T));
            } else {
              for (int c = 0; c < V; ++c) {
                Ul[o + c] = c < vc ? up[c] : T(0);
                Gl[o + c] = c < vc ? gp[c] : T(0);
              }
            }
            const BlockParams<T, V>& q = states[g0 + j].q;
            if constexpr (std::is_same_v<T, float>) {
              q.dt16(&XL[i * X], R, &Dl[o], &Sl[o]);  // as the forward's
            } else {
              q.raw_delta(&XL[i * X], R, raw);
              softplus_sig<T, V>(raw, &Dl[o], &Sl[o]);
            }
          }
        }
        for (int64_t j = 0; j < ng; ++j) {
          const int64_t jb = g0 + j;
          const bool first = jb == 0;
          const auto [c0, vc] = cols(jb);
          auto [q, an, lam, dAa, dWa, dDa, dba] = block_of(jb);
          const T* Dj = &Dl[j * K * V];
          const T* Sj = &Sl[j * K * V];
          const T* Uj = &Ul[j * K * V];
          const T* Gj = &Gl[j * K * V];
          T* DUj = &DUl[j * K * V];
          // the state entering the chunk; the next chunk's prefetched
          load_state<T, V>(ckpt + ((b * P.nchunks + k) * N) * P.E + c0, P.E,
                           Hbuf.data(), N, vc, pf);
          // the chunk's sums into the float64 totals
          const auto flush = [&]() {
            for (int64_t jj = 0; jj < N * V; ++jj) {
              dAa[jj] += static_cast<double>(dAc[jj]);
              dAc[jj] = T(0);
            }
            for (int64_t jj = 0; jj < R * V; ++jj) {
              dWa[jj] += static_cast<double>(dWc[jj]);
              dWc[jj] = T(0);
            }
            for (int c = 0; c < V; ++c) {
              dDa[c] += static_cast<double>(dDc[c]);
              dba[c] += static_cast<double>(dbc[c]);
              dDc[c] = T(0);
              dbc[c] = T(0);
            }
          };
          // after a step's adjoint sums (ddtv, dut, sBn, sCn): dB, dC of
          // the pixel, the way back through softplus and dt_proj into the
          // chunk's dxdbl row, du into the block's chunk buffer
          const auto tail = [&](int64_t i) {
            const T* xr = &XL[i * X];
            T* dxo = &DXL[i * X];
            // the channel sums into this slot's dB, dC of the pixel
            if (first) {
              for (int64_t n = 0; n < N; ++n) {
                dxo[R + n] = sBn[n];
                dxo[R + N + n] = sCn[n];
              }
            } else {
              for (int64_t n = 0; n < N; ++n) {
                dxo[R + n] += sBn[n];
                dxo[R + N + n] += sCn[n];
              }
            }
            // through softplus and dt_proj: d raw = d dt * sigmoid(raw)
            const T* sg = &Sj[i * V];
            for (int c = 0; c < V; ++c) {
              ddtv[c] *= sg[c];
              dbc[c] += ddtv[c];
            }
            for (int64_t r = 0; r < R; ++r) {
              const T xv = xr[r];
              const T* w = q.wd + r * V;
              T* dw = dWc + r * V;
              T sR = T(0);
#pragma omp simd reduction(+ : sR)
              for (int c = 0; c < V; ++c) {
                dw[c] += ddtv[c] * xv;
                sR += ddtv[c] * w[c];
              }
              dxo[r] = first ? sR : dxo[r] + sR;
            }
            std::memcpy(&DUj[i * V], dut, V * sizeof(T));
          };
          // the tail on 256-bit vectors with the register steps (steps8;
          // float32, d_state 16): dB, dC of the pixel added as four
          // vectors instead of 32 scalars, and the R sums for d xdbl[r]
          // by a shuffle-and-add tree eight rows at a time (RowSums8)
          // instead of a horizontal reduction each
          const auto tail8 = [&](int64_t i) {
            if constexpr (std::is_same_v<T, float>) {
              const float* xr = &XL[i * X];
              float* dxo = &DXL[i * X];
              for (int o = 0; o < 32; o += 8) {
                const vf8 v = load8(o < 16 ? sBn + o : sCn + (o - 16));
                store8(dxo + R + o, first ? v : load8(dxo + R + o) + v);
              }
              vf8 g[2];
              for (int h = 0; h < 2; ++h) {
                g[h] = load8(ddtv + 8 * h) * load8(&Sj[i * V + 8 * h]);
                store8(dbc + 8 * h, load8(dbc + 8 * h) + g[h]);
              }
              // column r: dW's sums updated; returns g W_dt[:, r] on the
              // block's channels, two halves added
              const auto dw_col = [&](int64_t r) {
                float* dw = dWc + r * V;
                const float* w = q.wd + r * V;
                const float xv = xr[r];
                store8(dw, load8(dw) + g[0] * xv);
                store8(dw + 8, load8(dw + 8) + g[1] * xv);
                return g[0] * load8(w) + g[1] * load8(w + 8);
              };
              int64_t r = 0;
              for (; r + 8 <= R; r += 8) {
                RowSums8 t;
#pragma GCC unroll 8
                for (int kk = 0; kk < 8; ++kk) t.push(kk, dw_col(r + kk));
                store8(dxo + r, first ? t.out[0] : load8(dxo + r) + t.out[0]);
              }
              for (; r < R; ++r) {
                const vf8 p = dw_col(r);
                float sR = 0.0f;
                for (int c = 0; c < 8; ++c) sR += p[c];
                dxo[r] = first ? sR : dxo[r] + sR;
              }
              std::memcpy(&DUj[i * V], dut, V * sizeof(T));
            } else {
              tail(i);
            }
          };
#if defined(__AVX512F__)
          if constexpr (std::is_same_v<T, float>) {
            // tail for d_state 16 in float32 on whole vectors: dB, dC of
            // the pixel added as two vectors (the generic tail goes through
            // 32 scalars), and the R sums over the block's channels for d
            // xdbl[r] by the row-sum tree four rows at a time (tail_rows4)
            // instead of a horizontal reduction each
            const auto tail16 = [&](int64_t i, __m512 sB, __m512 sC,
                                    __m512 dut_v) {
              const float* xr = &XL[i * X];
              float* dxo = &DXL[i * X];
              if (first) {
                _mm512_storeu_ps(dxo + R, sB);
                _mm512_storeu_ps(dxo + R + 16, sC);
              } else {
                _mm512_storeu_ps(dxo + R,
                                 _mm512_add_ps(_mm512_loadu_ps(dxo + R), sB));
                _mm512_storeu_ps(dxo + R + 16,
                                 _mm512_add_ps(_mm512_loadu_ps(dxo + R + 16),
                                               sC));
              }
              const __m512 g = _mm512_mul_ps(_mm512_loadu_ps(ddtv),
                                             _mm512_loadu_ps(&Sj[i * V]));
              _mm512_storeu_ps(dbc, _mm512_add_ps(_mm512_loadu_ps(dbc), g));
              int64_t r = 0;
              for (; r + 4 <= R; r += 4) {
                __m512 pr[4];
                for (int kk = 0; kk < 4; ++kk) {
                  float* dw = dWc + (r + kk) * V;
                  _mm512_storeu_ps(dw, _mm512_fmadd_ps(
                                           g, _mm512_set1_ps(xr[r + kk]),
                                           _mm512_loadu_ps(dw)));
                  pr[kk] =
                      _mm512_mul_ps(g, _mm512_loadu_ps(q.wd + (r + kk) * V));
                }
                const __m128 s4 = tail_rows4(pr[0], pr[1], pr[2], pr[3]);
                _mm_storeu_ps(dxo + r, first ? s4
                                             : _mm_add_ps(
                                                   _mm_loadu_ps(dxo + r), s4));
              }
              for (; r < R; ++r) {
                float* dw = dWc + r * V;
                _mm512_storeu_ps(dw, _mm512_fmadd_ps(g, _mm512_set1_ps(xr[r]),
                                                     _mm512_loadu_ps(dw)));
                const float sR = _mm512_reduce_add_ps(
                    _mm512_mul_ps(g, _mm512_loadu_ps(q.wd + r * V)));
                dxo[r] = first ? sR : dxo[r] + sR;
              }
              _mm512_storeu_ps(&DUj[i * V], dut_v);
            };
            if (N == 16 && kv.bwd16 && kv.lanes == 16) {  // adjoints in registers
              const auto brow = [&](int64_t i) { return &XL[i * X + R]; };
              const T* upf = u + b * su.sb + c0;
              const T* gpf = dy + b * sdy.sb + c0;
              T* dpf = du + b * sdu.sb + c0;
              recompute16_run(kv, m, Dj, Uj, q.a2, Hbuf.data(), Ebuf.data(),
                              [&](int64_t i) {
                                if (pf && spread) {
                                  const int64_t pn = posn[i];
                                  __builtin_prefetch(upf + pn * su.sl, 0);
                                  __builtin_prefetch(gpf + pn * sdy.sl, 0);
                                  __builtin_prefetch(dpf + pn * sdu.sl, 1);
                                }
                                return brow(i);
                              });
              adjoint16(
                  m, Dj, Uj, Gj, an, Hbuf.data(), Ebuf.data(), lam, dAc,
                  [&](int64_t i) {
                    const T* Bp = brow(i);
                    return Rows16{Bp, Bp + 16};
                  },
                  [&](int64_t i, vf16 ddt, vf16 lbd, __m512 sB, __m512 sC) {
                    vf16 dv, gv, uv;
                    std::memcpy(&dv, q.Dv, 64);
                    std::memcpy(&gv, &Gj[i * V], 64);
                    std::memcpy(&uv, &Uj[i * V], 64);
                    vf16 dd;
                    std::memcpy(&dd, dDc, 64);
                    dd += gv * uv;
                    std::memcpy(dDc, &dd, 64);
                    std::memcpy(ddtv, &ddt, 64);
                    tail16(i, sB, sC, dv * gv + lbd);
                  });
              flush();
              continue;
            }
          }
#endif
          // the chunk's generic backward, one copy per kind of step (s8:
          // the 256-bit register steps, steps16_v8)
          const auto generic_chunk = [&](auto s8) {
            // recompute states H[i + 1] and decays E[i] of the chunk
            for (int64_t i = 0; i < m; ++i)
              recompute_step_sel<T, V>(s8, kv.exp, N, &XL[i * X + R],
                                       &Dj[i * V], &Uj[i * V], q.a2,
                                       &Hbuf[i * N * V],
                                       &Hbuf[(i + 1) * N * V],
                                       &Ebuf[i * N * V], dtu);
            // adjoint recurrence; lam[n] enters step t holding
            // exp(dt[t+1] A[n]) dL/dh[t+1, n]
            for (int64_t i = m - 1; i >= 0; --i) {
              const T* Bp = &XL[i * X + R];
              const T* Cp = Bp + N;
              const T* d = &Dj[i * V];
              const T* uu = &Uj[i * V];
              const T* go = &Gj[i * V];
              for (int c = 0; c < V; ++c) {
                dtu[c] = d[c] * uu[c];
                dut[c] = q.Dv[c] * go[c];
                dDc[c] += go[c] * uu[c];
                ddtv[c] = T(0);
              }
              adjoint_step_sel<T, V>(s8, N, Bp, Cp, &Hbuf[i * N * V],
                                     &Hbuf[(i + 1) * N * V],
                                     &Ebuf[i * N * V], an, lam, dAc, d, uu,
                                     go, dtu, ddtv, dut, sBn, sCn, false);
              if constexpr (decltype(s8)::value) {
                tail8(i);
              } else {
                tail(i);
              }
            }
          };
          if (steps8) {
            generic_chunk(std::true_type{});
          } else {
            generic_chunk(std::false_type{});
          }
          flush();
        }
        // the group's du, pixel by pixel, the rows 8 steps on prefetched
        for (int64_t i = m - 1; i >= 0; --i) {
          const int64_t p = pos[i];
          const int64_t pn = i >= kOutAhead ? pos[i - kOutAhead] : -1;
          for (int64_t j = 0; j < ng; ++j) {
            const auto [c0, vc] = cols(g0 + j);
            T* dub = du + b * sdu.sb + c0;
            if (pf_out && pn >= 0) __builtin_prefetch(dub + pn * sdu.sl, 1);
            add_block<T, V>(dub + p * sdu.sl, &DUl[(j * K + i) * V], vc);
          }
        }
      }
      // the chunk's rows of this slot's dxdbl
      for (int64_t i = m - 1; i >= 0; --i) {
        T* dr = dxs + pos[i] * P.dsl;
        if (pf_out && i >= kOutAhead) {
          T* dn = dxs + pos[i - kOutAhead] * P.dsl;
          for (int64_t o = 0; o < X; o += 64 / sizeof(T))
            __builtin_prefetch(dn + o, 1);
          __builtin_prefetch(dn + X - 1, 1);
        }
        std::memcpy(dr, &DXL[i * X], X * sizeof(T));
      }
    }
    for (int64_t jb = 0; jb < nbi; ++jb) {
      const auto [c0, vc] = cols(jb);
      auto [q, an, lam, dAa, dWa, dDa, dba] = block_of(jb);
      for (int c = 0; c < vc; ++c) {
        const int64_t e = b * P.E + c0 + c;
        for (int64_t n = 0; n < N; ++n) dA[e * N + n] = dAa[n * V + c];
        for (int64_t r = 0; r < R; ++r) dW[e * R + r] = dWa[r * V + c];
        dD[e] = dDa[c];
        dbias[e] = dba[c];
      }
    }
  }
}

template <typename T>
void bwd_impl(const T* u, Map su, const T* xdbl, const T* Wdt, const T* bias,
              const T* A, const T* D, const T* dy, Map sdy, const T* ckpt,
              T* du, Map sdu, T* dxp, int64_t S, double* dA, double* dD,
              double* dW, double* dbias, const Problem& P) {
  // du += ; dxp[s] (S, batch, L, X) written at every position;
  // dA (nb, E, N), dD (nb, E), dW (nb, E, R), dbias (nb, E) written.
  at::parallel_for(0, S * P.nb, 1, [&](int64_t begin, int64_t end) {
    bwd_range<T>(u, su, xdbl, Wdt, bias, A, D, dy, sdy, ckpt, du, sdu, dxp,
                 S, dA, dD, dW, dbias, P, begin, end);
  });
}

Map map_of(const at::Tensor& x, const char* name, int64_t nb, int64_t L,
           int64_t width) {
  TORCH_CHECK(x.dim() == 3, name, " must be (batch, L, channels), got ",
              x.sizes());
  TORCH_CHECK(x.size(0) == nb && x.size(1) == L && x.size(2) == width, name,
              " must be (", nb, ", ", L, ", ", width, "), got ", x.sizes());
  TORCH_CHECK(x.device().is_cpu() && x.layout() == at::kStrided, name,
              " must be a CPU tensor");
  TORCH_CHECK(x.stride(2) == 1, name, " must have channel stride 1");
  return Map{x.stride(0), x.stride(1)};
}

void check_param(const at::Tensor& x, const at::Tensor& u, const char* name,
                 at::IntArrayRef shape) {
  TORCH_CHECK(x.device().is_cpu() && x.layout() == at::kStrided, name,
              " must be a CPU tensor");
  TORCH_CHECK(x.sizes() == shape, name, " must have shape ", shape, ", got ",
              x.sizes());
  TORCH_CHECK(x.is_contiguous(), name, " must be a contiguous CPU tensor");
  TORCH_CHECK(x.scalar_type() == u.scalar_type(), name,
              " must have the dtype of u");
}

// an output written (or accumulated into) while the inputs are read: no
// element twice (an expanded tensor) and no memory shared with an input
void check_output(const at::Tensor& out,
                  std::initializer_list<const at::Tensor*> inputs) {
  at::assert_no_internal_overlap(out);
  for (const at::Tensor* in : inputs)
    if (in->defined() && in->numel() > 0) at::assert_no_overlap(out, *in);
}

Problem problem(const at::Tensor& u, const at::Tensor& xdbl,
                const at::Tensor& Wdt, const at::Tensor& bias,
                const at::Tensor& A, const c10::optional<at::Tensor>& D,
                int64_t H, int64_t W, int64_t dir, int64_t K) {
  TORCH_CHECK(u.device().is_cpu() && u.layout() == at::kStrided,
              "u must be a CPU tensor");
  TORCH_CHECK(u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble,
              "u must be float32 or float64");
  TORCH_CHECK(H >= 1 && W >= 1, "H and W must be positive");
  TORCH_CHECK(dir >= 0 && dir < 4, "dir must be 0..3");
  TORCH_CHECK(K >= 1, "chunk size must be positive");
  TORCH_CHECK(u.dim() == 3, "u must be (batch, L, E)");
  Problem P;
  P.nb = u.size(0);
  P.H = H;
  P.W = W;
  P.L = H * W;
  P.E = u.size(2);
  TORCH_CHECK(A.dim() == 2 && Wdt.dim() == 2, "A and Wdt must be 2-d");
  P.N = A.size(1);
  P.R = Wdt.size(1);
  P.X = P.R + 2 * P.N;
  P.dir = static_cast<int>(dir);
  P.K = K;
  P.nchunks = (P.L + K - 1) / K;
  TORCH_CHECK(P.N >= 1 && P.N <= kMaxState, "N must be in [1, ", kMaxState,
              "]");
  TORCH_CHECK(P.R >= 1 && P.R <= kMaxRank, "dt_rank must be in [1, ",
              kMaxRank, "]");
  map_of(u, "u", P.nb, P.L, P.E);
  const Map sx = map_of(xdbl, "xdbl", P.nb, P.L, P.X);
  TORCH_CHECK(xdbl.scalar_type() == u.scalar_type(),
              "xdbl must have the dtype of u");
  P.xsb = sx.sb;
  P.xsl = sx.sl;
  check_param(Wdt, u, "Wdt", {P.E, P.R});
  check_param(bias, u, "bias", {P.E});
  check_param(A, u, "A", {P.E, P.N});
  if (D) check_param(*D, u, "D", {P.E});
  return P;
}

// y += scan of direction dir (accumulate), or y = it (not: the first
// direction writes y, which then needs no zeroing). ckpt: (batch, n_chunks,
// N, E), or an empty tensor (no checkpoints, inference).
void ss2d_scan_fwd(const at::Tensor& u, const at::Tensor& xdbl,
                   const at::Tensor& Wdt, const at::Tensor& bias,
                   const at::Tensor& A, const c10::optional<at::Tensor>& D,
                   at::Tensor& y, at::Tensor& ckpt, int64_t H, int64_t W,
                   int64_t dir, int64_t K, bool accumulate) {
  const Problem P = problem(u, xdbl, Wdt, bias, A, D, H, W, dir, K);
  const Map su = map_of(u, "u", P.nb, P.L, P.E);
  const Map sy = map_of(y, "y", P.nb, P.L, P.E);
  TORCH_CHECK(y.scalar_type() == u.scalar_type(), "y must have u's dtype");
  TORCH_CHECK(ckpt.device().is_cpu(), "ckpt must be a CPU tensor");
  const bool save = ckpt.numel() > 0;
  if (save) check_param(ckpt, u, "ckpt", {P.nb, P.nchunks, P.N, P.E});
  const at::Tensor none;
  check_output(y, {&u, &xdbl, &Wdt, &bias, &A, D ? &*D : &none, &ckpt});
  if (save) check_output(ckpt, {&u, &xdbl, &Wdt, &bias, &A, D ? &*D : &none});
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ss2d_scan_fwd", [&] {
    fwd_impl<scalar_t>(u.data_ptr<scalar_t>(), su, xdbl.data_ptr<scalar_t>(),
                       Wdt.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
                       A.data_ptr<scalar_t>(),
                       D ? D->data_ptr<scalar_t>() : nullptr,
                       y.data_ptr<scalar_t>(), sy,
                       save ? ckpt.data_ptr<scalar_t>() : nullptr, P,
                       accumulate);
  });
}

// du += d/du; dxdbl (slots, batch, L, R + 2N; any strides but the last)
// written; returns
// (dWdt (E, R), dbias (E,), dA (E, N), dD (E,)) as float64 sums over the
// batch.
std::vector<at::Tensor> ss2d_scan_bwd(
    const at::Tensor& u, const at::Tensor& xdbl, const at::Tensor& Wdt,
    const at::Tensor& bias, const at::Tensor& A,
    const c10::optional<at::Tensor>& D, const at::Tensor& dy,
    const at::Tensor& ckpt, at::Tensor& du, at::Tensor& dxdbl, int64_t H,
    int64_t W, int64_t dir, int64_t K) {
  Problem P = problem(u, xdbl, Wdt, bias, A, D, H, W, dir, K);
  const Map su = map_of(u, "u", P.nb, P.L, P.E);
  const Map sdy = map_of(dy, "dy", P.nb, P.L, P.E);
  const Map sdu = map_of(du, "du", P.nb, P.L, P.E);
  TORCH_CHECK(dy.scalar_type() == u.scalar_type() &&
                  du.scalar_type() == u.scalar_type(),
              "dy and du must have u's dtype");
  check_param(ckpt, u, "ckpt", {P.nb, P.nchunks, P.N, P.E});
  TORCH_CHECK(dxdbl.dim() == 4, "dxdbl must be (slots, batch, L, R + 2N)");
  const int64_t S = dxdbl.size(0);
  TORCH_CHECK(dxdbl.device().is_cpu() && dxdbl.layout() == at::kStrided,
              "dxdbl must be a CPU tensor");
  const std::vector<int64_t> dshape{S, P.nb, P.L, P.X};
  TORCH_CHECK(dxdbl.sizes() == at::IntArrayRef(dshape),
              "dxdbl must have shape ", at::IntArrayRef(dshape), ", got ",
              dxdbl.sizes());
  TORCH_CHECK(dxdbl.stride(3) == 1, "dxdbl must have element stride 1");
  TORCH_CHECK(dxdbl.scalar_type() == u.scalar_type(),
              "dxdbl must have the dtype of u");
  P.dss = dxdbl.stride(0);
  P.dsb = dxdbl.stride(1);
  P.dsl = dxdbl.stride(2);
  const int64_t V = u.scalar_type() == at::kFloat ? 16 : 8;
  TORCH_CHECK(S >= 1 && S <= (P.E + V - 1) / V,
              "slots must be in [1, channel blocks]");
  const at::Tensor none;
  check_output(du, {&u, &xdbl, &Wdt, &bias, &A, D ? &*D : &none, &dy, &ckpt,
                    &dxdbl});
  check_output(dxdbl,
               {&u, &xdbl, &Wdt, &bias, &A, D ? &*D : &none, &dy, &ckpt});
  auto opt = u.options().dtype(at::kDouble);
  auto dA = at::empty({P.nb, P.E, P.N}, opt);
  auto dD = at::empty({P.nb, P.E}, opt);
  auto dW = at::empty({P.nb, P.E, P.R}, opt);
  auto db = at::empty({P.nb, P.E}, opt);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ss2d_scan_bwd", [&] {
    bwd_impl<scalar_t>(
        u.data_ptr<scalar_t>(), su, xdbl.data_ptr<scalar_t>(),
        Wdt.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
        A.data_ptr<scalar_t>(), D ? D->data_ptr<scalar_t>() : nullptr,
        dy.data_ptr<scalar_t>(), sdy, ckpt.data_ptr<scalar_t>(),
        du.data_ptr<scalar_t>(), sdu, dxdbl.data_ptr<scalar_t>(), S,
        dA.data_ptr<double>(), dD.data_ptr<double>(), dW.data_ptr<double>(),
        db.data_ptr<double>(), P);
  });
  return {dW.sum(0), db.sum(0), dA.sum(0), dD.sum(0)};
}

// Threads one at::parallel_for over `items` work items ran on: torch's
// intra-op count when the extension is built with OpenMP, 1 without (the
// header's parallel_for is then serial; the tests check this).
int64_t parallel_threads(int64_t items) {
  std::vector<int> used(std::max<int64_t>(items, 1), 0);
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    const int tid = at::get_thread_num();
    volatile double sink = 0;  // long enough that every thread gets work
    for (int64_t i = begin; i < end; ++i) {
      for (int k = 0; k < 200000; ++k) sink = sink + k;
      used[i] = tid + 1;
    }
  });
  int64_t n = 0;
  for (int v : used) n = std::max<int64_t>(n, v);
  return n;
}

}  // namespace

// depthwise_conv.cpp
void dw_conv_fwd(const at::Tensor& x, const at::Tensor& w,
                 const at::Tensor& bias, at::Tensor& out, int64_t K);
at::Tensor dw_conv_wgrad(const at::Tensor& x, const at::Tensor& g,
                         int64_t K);

// selective_scan.cpp
void register_selective_scan(pybind11::module& m);

// pointwise.cpp
void silu_fwd(const at::Tensor& x, at::Tensor& out);
void silu_bwd(const at::Tensor& x, const at::Tensor& d, at::Tensor& grad,
              at::Tensor& silu);
void gate_bwd(const at::Tensor& z, const at::Tensor& ln, const at::Tensor& dg,
              at::Tensor& g, at::Tensor& dz, at::Tensor& dln);

// opmix_floor.cpp (hidden: this binary's own)
__attribute__((visibility("hidden"))) double opmix_floor(
    int64_t kind, int64_t lanes, int64_t exp_form, int64_t steps,
    int64_t reps);

namespace {

// the run-time kernel variant (scan_math.h); variants.py sets it at load
void set_variant(int64_t lanes, int64_t exp, int64_t tile, int64_t ahead,
                 int64_t bwd16, int64_t pfy, int64_t spread) {
  TORCH_CHECK(lanes == 8 || lanes == 16, "lanes must be 8 or 16, got ",
              lanes);
  TORCH_CHECK(exp >= 0 && exp <= 3, "exp must be 0, 1, 2 or 3, got ", exp);
  TORCH_CHECK(tile >= 16 && tile <= 256, "tile must be in [16, 256], got ",
              tile);
  TORCH_CHECK(ahead >= 0 && ahead <= 8, "ahead must be in [0, 8], got ",
              ahead);
  TORCH_CHECK(bwd16 == 0 || bwd16 == 1, "bwd16 must be 0 or 1, got ",
              bwd16);
  TORCH_CHECK(pfy == 0 || pfy == 1, "pfy must be 0 or 1, got ", pfy);
  TORCH_CHECK(spread == 0 || spread == 1, "spread must be 0 or 1, got ",
              spread);
  KernelVariant& v = kernel_variant();
  v.spread = static_cast<int>(spread);
  v.pfy = static_cast<int>(pfy);
  v.bwd16 = static_cast<int>(bwd16);
  v.lanes = static_cast<int>(lanes);
  v.exp = static_cast<int>(exp);
  v.tile = static_cast<int>(tile);
  v.ahead = static_cast<int>(ahead);
}

std::vector<int64_t> get_variant() {
  const KernelVariant& v = kernel_variant();
  return {v.lanes, v.exp, v.tile, v.ahead, v.bwd16, v.pfy, v.spread};
}

}  // namespace

// cpu_allocator.cpp
int64_t cpu_cache_install(int64_t limit_bytes);
std::vector<int64_t> cpu_cache_stats();
int64_t cpu_cache_empty();

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "semillie-mm: fused four-direction SS2D selective scan (CPU)";
  namespace py = pybind11;
  m.def("fwd", &ss2d_scan_fwd,
        "y += scan of one direction (y = it: accumulate=False)", py::arg("u"),
        py::arg("xdbl"), py::arg("Wdt"), py::arg("bias"), py::arg("A"),
        py::arg("D"), py::arg("y"), py::arg("ckpt"), py::arg("H"),
        py::arg("W"), py::arg("dir"), py::arg("K"),
        py::arg("accumulate") = true);
  m.def("bwd", &ss2d_scan_bwd, "backward of one direction");
  m.def("dw_conv_fwd", &dw_conv_fwd,
        "channels-last depth-wise KxK conv, stride 1, padding K/2");
  m.def("dw_conv_wgrad", &dw_conv_wgrad,
        "its weight gradient, (K*K, C) float64");
  m.def("silu_fwd", &silu_fwd, "out = silu(x) (float32, out may be x)");
  m.def("silu_bwd", &silu_bwd,
        "grad = d * silu'(x), and silu = silu(x) when silu is not empty");
  m.def("gate_bwd", &gate_bwd,
        "backward of g = ln * silu(z): g, dz, dln (each when not empty)");
  m.def("cpu_cache_install", &cpu_cache_install,
        "install the caching CPU allocator / set its limit (bytes)");
  m.def("cpu_cache_stats", &cpu_cache_stats,
        "installed, active, limit, cached, hits, misses, released");
  m.def("cpu_cache_empty", &cpu_cache_empty, "release the cached blocks");
  m.def("parallel_threads", &parallel_threads,
        "threads an at::parallel_for over n items used");
  m.def("set_variant", &set_variant,
        "kernel variant: lanes (8/16), exp form (0-3), tile, ahead, bwd16, "
        "pfy, spread");
  m.def("get_variant", &get_variant,
        "[lanes, exp, tile, ahead, bwd16, pfy, spread]");
  m.def("opmix_floor", &opmix_floor,
        "the scan's op mix in L1, every thread: kind (0 fwd, 1 bwd), "
        "lanes, exp form, steps, reps -> checksum");
#if defined(__AVX512F__)
  m.attr("avx512") = true;
  m.attr("exp_forms") = std::vector<int64_t>{0, 1, 2, 3};
#else
  m.attr("avx512") = false;
  m.attr("exp_forms") = std::vector<int64_t>{2, 3};  // 0 and 1 run as 2
#endif
  register_selective_scan(m);
  m.attr("max_state") = kMaxState;
  m.attr("max_rank") = kMaxRank;
}
