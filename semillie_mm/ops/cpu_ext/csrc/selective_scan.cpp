// Copyright (c) semillie-mm contributors. All rights reserved.
//
// Mamba's selective scan on CPU in the generic layout of selective_scan()
// (mamba-ssm's interface), forward and backward.
//
// Layouts:
//   u, delta, z, out  (batch, E, L)  any strides (a "Seq" each)
//   A                 (E, N), D, bias (E)
//   B, C              (batch, G, N, L), any strides; channel c uses group
//                     c / (E / G)
//   last              (batch, E, N)   state after the last step
//   ckpt              (batch, n_chunks, N, E)  state entering every chunk
//                     of K steps (training only)
// Per batch b, channel c, state n, step t:
//   dt      = delta[t] + bias[c], then softplus(dt) if asked
//   h[t, n] = exp(dt A[c, n]) h[t-1, n] + dt B[t, n] u[t]
//   y[t]    = sum_n C[t, n] h[t, n] + D[c] u[t];  out[t] = y[t] silu(z[t])
//
// As in ss2d_scan.cpp the channels are vectorised in blocks of V lanes (16
// float32 / 8 float64) with the state index n outside the lane loops. A
// forward work item is one (batch, group) and a range of its channel
// blocks, walked in tiles of 256 steps: the tile's B and C rows are
// gathered once into (step, n) order for all the item's blocks; per block
// the tile's u and delta (contiguous along L) are gathered into (step,
// lane) buffers, the recurrence runs over the tile (for d_state 16 in
// float32 with the states in registers, scan16_run), and the output is
// scattered back. The rows the next block will gather are prefetched in
// software during the block's recurrence, a few lines a step
// (SpreadPrefetch): 3 x 16 rows streamed at once are more than the
// hardware prefetchers follow (a prefetch of the tile after next in the
// gathers: forward -25%), and the gathers' lines prefetched all at once
// outran the miss buffers (spread: backward 0.82x).
//
// Backward: like ss2d_scan.cpp, the chunk's states are recomputed from the
// forward's checkpoints into per-thread buffers and the adjoint recurrence
// runs backwards through them. The chunks are walked from the last, and
// inside each chunk the item's channel blocks one after the other (each
// block's adjoints and float64 totals carried from chunk to chunk): the
// chunk's B and C rows are gathered once for all the blocks, its dB and dC
// summed over them in (step, n) order and written into the (N, L) rows
// once (a gather and a read-add-write of those rows per block and chunk
// cost more than a tenth of the backward). dB and dC, shared by the
// channels of a group, are accumulated without races: work items are
// (slot, batch, group); slot s handles every S-th block of the group and
// writes its own partial buffers (S, batch, G, N, L), summed by the caller
// (S = 1 unless batch * groups is smaller than the thread count).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <utility>
#include <type_traits>
#include <vector>

#include "scan_math.h"

namespace {

using namespace semillie_scan;

struct Seq {  // strides of a (batch, channel, step) map
  int64_t sb, sc, st;
};

struct Shape {
  int64_t nb, E, L, N, G, cpg, nblk;  // cpg channels and nblk blocks / group
  int64_t K, nchunks;
  bool softplus;
  bool stream;  // outputs written with streaming stores (see scatter)
};

// (batch, E, L) outputs of at least this many bytes are written with
// streaming (non-temporal) stores: they do not fit the caches anyway, and
// a normal store of a line first reads it from memory (scan forward
// -5 %, forward + backward -8 % at 1 x 512 x 65536, Zen 5); smaller ones
// stay in the cache for the op that reads them next
constexpr int64_t kStreamBytes = int64_t(16) << 20;

// a gather's prefetch distance that prefetches nothing (past any L)
constexpr int64_t kNone = std::numeric_limits<int64_t>::max() / 2;

// Software prefetch of the rows' steps [t0 + pf, t0 + pf + m) (pf: the
// distance, in steps, to a later tile; negative in the backward, which
// walks the chunks from the end).
template <typename T>
inline void prefetch_rows(const T* base, Seq s, int vc, int64_t t0,
                          int64_t m, int64_t pf, int64_t L, bool write) {
  const int64_t a = std::max<int64_t>(0, t0 + pf);
  const int64_t e = std::min<int64_t>(L, t0 + pf + m);
  if (s.st != 1 || a >= e) return;
  constexpr int64_t kLine = 64 / sizeof(T);
  for (int c = 0; c < vc; ++c) {
    const T* row = base + c * s.sc;
    for (int64_t t = a; t < e; t += kLine) {
      if (write) {
        __builtin_prefetch(row + t, 1);
      } else {
        __builtin_prefetch(row + t, 0);
      }
    }
  }
}

// Software prefetches spread over a block's steps: when a block starts,
// the lines of the rows the next block will gather are listed (add), and
// the recurrence issues a few of them at every step (issue). Issued at
// once, the 384 lines of a backward block (three (batch, E, L) inputs x 16
// rows x 8 lines) outrun the core's miss buffers and most come too late or
// not at all (the backward's gathers were a quarter of its time, 0.08 of
// 0.34 ns per element; spread, the backward takes 0.82x, Zen 5,
// 1 x 512 x 65536).
template <typename T>
class SpreadPrefetch {
 public:
  void clear() { n_ = 0; }
  // the lines of x[b, c0 + c, t0 + i], c < vc, i < m (rows contiguous
  // along L only; other layouts are left to the hardware)
  void add(const T* x, Seq s, int64_t b, int64_t c0, int vc, int64_t t0,
           int64_t m) {
    if (!x || s.st != 1 || m <= 0) return;
    constexpr int64_t kLine = 64 / sizeof(T);
    const int64_t lines = (m + kLine - 1) / kLine + 1;  // +1: unaligned
    if (static_cast<int64_t>(p_.size()) < n_ + vc * lines)
      p_.resize(n_ + vc * lines);
    const T* base = x + b * s.sb + c0 * s.sc + t0;
    for (int c = 0; c < vc; ++c) {
      const T* row = base + c * s.sc;
      const uintptr_t a = reinterpret_cast<uintptr_t>(row) & ~uintptr_t(63);
      const uintptr_t e = reinterpret_cast<uintptr_t>(row + m);
      for (uintptr_t l = a; l < e; l += 64)
        p_[n_++] = reinterpret_cast<const T*>(l);
    }
  }
  // a new list: the lines of every input (x, its strides; null: none) in
  // the channels c0 .. c0 + vc and steps [t0, t0 + m)
  void list(std::initializer_list<std::pair<const T*, Seq>> xs, int64_t b,
            int64_t c0, int vc, int64_t t0, int64_t m) {
    clear();
    for (const auto& [x, s] : xs) add(x, s, b, c0, vc, t0, m);
  }
  // spread the listed lines over `steps` calls of issue
  void plan(int64_t steps) {
    per_ = steps > 0 ? (n_ + steps - 1) / steps : n_;
  }
  // step i's share
  inline void issue(int64_t i) const {
    const int64_t a = i * per_, e = std::min(n_, a + per_);
    for (int64_t j = a; j < e; ++j) __builtin_prefetch(p_[j], 0);
  }

 private:
  std::vector<const T*> p_;
  int64_t n_ = 0, per_ = 0;
};

// always_inline on builds without AVX-512 only (bwd_range's chunk lambda)
#if defined(__AVX512F__)
#define SEMILLIE_INLINE_NO_AVX512
#else
#define SEMILLIE_INLINE_NO_AVX512 __attribute__((always_inline))
#endif

// buf[i * V + c] = x[b, c0 + c, t0 + i] for i < m, c < vc; lanes past vc 0
template <typename T, int V>
inline void gather(const T* x, Seq s, int64_t b, int64_t c0, int vc,
                   int64_t t0, int64_t m, T* __restrict buf, int64_t pf,
                   int64_t L) {
  prefetch_rows(x + b * s.sb + c0 * s.sc, s, vc, t0, m, pf, L, false);
  const T* base = x + b * s.sb + c0 * s.sc + t0 * s.st;
  if (vc < V) std::fill(buf, buf + m * V, T(0));
  if (s.st == 1) {
    int64_t i0 = 0;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      if (vc == 16) {  // 16 x 16 blocks transposed in registers
        __m512 r[16];
        for (; i0 + 16 <= m; i0 += 16) {
          for (int c = 0; c < 16; ++c)
            r[c] = _mm512_loadu_ps(base + c * s.sc + i0);
          transpose16(r);
          for (int i = 0; i < 16; ++i)
            _mm512_storeu_ps(buf + (i0 + i) * 16, r[i]);
        }
      }
    }
#else
    if constexpr (std::is_same_v<T, float>) {
      if (vc == 16) {  // 8 x 8 blocks transposed in registers
        for (; i0 + 8 <= m; i0 += 8)
          for (int h = 0; h < 16; h += 8) {
            vf8 r[8];
#pragma GCC unroll 8
            for (int c = 0; c < 8; ++c)
              r[c] = load8(base + (h + c) * s.sc + i0);
            transpose8(r);
#pragma GCC unroll 8
            for (int i = 0; i < 8; ++i) store8(buf + (i0 + i) * 16 + h, r[i]);
          }
      }
    }
#endif
    for (int c = 0; c < vc; ++c) {
      const T* row = base + c * s.sc;
      for (int64_t i = i0; i < m; ++i) buf[i * V + c] = row[i];
    }
  } else {
    for (int64_t i = 0; i < m; ++i) {
      const T* col = base + i * s.st;
      for (int c = 0; c < vc; ++c) buf[i * V + c] = col[c * s.sc];
    }
  }
}

// x[b, c0 + c, t0 + i] = buf[i * V + c] for i < m, c < vc. stream: the
// transposed 16 x 16 blocks go out with streaming stores where every row's
// line is whole and 64-byte aligned (no write prefetch then); the caller
// ends its range with an sfence (stream_fence).
template <typename T, int V>
inline void scatter(const T* __restrict buf, T* x, Seq s, int64_t b,
                    int64_t c0, int vc, int64_t t0, int64_t m, int64_t pf,
                    int64_t L, bool stream) {
  T* base = x + b * s.sb + c0 * s.sc + t0 * s.st;
#if defined(__AVX__)
  const bool nt = stream && s.st == 1 && vc == V &&
                  (reinterpret_cast<uintptr_t>(base) & 63) == 0 &&
                  (s.sc * sizeof(T)) % 64 == 0;
#else
  const bool nt = false;  // regular stores only: prefetched for writing
  (void)stream;
#endif
  if (!nt)
    prefetch_rows<T>(x + b * s.sb + c0 * s.sc, s, vc, t0, m, pf, L, true);
  if (s.st == 1) {
    int64_t i0 = 0;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      if (vc == 16) {
        __m512 r[16];
        for (; i0 + 16 <= m; i0 += 16) {
          for (int i = 0; i < 16; ++i)
            r[i] = _mm512_loadu_ps(buf + (i0 + i) * 16);
          transpose16(r);
          if (nt) {
            for (int c = 0; c < 16; ++c)
              _mm512_stream_ps(base + c * s.sc + i0, r[c]);
          } else {
            for (int c = 0; c < 16; ++c)
              _mm512_storeu_ps(base + c * s.sc + i0, r[c]);
          }
        }
      }
    }
#else
    if constexpr (std::is_same_v<T, float>) {
      if (vc == 16) {
        // r[c] = steps i.. i + 7 of channel h + c: an 8 x 8 block
        // transposed in registers
        const auto block8 = [&](int64_t i, int h, vf8* r) {
#pragma GCC unroll 8
          for (int j = 0; j < 8; ++j) r[j] = load8(buf + (i + j) * 16 + h);
          transpose8(r);
        };
        // 16 steps of 8 channels as two blocks, each channel's row then
        // written as one whole line (streamed where nt: a line's two
        // halves go out back to back, so the write-combining buffer
        // leaves whole; written one block at a time, the halves of 16
        // lines were in flight at once)
        for (; i0 + 16 <= m; i0 += 16)
          for (int h = 0; h < 16; h += 8) {
            vf8 r[8], q[8];
            block8(i0, h, r);
            block8(i0 + 8, h, q);
#pragma GCC unroll 8
            for (int c = 0; c < 8; ++c) {
              float* row = base + (h + c) * s.sc + i0;
#if defined(__AVX__)
              if (nt) {
                _mm256_stream_ps(row, r[c]);
                _mm256_stream_ps(row + 8, q[c]);
                continue;
              }
#endif
              store8(row, r[c]);
              store8(row + 8, q[c]);
            }
          }
        for (; i0 + 8 <= m; i0 += 8)  // regular stores: not whole lines
          for (int h = 0; h < 16; h += 8) {
            vf8 r[8];
            block8(i0, h, r);
#pragma GCC unroll 8
            for (int c = 0; c < 8; ++c) store8(base + (h + c) * s.sc + i0, r[c]);
          }
      }
    }
#endif
    for (int c = 0; c < vc; ++c) {
      T* row = base + c * s.sc;
      for (int64_t i = i0; i < m; ++i) row[i] = buf[i * V + c];
    }
  } else {
    for (int64_t i = 0; i < m; ++i) {
      T* col = base + i * s.st;
      for (int c = 0; c < vc; ++c) col[c * s.sc] = buf[i * V + c];
    }
  }
}

// orders a range's streaming stores before the stores that follow (the
// parallel region's end)
inline void stream_fence(bool stream) {
#if defined(__AVX__)
  if (stream) _mm_sfence();
#else
  (void)stream;
#endif
}

// B or C of one (batch, group), N rows of L steps (strides sn, st), into
// buf[i * N + n] for the steps [t0, t0 + m): by gather's 16 x 16 (8 x 8)
// transposes where N is the lane count, element by element otherwise;
// both prefetch the steps pf on
template <typename T, int V>
inline void gather_rows(const T* x, int64_t sn, int64_t st, int64_t N,
                        int64_t t0, int64_t m, T* __restrict buf, int64_t pf,
                        int64_t L) {
  const Seq s{0, sn, st};
  if (N == V) {
    gather<T, V>(x, s, 0, 0, V, t0, m, buf, pf, L);
    return;
  }
  prefetch_rows(x, s, static_cast<int>(N), t0, m, pf, L, false);
  for (int64_t n = 0; n < N; ++n) {
    const T* row = x + n * sn + t0 * st;
    for (int64_t i = 0; i < m; ++i) buf[i * N + n] = row[i * st];
  }
}

// the reverse into contiguous (N, L) rows: x[n * L + t0 + i] =
// buf[i * N + n] (scatter's transposes and streaming stores where N is the
// lane count)
template <typename T, int V>
inline void scatter_rows(const T* __restrict buf, T* x, int64_t N,
                         int64_t t0, int64_t m, int64_t pf, int64_t L,
                         bool stream) {
  if (N == V) {
    scatter<T, V>(buf, x, Seq{0, L, 1}, 0, 0, V, t0, m, pf, L, stream);
    return;
  }
  for (int64_t n = 0; n < N; ++n) {
    T* row = x + n * L + t0;
    for (int64_t i = 0; i < m; ++i) row[i] = buf[i * N + n];
  }
}

// dt of a tile: raw = delta + bias, then softplus (with its derivative in
// sg where kSig: the backward's) when asked; otherwise dt = raw and sg is
// not written
template <typename T, int V, bool kSig>
inline void tile_dt(T* __restrict dl, T* __restrict sg, const T* bias,
                    int64_t m, bool softplus) {
  alignas(64) T raw[V];
  for (int64_t i = 0; i < m; ++i) {
    T* d = dl + i * V;
    for (int c = 0; c < V; ++c) raw[c] = d[c] + bias[c];
    if (softplus) {
      softplus_sig<T, V, kSig>(raw, d, kSig ? sg + i * V : nullptr);
    } else {
      for (int c = 0; c < V; ++c) d[c] = raw[c];
    }
  }
}

// per-block constants, V lanes each (zero past the block's vc channels)
template <typename T, int V>
struct Block {
  alignas(64) T a[kMaxState * V];   // A
  alignas(64) T a2[kMaxState * V];  // A * log2(e)
  alignas(64) T Dv[V];
  alignas(64) T bias[V];
  void load(const T* A, const T* D, const T* bias_, int64_t c0, int vc,
            int64_t N) {
    load_block_consts<T, V>(A, D, bias_, c0, vc, N, a2, Dv, bias);
    for (int64_t n = 0; n < N; ++n)  // A itself, for the backward
      for (int c = 0; c < V; ++c)
        a[n * V + c] = c < vc ? A[(c0 + c) * N + n] : T(0);
  }
};

struct Seq4 {  // strides of B or C, (batch, G, N, L)
  int64_t sb, sg, sn, st;
};

template <typename T>
void fwd_range(const T* u, Seq su, const T* delta, Seq sd, const T* z,
               Seq sz, const T* A, const T* B, Seq4 sB, const T* C, Seq4 sC,
               const T* D, const T* bias, T* out, Seq so, T* last, T* ckpt,
               const Shape P, int64_t bpi, int64_t ipg, int64_t begin,
               int64_t end) {
  // arguments by value: see fwd_range in ss2d_scan.cpp. A work item is
  // one (batch, group) and a range of bpi channel blocks of the group: the
  // tile's B and C rows are gathered once for all of them.
  constexpr int V = Lanes<T>::V;
  // steps per tile: 256 (forward 0.945-0.955x of 128, 64 1.10x; 512 as
  // 256; Zen 5, 1 x 512 x 65536)
  constexpr int64_t kTile = 256;
  constexpr int64_t kAhead = 2 * kTile;  // prefetch distance
  const KernelVariant kv = kernel_variant();
  const int64_t gpf = kv.spread ? kNone : kAhead;  // the gathers'
  const int64_t N = P.N;
  std::vector<Block<T, V>> prm(bpi);
  std::vector<T> hbuf(bpi * N * V);
  std::vector<T> Bl(kTile * N), Cl(kTile * N);
  SpreadPrefetch<T> pfl;
  alignas(64) T Ut[kTile * V], Dt[kTile * V], Zt[kTile * V],
      Yt[kTile * V], sgz[V], du[V], yv[V];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / (P.G * ipg);
    const int64_t g = (item / ipg) % P.G;
    const int64_t j0 = (item % ipg) * bpi;
    const int64_t nj = std::min(P.nblk, j0 + bpi) - j0;
    const auto c0_of = [&](int64_t j) { return g * P.cpg + (j0 + j) * V; };
    const auto vc_of = [&](int64_t j) {
      return static_cast<int>(
          std::min<int64_t>(V, (g + 1) * P.cpg - c0_of(j)));
    };
    for (int64_t j = 0; j < nj; ++j)
      prm[j].load(A, D, bias, c0_of(j), vc_of(j), N);
    std::fill(hbuf.begin(), hbuf.end(), T(0));
    const T* Bg = B + b * sB.sb + g * sB.sg;
    const T* Cg = C + b * sC.sb + g * sC.sg;
    for (int64_t t0 = 0; t0 < P.L; t0 += kTile) {
      const int64_t m = std::min(kTile, P.L - t0);
      // the tile's B and C as (step, n) rows
      gather_rows<T, V>(Bg, sB.sn, sB.st, N, t0, m, Bl.data(), kAhead, P.L);
      gather_rows<T, V>(Cg, sC.sn, sC.st, N, t0, m, Cl.data(), kAhead, P.L);
      for (int64_t j = 0; j < nj; ++j) {
        const Block<T, V>& q = prm[j];
        const int64_t c0 = c0_of(j);
        const int vc = vc_of(j);
        T* h = &hbuf[j * N * V];
        gather<T, V>(u, su, b, c0, vc, t0, m, Ut, gpf, P.L);
        gather<T, V>(delta, sd, b, c0, vc, t0, m, Dt, gpf, P.L);
        // variant spread: the rows the next block gathers (after the
        // tile's last block, the first block's of the next tile),
        // prefetched during this block's recurrence; otherwise the gathers
        // prefetch the block's rows of the tile after next
        pfl.clear();
        if (kv.spread && (j + 1 < nj || t0 + kTile < P.L)) {
          const bool more = j + 1 < nj;
          const int64_t tn = more ? t0 : t0 + kTile;
          const int64_t jn = more ? j + 1 : 0;
          pfl.list({{u, su}, {delta, sd}, {z, sz}}, b, c0_of(jn), vc_of(jn),
                   tn, std::min(kTile, P.L - tn));
        }
        pfl.plan(m);
        tile_dt<T, V, false>(Dt, nullptr, q.bias, m, P.softplus);
        bool done = false;  // the tile ran on the d_state-16 path
        if constexpr (std::is_same_v<T, float>) {
          if (N == 16) {
            T* ck = ckpt ? ckpt + (b * P.nchunks * N) * P.E + c0 : nullptr;
            scan16_run_ckpt(
                kv, Ut, Dt, q.a2, q.Dv, h, m, vc, ck, P.E,
                P.K, t0,
                [&](int64_t i) {
                  pfl.issue(i);
                  return Rows16{&Bl[i * 16], &Cl[i * 16]};
                },
                [&](int64_t i, auto y, int off) {
                  std::memcpy(Yt + i * V + off, &y, sizeof(y));
                });
            done = true;
          }
        }
        for (int64_t i = 0; i < m && !done; ++i) {
          pfl.issue(i);
          const int64_t t = t0 + i;
          if (ckpt && t % P.K == 0)  // the state entering chunk t / K
            store_state<T, V>(
                ckpt + ((b * P.nchunks + t / P.K) * N) * P.E + c0, P.E, h, N,
                vc);
          forward_step<T, V>(N, &Bl[i * N], &Cl[i * N], Dt + i * V,
                             Ut + i * V, q.a2, q.Dv, h, du, yv);
          for (int c = 0; c < V; ++c) Yt[i * V + c] = yv[c];
        }
        if (z) {  // gate: y * z * sigmoid(z)
          gather<T, V>(z, sz, b, c0, vc, t0, m, Zt, gpf, P.L);
          for (int64_t i = 0; i < m; ++i) {
            sigmoid<T, V>(Zt + i * V, sgz);
            for (int c = 0; c < V; ++c)
              Yt[i * V + c] *= Zt[i * V + c] * sgz[c];
          }
        }
        scatter<T, V>(Yt, out, so, b, c0, vc, t0, m, kAhead, P.L, P.stream);
      }
    }
    for (int64_t j = 0; j < nj; ++j) {
      const int64_t c0 = c0_of(j);
      const T* h = &hbuf[j * N * V];
      for (int c = 0; c < vc_of(j); ++c)
        for (int64_t n = 0; n < N; ++n)
          last[(b * P.E + c0 + c) * N + n] = h[n * V + c];
    }
  }
  stream_fence(P.stream);
}

#if defined(__AVX512F__)
__attribute__((always_inline)) inline vf16 fma16(vf16 a, vf16 b, vf16 c) {
  __m512 x, y, z;
  std::memcpy(&x, &a, 64);
  std::memcpy(&y, &b, 64);
  std::memcpy(&z, &c, 64);
  x = _mm512_fmadd_ps(x, y, z);
  vf16 r;
  std::memcpy(&r, &x, 64);
  return r;
}

// acc[c] += double(x[c]) for 16 lanes (float64 acc of 16)
__attribute__((always_inline)) inline void add_to_f64(double* acc, vf16 x) {
  __m512 v;
  std::memcpy(&v, &x, 64);
  const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d hi = _mm512_cvtps_pd(
      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  _mm512_storeu_pd(acc, _mm512_add_pd(_mm512_loadu_pd(acc), lo));
  _mm512_storeu_pd(acc + 8, _mm512_add_pd(_mm512_loadu_pd(acc + 8), hi));
}
#endif

template <typename T>
void bwd_range(const T* u, Seq su, const T* delta, Seq sd, const T* z,
               Seq sz, const T* A, const T* B, Seq4 sB, const T* C, Seq4 sC,
               const T* D, const T* bias, const T* ckpt, const T* dout,
               Seq sg_,
               const T* dlast, T* du, Seq sdu, T* ddelta, Seq sdd, T* dz,
               Seq sdz, T* dBp, T* dCp, int64_t S, double* dA, double* dD,
               double* dbias, const Shape P, int64_t begin, int64_t end) {
  constexpr int V = Lanes<T>::V;
  const int64_t K = P.K, N = P.N;
  const KernelVariant kv = kernel_variant();
  const bool steps8 = std::is_same_v<T, float> && steps16_v8(kv, N);
  std::vector<T> Hbuf((K + 1) * N * V), Ebuf(K * N * V);
  std::vector<T> Ul(K * V), Dl(K * V), Sl(K * V), Zl(K * V), Gl(K * V),
      DUl(K * V), DDl(K * V), DZl(K * V);
  // the chunk's B and C rows, (step, n); dBa, dCa: the chunk's sums over
  // the item's blocks (step, n)
  std::vector<T> Bl(K * N), Cl(K * N), dBa(K * N), dCa(K * N);
  // what a channel block carries from chunk to chunk: its constants, the
  // adjoints lam and the float64 totals. The blocks of an item are walked
  // inside each chunk (as in ss2d_scan.cpp's backward): the chunk's B and C
  // rows are gathered once for all of them and the chunk's dB, dC summed
  // over them in (step, n) order before one write into the (N, L) rows,
  // instead of a gather and a read-add-write of those rows per block
  struct BlockState {
    Block<T, V> q;
    alignas(64) T lam[kMaxState * V];
    alignas(64) double dAa[kMaxState * V], dDa[V], dba[V];
  };
  std::vector<BlockState> states((P.nblk + S - 1) / S);
  SpreadPrefetch<T> pfl;
  alignas(64) T dAc[kMaxState * V];
  alignas(64) T gy[V], dut[V], ddtv[V], dtu[V], yv[V], sgz[V];
  for (int64_t j = 0; j < N * V; ++j) dAc[j] = T(0);
  for (int64_t item = begin; item < end; ++item) {
    const int64_t s = item / (P.nb * P.G);
    const int64_t b = (item / P.G) % P.nb;
    const int64_t g = item % P.G;
    const T* Bg = B + b * sB.sb + g * sB.sg;
    const T* Cg = C + b * sC.sb + g * sC.sg;
    // this slot's partial dB, dC of (batch, group): (N, L) rows
    const int64_t off = ((s * P.nb + b) * P.G + g) * N * P.L;
    T* dBs = dBp + off;
    T* dCs = dCp + off;
    const int64_t nbi = (P.nblk - s + S - 1) / S;  // the item's blocks
    const auto c0_of = [&](int64_t jb) { return g * P.cpg + (s + jb * S) * V; };
    const auto vc_of = [&](int64_t jb) {
      return static_cast<int>(
          std::min<int64_t>(V, (g + 1) * P.cpg - c0_of(jb)));
    };
    for (int64_t jb = 0; jb < nbi; ++jb) {  // each block's state
      BlockState& st = states[jb];
      const int64_t c0 = c0_of(jb);
      const int vc = vc_of(jb);
      st.q.load(A, D, bias, c0, vc, N);
      for (int64_t n = 0; n < N; ++n)
        for (int c = 0; c < V; ++c) {
          st.lam[n * V + c] =
              (dlast && c < vc) ? dlast[(b * P.E + c0 + c) * N + n] : T(0);
          st.dAa[n * V + c] = 0.0;
        }
      for (int c = 0; c < V; ++c) {
        st.dDa[c] = 0.0;
        st.dba[c] = 0.0;
      }
    }
    for (int64_t k = P.nchunks - 1; k >= 0; --k) {
      const int64_t t0 = k * K;
      const int64_t m = std::min(K, P.L - t0);
      const int64_t pf = -K;  // the chunk before (walked next)
      gather_rows<T, V>(Bg, sB.sn, sB.st, N, t0, m, Bl.data(), pf, P.L);
      gather_rows<T, V>(Cg, sC.sn, sC.st, N, t0, m, Cl.data(), pf, P.L);
      for (int64_t jb = 0; jb < nbi; ++jb) {
        const bool first = jb == 0;
        BlockState& st = states[jb];
        const Block<T, V>& q = st.q;
        T* lam = st.lam;
        // the float64 totals in locals for the chunk (the per-step sums
        // then vectorise: no aliasing with the outputs)
        alignas(64) double dDa[V], dba[V];
        std::memcpy(dDa, st.dDa, sizeof(dDa));
        std::memcpy(dba, st.dba, sizeof(dba));
        const int64_t c0 = c0_of(jb);
        const int vc = vc_of(jb);
        // the block's rows (variant spread: prefetched during the block
        // before; otherwise the gathers prefetch the block's rows of the
        // chunk before)
        const int64_t gpf = kv.spread ? kNone : pf;
        gather<T, V>(u, su, b, c0, vc, t0, m, Ul.data(), gpf, P.L);
        gather<T, V>(delta, sd, b, c0, vc, t0, m, Dl.data(), gpf, P.L);
        if (z) gather<T, V>(z, sz, b, c0, vc, t0, m, Zl.data(), gpf, P.L);
        if (dout) {
          gather<T, V>(dout, sg_, b, c0, vc, t0, m, Gl.data(), gpf, P.L);
        } else {
          std::fill(Gl.begin(), Gl.begin() + m * V, T(0));
        }
        // variant spread: the rows the next block gathers (after the
        // chunk's last block, the first block's of the chunk before),
        // prefetched during this block's recomputation
        pfl.clear();
        if (kv.spread && (jb + 1 < nbi || k > 0)) {
          const bool more = jb + 1 < nbi;
          const int64_t jn = more ? jb + 1 : 0;
          const int64_t tn = more ? t0 : t0 - K;
          pfl.list({{u, su}, {delta, sd}, {z, sz}, {dout, sg_}}, b, c0_of(jn),
                   vc_of(jn), tn, std::min(K, P.L - tn));
        }
        pfl.plan(m);
        tile_dt<T, V, true>(Dl.data(), Sl.data(), q.bias, m, P.softplus);
        // the state entering the chunk; the next chunk's (k - 1) of this
        // block prefetched
        load_state<T, V>(ckpt + ((b * P.nchunks + k) * N) * P.E + c0, P.E,
                         Hbuf.data(), N, vc, k > 0);
        // the generic recomputation and adjoint (states, decays and
        // adjoints in memory)
        // (steps8: with the 256-bit register steps, steps16_v8). Inlined
        // on builds without AVX-512, where GCC otherwise made it a function
        // of its own (AVX2 backward 1.05x); the AVX-512 build keeps GCC's
        // choice (and its bits: the gate's path is this one there)
        const auto bwd_chunk_generic = [&]() SEMILLIE_INLINE_NO_AVX512 {
          // recompute the chunk's states H[i + 1] and decays E[i]
          for (int64_t i = 0; i < m; ++i) {
            pfl.issue(i);
            recompute_step_sel<T, V>(steps8, kv.exp, N, &Bl[i * N], &Dl[i * V],
                                     &Ul[i * V], q.a2, &Hbuf[i * N * V],
                                     &Hbuf[(i + 1) * N * V], &Ebuf[i * N * V],
                                     dtu);
          }
          // adjoint recurrence; lam[n] enters step t holding
          // exp(dt[t+1] A[n]) dL/dh[t+1, n] (dL/dh[L-1] = dlast at the end)
          for (int64_t i = m - 1; i >= 0; --i) {
            const T* Bp = &Bl[i * N];
            const T* Cp = &Cl[i * N];
            const T* d = &Dl[i * V];
            const T* uu = &Ul[i * V];
            const T* go = &Gl[i * V];
            if (z) {  // out = y silu(z): recompute y from the states
              for (int c = 0; c < V; ++c) yv[c] = q.Dv[c] * uu[c];
              for (int64_t n = 0; n < N; ++n) {
                const T cn = Cp[n];
                const T* hc = &Hbuf[((i + 1) * N + n) * V];
                for (int c = 0; c < V; ++c) yv[c] += cn * hc[c];
              }
              const T* zz = &Zl[i * V];
              sigmoid<T, V>(zz, sgz);
              T* dzo = &DZl[i * V];
              for (int c = 0; c < V; ++c) {
                dzo[c] = go[c] * yv[c] * sgz[c] *
                         (T(1) + zz[c] * (T(1) - sgz[c]));
                gy[c] = go[c] * zz[c] * sgz[c];
              }
            } else {
              for (int c = 0; c < V; ++c) gy[c] = go[c];
            }
            for (int c = 0; c < V; ++c) {
              dtu[c] = d[c] * uu[c];
              dut[c] = q.Dv[c] * gy[c];
              dDa[c] += static_cast<double>(gy[c] * uu[c]);
              ddtv[c] = T(0);
            }
            // the first block's sums go to the chunk's, the others' are
            // added to them
            adjoint_step_sel<T, V>(steps8, N, Bp, Cp, &Hbuf[i * N * V],
                                   &Hbuf[(i + 1) * N * V], &Ebuf[i * N * V],
                                   q.a, lam, dAc, d, uu, gy, dtu, ddtv, dut,
                                   &dBa[i * N], &dCa[i * N], !first);
            if (P.softplus) {
              const T* sp = &Sl[i * V];
              for (int c = 0; c < V; ++c) ddtv[c] *= sp[c];
            }
            T* duo = &DUl[i * V];
            T* ddo = &DDl[i * V];
            for (int c = 0; c < V; ++c) {
              dba[c] += static_cast<double>(ddtv[c]);
              duo[c] = dut[c];
              ddo[c] = ddtv[c];
            }
          }
        };
#if defined(__AVX512F__)
        // d_state 16 without the gate, variant bwd16: the fused SS2D
        // backward's register path (recompute16, adjoint16)
        if constexpr (std::is_same_v<T, float>) {
          if (N == 16 && !z && kv.bwd16 && kv.lanes == 16) {
            const T* Dc = Dl.data();
            const T* Uc = Ul.data();
            const auto brow = [&](int64_t i) {
              pfl.issue(i);
              return &Bl[i * 16];
            };
            recompute16_run(kv, m, Dc, Uc, q.a2, Hbuf.data(), Ebuf.data(),
                            brow);
            adjoint16(
                m, Dc, Uc, Gl.data(), q.a, Hbuf.data(), Ebuf.data(), lam,
                dAc,
                [&](int64_t i) { return Rows16{&Bl[i * 16], &Cl[i * 16]}; },
                [&](int64_t i, vf16 ddt, vf16 lbd, __m512 sBv, __m512 sCv) {
                  // in vectors what the generic path does per channel
                  // (same operations, same bits)
                  vf16 uu, go, sp, Dv;
                  std::memcpy(&uu, &Ul[i * V], 64);
                  std::memcpy(&go, &Gl[i * V], 64);
                  std::memcpy(&Dv, q.Dv, 64);
                  const vf16 duo = fma16(Dv, go, lbd);
                  vf16 dd = ddt;
                  if (P.softplus) {
                    std::memcpy(&sp, &Sl[i * V], 64);
                    dd = ddt * sp;
                  }
                  std::memcpy(&DUl[i * V], &duo, 64);
                  std::memcpy(&DDl[i * V], &dd, 64);
                  add_to_f64(dDa, go * uu);
                  add_to_f64(dba, dd);
                  float* pb = &dBa[i * 16];
                  float* pc = &dCa[i * 16];
                  if (!first) {
                    sBv = _mm512_add_ps(_mm512_loadu_ps(pb), sBv);
                    sCv = _mm512_add_ps(_mm512_loadu_ps(pc), sCv);
                  }
                  _mm512_storeu_ps(pb, sBv);
                  _mm512_storeu_ps(pc, sCv);
                });
          } else {
            bwd_chunk_generic();
          }
        } else {
          bwd_chunk_generic();
        }
#else
        bwd_chunk_generic();
#endif
        scatter<T, V>(DUl.data(), du, sdu, b, c0, vc, t0, m, pf, P.L, P.stream);
        scatter<T, V>(DDl.data(), ddelta, sdd, b, c0, vc, t0, m, pf, P.L,
                      P.stream);
        if (z)
          scatter<T, V>(DZl.data(), dz, sdz, b, c0, vc, t0, m, pf, P.L,
                        P.stream);
        for (int64_t j = 0; j < N * V; ++j) {
          st.dAa[j] += static_cast<double>(dAc[j]);
          dAc[j] = T(0);
        }
        std::memcpy(st.dDa, dDa, sizeof(dDa));
        std::memcpy(st.dba, dba, sizeof(dba));
      }
      // the chunk's channel sums into the slot's (N, L) rows
      scatter_rows<T, V>(dBa.data(), dBs, N, t0, m, pf, P.L, P.stream);
      scatter_rows<T, V>(dCa.data(), dCs, N, t0, m, pf, P.L, P.stream);
    }
    for (int64_t jb = 0; jb < nbi; ++jb) {
      const BlockState& st = states[jb];
      const int64_t c0 = c0_of(jb);
      for (int c = 0; c < vc_of(jb); ++c) {
        const int64_t e = b * P.E + c0 + c;
        for (int64_t n = 0; n < N; ++n) dA[e * N + n] = st.dAa[n * V + c];
        dD[e] = st.dDa[c];
        dbias[e] = st.dba[c];
      }
    }
  }
  stream_fence(P.stream);
}

Seq seq_of(const at::Tensor& x, const char* name, const at::Tensor& u) {
  TORCH_CHECK(x.device().is_cpu() && x.layout() == at::kStrided, name,
              " must be a CPU tensor");
  TORCH_CHECK(x.sizes() == u.sizes(), name, " must have the shape of u ",
              u.sizes(), ", got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == u.scalar_type(), name,
              " must have the dtype of u");
  return Seq{x.stride(0), x.stride(1), x.stride(2)};
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

template <typename T>
const T* ptr_or_null(const c10::optional<at::Tensor>& x) {
  return x ? x->data_ptr<T>() : nullptr;
}

void check_bc(const at::Tensor& X, const at::Tensor& u, const char* name,
              const Shape& P) {
  TORCH_CHECK(X.device().is_cpu() && X.layout() == at::kStrided, name,
              " must be a CPU tensor");
  TORCH_CHECK(X.dim() == 4 && X.size(0) == P.nb && X.size(1) == P.G &&
                  X.size(2) == P.N && X.size(3) == P.L,
              name, " must be (", P.nb, ", ", P.G, ", ", P.N, ", ", P.L,
              "), got ", X.sizes());
  TORCH_CHECK(X.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(X.scalar_type() == u.scalar_type(), name,
              " must have the dtype of u");
}

// B, C: (batch, G, N, L), any strides
Shape shape_of(const at::Tensor& u, const at::Tensor& delta,
               const at::Tensor& A, const at::Tensor& B,
               const at::Tensor& C, const c10::optional<at::Tensor>& D,
               const c10::optional<at::Tensor>& z,
               const c10::optional<at::Tensor>& bias, bool softplus,
               int64_t K) {
  TORCH_CHECK(u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble,
              "u must be float32 or float64");
  TORCH_CHECK(u.dim() == 3 && u.device().is_cpu() &&
                  u.layout() == at::kStrided,
              "u must be a (batch, E, L) CPU tensor");
  TORCH_CHECK(K >= 1, "chunk size must be positive");
  TORCH_CHECK(A.dim() == 2 && B.dim() == 4, "A must be 2-d, B 4-d");
  Shape P;
  P.nb = u.size(0);
  P.E = u.size(1);
  P.L = u.size(2);
  P.N = A.size(1);
  P.G = B.size(1);
  TORCH_CHECK(P.nb >= 1 && P.E >= 1 && P.L >= 1, "empty u");
  TORCH_CHECK(P.N >= 1 && P.N <= kMaxState, "N must be in [1, ", kMaxState,
              "]");
  TORCH_CHECK(P.G >= 1 && P.E % P.G == 0, "groups must divide E");
  P.cpg = P.E / P.G;
  const int64_t V = u.scalar_type() == at::kFloat ? 16 : 8;
  P.nblk = (P.cpg + V - 1) / V;
  P.K = K;
  P.nchunks = (P.L + K - 1) / K;
  P.softplus = softplus;
  P.stream = P.nb * P.E * P.L * static_cast<int64_t>(u.element_size()) >=
             kStreamBytes;
  seq_of(delta, "delta", u);
  if (z) seq_of(*z, "z", u);
  check_param(A, u, "A", {P.E, P.N});
  check_bc(B, u, "B", P);
  check_bc(C, u, "C", P);
  if (D) check_param(*D, u, "D", {P.E});
  if (bias) check_param(*bias, u, "delta_bias", {P.E});
  return P;
}

// B, C: (batch, G, N, L). Returns (out (batch, E, L), last (batch, E, N),
// ckpt (batch, n_chunks, N, E) or an empty tensor when save_ckpt is false)
std::vector<at::Tensor> scan_fwd(const at::Tensor& u, const at::Tensor& delta,
                                 const at::Tensor& A, const at::Tensor& B,
                                 const at::Tensor& C,
                                 const c10::optional<at::Tensor>& D,
                                 const c10::optional<at::Tensor>& z,
                                 const c10::optional<at::Tensor>& bias,
                                 bool softplus, int64_t K, bool save_ckpt) {
  const Shape P = shape_of(u, delta, A, B, C, D, z, bias, softplus, K);
  auto out = at::empty({P.nb, P.E, P.L}, u.options());
  auto last = at::empty({P.nb, P.E, P.N}, u.options());
  auto ckpt = save_ckpt ? at::empty({P.nb, P.nchunks, P.N, P.E}, u.options())
                        : at::empty({0}, u.options());
  const Seq su = seq_of(u, "u", u), sd = seq_of(delta, "delta", u);
  const Seq sz = z ? seq_of(*z, "z", u) : Seq{0, 0, 0};
  const Seq so = seq_of(out, "out", u);
  const Seq4 sB{B.stride(0), B.stride(1), B.stride(2), B.stride(3)};
  const Seq4 sC{C.stride(0), C.stride(1), C.stride(2), C.stride(3)};
  // blocks per work item: enough items for the threads, as few as that
  // allows (the tile's B and C rows are gathered once per item)
  const int64_t per_bg = std::min<int64_t>(
      P.nblk, std::max<int64_t>(
                  1, (at::get_num_threads() + P.nb * P.G - 1) / (P.nb * P.G)));
  const int64_t bpi = (P.nblk + per_bg - 1) / per_bg;
  const int64_t ipg = (P.nblk + bpi - 1) / bpi;  // items per (batch, group)
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_fwd", [&] {
    const scalar_t* up = u.data_ptr<scalar_t>();
    const scalar_t* dp = delta.data_ptr<scalar_t>();
    const scalar_t* zp = ptr_or_null<scalar_t>(z);
    const scalar_t* Ap = A.data_ptr<scalar_t>();
    const scalar_t* Bp = B.data_ptr<scalar_t>();
    const scalar_t* Cp = C.data_ptr<scalar_t>();
    const scalar_t* Dp = ptr_or_null<scalar_t>(D);
    const scalar_t* bp = ptr_or_null<scalar_t>(bias);
    scalar_t* op = out.data_ptr<scalar_t>();
    scalar_t* lp = last.data_ptr<scalar_t>();
    scalar_t* cp = save_ckpt ? ckpt.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, P.nb * P.G * ipg, 1, [&](int64_t b0, int64_t b1) {
      fwd_range<scalar_t>(up, su, dp, sd, zp, sz, Ap, Bp, sB, Cp, sC, Dp, bp,
                          op, so, lp, cp, P, bpi, ipg, b0, b1);
    });
  });
  return {out, last, ckpt};
}

// returns (du, ddelta, dz (or empty), dA (E, N), dB, dC (batch, G, N, L),
// dD (E,), dbias (E,)); dA, dD, dbias are float64 sums over the batch
std::vector<at::Tensor> scan_bwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
    const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& z,
    const c10::optional<at::Tensor>& bias, bool softplus, int64_t K,
    const at::Tensor& ckpt, const c10::optional<at::Tensor>& dout,
    const c10::optional<at::Tensor>& dlast, int64_t S) {
  const Shape P = shape_of(u, delta, A, B, C, D, z, bias, softplus, K);
  check_param(ckpt, u, "ckpt", {P.nb, P.nchunks, P.N, P.E});
  if (dlast) check_param(*dlast, u, "dlast", {P.nb, P.E, P.N});
  TORCH_CHECK(S >= 1 && S <= P.nblk, "slots must be in [1, ", P.nblk, "]");
  const Seq su = seq_of(u, "u", u), sd = seq_of(delta, "delta", u);
  const Seq sz = z ? seq_of(*z, "z", u) : Seq{0, 0, 0};
  const Seq sg = dout ? seq_of(*dout, "dout", u) : Seq{0, 0, 0};
  auto du = at::empty({P.nb, P.E, P.L}, u.options());
  auto ddelta = at::empty({P.nb, P.E, P.L}, u.options());
  auto dz = z ? at::empty({P.nb, P.E, P.L}, u.options())
              : at::empty({0}, u.options());
  auto dBp = at::empty({S, P.nb, P.G, P.N, P.L}, u.options());
  auto dCp = at::empty({S, P.nb, P.G, P.N, P.L}, u.options());
  const Seq4 sB{B.stride(0), B.stride(1), B.stride(2), B.stride(3)};
  const Seq4 sC{C.stride(0), C.stride(1), C.stride(2), C.stride(3)};
  auto opt = u.options().dtype(at::kDouble);
  auto dA = at::empty({P.nb, P.E, P.N}, opt);
  auto dD = at::empty({P.nb, P.E}, opt);
  auto db = at::empty({P.nb, P.E}, opt);
  const Seq sdu = seq_of(du, "du", u), sdd = seq_of(ddelta, "ddelta", u);
  const Seq sdz = z ? seq_of(dz, "dz", u) : Seq{0, 0, 0};
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_bwd", [&] {
    const scalar_t* up = u.data_ptr<scalar_t>();
    const scalar_t* dp = delta.data_ptr<scalar_t>();
    const scalar_t* zp = ptr_or_null<scalar_t>(z);
    const scalar_t* Ap = A.data_ptr<scalar_t>();
    const scalar_t* Bp = B.data_ptr<scalar_t>();
    const scalar_t* Cp = C.data_ptr<scalar_t>();
    const scalar_t* Dp = ptr_or_null<scalar_t>(D);
    const scalar_t* bp = ptr_or_null<scalar_t>(bias);
    const scalar_t* ckp = ckpt.data_ptr<scalar_t>();
    const scalar_t* gp = ptr_or_null<scalar_t>(dout);
    const scalar_t* dlp = ptr_or_null<scalar_t>(dlast);
    scalar_t* dup = du.data_ptr<scalar_t>();
    scalar_t* ddp = ddelta.data_ptr<scalar_t>();
    scalar_t* dzp = z ? dz.data_ptr<scalar_t>() : nullptr;
    scalar_t* dBpp = dBp.data_ptr<scalar_t>();
    scalar_t* dCpp = dCp.data_ptr<scalar_t>();
    double* dAp = dA.data_ptr<double>();
    double* dDp = dD.data_ptr<double>();
    double* dbp = db.data_ptr<double>();
    at::parallel_for(0, S * P.nb * P.G, 1, [&](int64_t b0, int64_t b1) {
      bwd_range<scalar_t>(up, su, dp, sd, zp, sz, Ap, Bp, sB, Cp, sC, Dp, bp,
                          ckp, gp,
                          sg, dlp, dup, sdu, ddp, sdd, dzp, sdz, dBpp, dCpp, S,
                          dAp, dDp, dbp, P, b0, b1);
    });
  });
  auto dB = S == 1 ? dBp[0] : dBp.sum(0);
  auto dC = S == 1 ? dCp[0] : dCp.sum(0);
  return {du, ddelta, dz, dA.sum(0), dB, dC, dD.sum(0), db.sum(0)};
}

}  // namespace

// registered in ss2d_scan.cpp's module
void register_selective_scan(pybind11::module& m) {
  m.def("scan_fwd", &scan_fwd,
        "selective scan forward (batch, E, L) layout: out, last, ckpt");
  m.def("scan_bwd", &scan_bwd,
        "its backward: du, ddelta, dz, dA, dB/dC partials, dD, dbias");
}
