// Copyright (c) semillie-mm contributors. All rights reserved.
//
// Mamba's selective scan on CPU in the generic layout of selective_scan()
// (mamba-ssm's interface), forward and backward.
//
// Layouts:
//   u, delta, z, out  (batch, E, L)  any strides (a "Seq" each)
//   A                 (E, N), D, bias (E)
//   B, C              (batch, G, N, L); the kernels read Bt, Ct, contiguous
//                     (batch, G, L, N) copies, so that one step's N numbers
//                     are adjacent; channel c uses group c / (E / G)
//   last              (batch, E, N)   state after the last step
//   ckpt              (batch, n_chunks, N, E)  state entering every chunk
//                     of K steps (training only)
// Per batch b, channel c, state n, step t:
//   dt      = delta[t] + bias[c], then softplus(dt) if asked
//   h[t, n] = exp(dt A[c, n]) h[t-1, n] + dt B[t, n] u[t]
//   y[t]    = sum_n C[t, n] h[t, n] + D[c] u[t];  out[t] = y[t] silu(z[t])
//
// As in ss2d_scan.cpp the channels are vectorised: a work item is one block
// of V channels (16 float32 / 8 float64) of one group of one batch element,
// with the state index n outside the lane loops. The sequences of u, delta,
// z are contiguous along L, so a tile of steps is first gathered into
// (step, lane) buffers (a transpose, done once per tile and overlapping the
// recurrence of nothing: it is cheap next to the N exponentials per step),
// and the tile's output is scattered back the same way.
//
// Backward: like ss2d_scan.cpp, the chunk's states are recomputed from the
// forward's checkpoints into per-thread buffers and the adjoint recurrence
// runs backwards through them. dB and dC, shared by the channels of a group,
// are accumulated without races: work items are (slot, batch, group); slot s
// handles every S-th block of the group and writes its own partial buffers
// (S, batch, G, L, N), summed by the caller (S = 1 unless batch * groups is
// smaller than the thread count).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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
};

// Software prefetch of the rows' steps [t0 + pf, t0 + pf + m) (pf: the
// distance, in steps, to a later tile; negative in the backward, which
// walks the chunks from the end): 48 rows of 16 channels streamed at once
// are more than the hardware prefetchers follow (forward -25%).
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

// buf[i * V + c] = x[b, c0 + c, t0 + i] for i < m, c < vc; lanes past vc 0
template <typename T, int V>
inline void gather(const T* x, Seq s, int64_t b, int64_t c0, int vc,
                   int64_t t0, int64_t m, T* __restrict buf, int64_t pf,
                   int64_t L) {
  prefetch_rows(x + b * s.sb + c0 * s.sc, s, vc, t0, m, pf, L, false);
  const T* base = x + b * s.sb + c0 * s.sc + t0 * s.st;
  if (vc < V) std::fill(buf, buf + m * V, T(0));
  if (s.st == 1) {
    for (int c = 0; c < vc; ++c) {
      const T* row = base + c * s.sc;
      for (int64_t i = 0; i < m; ++i) buf[i * V + c] = row[i];
    }
  } else {
    for (int64_t i = 0; i < m; ++i) {
      const T* col = base + i * s.st;
      for (int c = 0; c < vc; ++c) buf[i * V + c] = col[c * s.sc];
    }
  }
}

// x[b, c0 + c, t0 + i] = buf[i * V + c] for i < m, c < vc
template <typename T, int V>
inline void scatter(const T* __restrict buf, T* x, Seq s, int64_t b,
                    int64_t c0, int vc, int64_t t0, int64_t m, int64_t pf,
                    int64_t L) {
  prefetch_rows<T>(x + b * s.sb + c0 * s.sc, s, vc, t0, m, pf, L, true);
  T* base = x + b * s.sb + c0 * s.sc + t0 * s.st;
  if (s.st == 1) {
    for (int c = 0; c < vc; ++c) {
      T* row = base + c * s.sc;
      for (int64_t i = 0; i < m; ++i) row[i] = buf[i * V + c];
    }
  } else {
    for (int64_t i = 0; i < m; ++i) {
      T* col = base + i * s.st;
      for (int c = 0; c < vc; ++c) col[c * s.sc] = buf[i * V + c];
    }
  }
}

// dt of a tile: raw = delta + bias, then softplus (with its derivative in
// sg) when asked; otherwise dt = raw and sg is not written
template <typename T, int V>
inline void tile_dt(T* __restrict dl, T* __restrict sg, const T* bias,
                    int64_t m, bool softplus) {
  alignas(64) T raw[V];
  for (int64_t i = 0; i < m; ++i) {
    T* d = dl + i * V;
    for (int c = 0; c < V; ++c) raw[c] = d[c] + bias[c];
    if (softplus) {
      softplus_sig<T, V>(raw, d, sg + i * V);
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
    for (int64_t n = 0; n < N; ++n)
      for (int c = 0; c < V; ++c) {
        a[n * V + c] = c < vc ? A[(c0 + c) * N + n] : T(0);
        a2[n * V + c] = a[n * V + c] * T(kLog2e);
      }
    for (int c = 0; c < V; ++c) {
      Dv[c] = (D && c < vc) ? D[c0 + c] : T(0);
      bias[c] = (bias_ && c < vc) ? bias_[c0 + c] : T(0);
    }
  }
};

template <typename T>
void fwd_range(const T* u, Seq su, const T* delta, Seq sd, const T* z,
               Seq sz, const T* A, const T* Bt, const T* Ct, const T* D,
               const T* bias, T* out, Seq so, T* last, T* ckpt,
               const Shape P, int64_t begin, int64_t end) {
  // arguments by value: see fwd_range in ss2d_scan.cpp
  constexpr int V = Lanes<T>::V;
  constexpr int64_t kMaxTile = 128;
  const int64_t N = P.N;
  const int64_t tile = kMaxTile;  // steps per tile
  const int64_t pf = 2 * tile;     // prefetch distance
  Block<T, V> q;
  alignas(64) T h[kMaxState * V];
  alignas(64) T Ut[kMaxTile * V], Dt[kMaxTile * V], St[kMaxTile * V],
      Zt[kMaxTile * V], Yt[kMaxTile * V], sgz[V], du[V], yv[V];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t b = item / (P.G * P.nblk);
    const int64_t g = (item / P.nblk) % P.G;
    const int64_t c0 = g * P.cpg + (item % P.nblk) * V;
    const int vc = static_cast<int>(std::min<int64_t>(V, (g + 1) * P.cpg - c0));
    q.load(A, D, bias, c0, vc, N);
    std::fill(h, h + N * V, T(0));
    const T* Bg = Bt + (b * P.G + g) * P.L * N;
    const T* Cg = Ct + (b * P.G + g) * P.L * N;
    for (int64_t t0 = 0; t0 < P.L; t0 += tile) {
      const int64_t m = std::min(tile, P.L - t0);
      gather<T, V>(u, su, b, c0, vc, t0, m, Ut, pf, P.L);
      gather<T, V>(delta, sd, b, c0, vc, t0, m, Dt, pf, P.L);
      tile_dt<T, V>(Dt, St, q.bias, m, P.softplus);
      bool done = false;  // the tile ran on the d_state-16 path
      if constexpr (std::is_same_v<T, float>) {
        if (N == 16) {
          T* ck = ckpt ? ckpt + (b * P.nchunks * N) * P.E + c0 : nullptr;
          int64_t next = ck ? (P.K - t0 % P.K) % P.K : m;  // next checkpoint
          scan16_tile(
              Ut, Dt, q.a2, q.Dv, h, m,
              [&](int64_t i) {
                return Rows16{Bg + (t0 + i) * 16, Cg + (t0 + i) * 16};
              },
              [&](int64_t i, const vf16* hv) {
                if (i == next) {  // the state entering chunk (t0 + i) / K
                  T* dst = ck + ((t0 + i) / P.K) * 16 * P.E;
                  for (int n = 0; n < 16; ++n)
                    store_lanes(dst + n * P.E, hv[n], vc);
                  next += P.K;
                }
              },
              [&](int64_t i, vf16 y) { std::memcpy(Yt + i * V, &y, 64); });
          done = true;
        }
      }
      for (int64_t i = 0; i < m && !done; ++i) {
        const int64_t t = t0 + i;
        if (ckpt && t % P.K == 0) {  // the state entering chunk t / K
          T* ck = ckpt + ((b * P.nchunks + t / P.K) * N) * P.E + c0;
          for (int64_t n = 0; n < N; ++n)
            for (int c = 0; c < vc; ++c) ck[n * P.E + c] = h[n * V + c];
        }
        const T* Bp = Bg + t * N;
        const T* Cp = Cg + t * N;
        const T* uu = Ut + i * V;
        const T* d = Dt + i * V;
        for (int c = 0; c < V; ++c) {
          du[c] = d[c] * uu[c];
          yv[c] = q.Dv[c] * uu[c];
        }
        for (int64_t n = 0; n < N; ++n) {
          const T bn = Bp[n], cn = Cp[n];
          T* hn = h + n * V;
          const T* an = q.a2 + n * V;
#pragma omp simd
          for (int c = 0; c < V; ++c) {
            const T hv = exp_scaled(d[c] * an[c]) * hn[c] + du[c] * bn;
            hn[c] = hv;
            yv[c] += cn * hv;
          }
        }
        for (int c = 0; c < V; ++c) Yt[i * V + c] = yv[c];
      }
      if (z) {  // gate: y * z * sigmoid(z)
        gather<T, V>(z, sz, b, c0, vc, t0, m, Zt, pf, P.L);
        for (int64_t i = 0; i < m; ++i) {
          sigmoid<T, V>(Zt + i * V, sgz);
          for (int c = 0; c < V; ++c)
            Yt[i * V + c] *= Zt[i * V + c] * sgz[c];
        }
      }
      scatter<T, V>(Yt, out, so, b, c0, vc, t0, m, pf, P.L);
    }
    for (int c = 0; c < vc; ++c)
      for (int64_t n = 0; n < N; ++n)
        last[(b * P.E + c0 + c) * N + n] = h[n * V + c];
  }
}

template <typename T>
void bwd_range(const T* u, Seq su, const T* delta, Seq sd, const T* z,
               Seq sz, const T* A, const T* Bt, const T* Ct, const T* D,
               const T* bias, const T* ckpt, const T* dout, Seq sg_,
               const T* dlast, T* du, Seq sdu, T* ddelta, Seq sdd, T* dz,
               Seq sdz, T* dBp, T* dCp, int64_t S, double* dA, double* dD,
               double* dbias, const Shape P, int64_t begin, int64_t end) {
  constexpr int V = Lanes<T>::V;
  const int64_t K = P.K, N = P.N;
  std::vector<T> Hbuf((K + 1) * N * V), Ebuf(K * N * V);
  std::vector<T> Ul(K * V), Dl(K * V), Sl(K * V), Zl(K * V), Gl(K * V),
      DUl(K * V), DDl(K * V), DZl(K * V);
  Block<T, V> q;
  alignas(64) T lam[kMaxState * V], dAc[kMaxState * V];
  alignas(64) double dAa[kMaxState * V];
  alignas(64) T gy[V], dut[V], ddtv[V], dtu[V], yv[V], sgz[V];
  alignas(64) double dDa[V], dba[V];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t s = item / (P.nb * P.G);
    const int64_t b = (item / P.G) % P.nb;
    const int64_t g = item % P.G;
    const int64_t off = (b * P.G + g) * P.L * N;
    const T* Bg = Bt + off;
    const T* Cg = Ct + off;
    T* dBs = dBp + s * P.nb * P.G * P.L * N + off;
    T* dCs = dCp + s * P.nb * P.G * P.L * N + off;
    for (int64_t blk = s; blk < P.nblk; blk += S) {
      const bool first = blk == s;
      const int64_t c0 = g * P.cpg + blk * V;
      const int vc =
          static_cast<int>(std::min<int64_t>(V, (g + 1) * P.cpg - c0));
      q.load(A, D, bias, c0, vc, N);
      for (int64_t n = 0; n < N; ++n)
        for (int c = 0; c < V; ++c) {
          lam[n * V + c] =
              (dlast && c < vc) ? dlast[(b * P.E + c0 + c) * N + n] : T(0);
          dAa[n * V + c] = 0.0;
          dAc[n * V + c] = T(0);
        }
      for (int c = 0; c < V; ++c) {
        dDa[c] = 0.0;
        dba[c] = 0.0;
      }
      for (int64_t k = P.nchunks - 1; k >= 0; --k) {
        const int64_t t0 = k * K;
        const int64_t m = std::min(K, P.L - t0);
        const int64_t pf = -K;  // the chunk before (walked next)
        gather<T, V>(u, su, b, c0, vc, t0, m, Ul.data(), pf, P.L);
        gather<T, V>(delta, sd, b, c0, vc, t0, m, Dl.data(), pf, P.L);
        tile_dt<T, V>(Dl.data(), Sl.data(), q.bias, m, P.softplus);
        if (z) gather<T, V>(z, sz, b, c0, vc, t0, m, Zl.data(), pf, P.L);
        if (dout) {
          gather<T, V>(dout, sg_, b, c0, vc, t0, m, Gl.data(), pf, P.L);
        } else {
          std::fill(Gl.begin(), Gl.begin() + m * V, T(0));
        }
        const T* ck = ckpt + ((b * P.nchunks + k) * N) * P.E + c0;
        for (int64_t n = 0; n < N; ++n)
          for (int c = 0; c < V; ++c)
            Hbuf[n * V + c] = c < vc ? ck[n * P.E + c] : T(0);
        // recompute the chunk's states H[i + 1] and decays E[i]
        for (int64_t i = 0; i < m; ++i) {
          const T* Bp = Bg + (t0 + i) * N;
          const T* d = &Dl[i * V];
          const T* uu = &Ul[i * V];
          for (int c = 0; c < V; ++c) dtu[c] = d[c] * uu[c];
          for (int64_t n = 0; n < N; ++n) {
            const T bn = Bp[n];
            const T* hp = &Hbuf[(i * N + n) * V];
            T* hc = &Hbuf[((i + 1) * N + n) * V];
            T* en = &Ebuf[(i * N + n) * V];
            const T* a2 = q.a2 + n * V;
#pragma omp simd
            for (int c = 0; c < V; ++c) {
              const T e = exp_scaled(d[c] * a2[c]);
              en[c] = e;
              hc[c] = e * hp[c] + dtu[c] * bn;
            }
          }
        }
        // adjoint recurrence; lam[n] enters step t holding
        // exp(dt[t+1] A[n]) dL/dh[t+1, n] (dL/dh[L-1] = dlast at the end)
        for (int64_t i = m - 1; i >= 0; --i) {
          const int64_t t = t0 + i;
          const T* Bp = Bg + t * N;
          const T* Cp = Cg + t * N;
          T* dBt = dBs + t * N;
          T* dCt = dCs + t * N;
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
#if defined(__AVX512F__)
          if constexpr (std::is_same_v<T, float>) {
            if (N == 16) {  // the default d_state: rows, then one tree
              alignas(64) float PB[256], PC[256];
              for (int64_t n = 0; n < 16; ++n) {
                const T bn = Bp[n], cn = Cp[n];
                const T* hp = &Hbuf[(i * N + n) * V];
                const T* hc = &Hbuf[((i + 1) * N + n) * V];
                const T* en = &Ebuf[(i * N + n) * V];
                const T* a = q.a + n * V;
                T* ln_ = lam + n * V;
                T* dac = dAc + n * V;
                float* pb = PB + n * 16;
                float* pc = PC + n * 16;
#pragma omp simd
                for (int c = 0; c < V; ++c) {
                  const T ln = ln_[c] + gy[c] * cn;
                  const T x = ln * hp[c] * en[c];
                  const T lb = ln * bn;
                  ddtv[c] += (x * a[c] + lb * uu[c]);
                  dac[c] += x * d[c];
                  dut[c] += lb * d[c];
                  pb[c] = ln * dtu[c];
                  pc[c] = gy[c] * hc[c];
                  ln_[c] = ln * en[c];
                }
              }
              __m512 sBv = row_sums16(PB), sCv = row_sums16(PC);
              if (!first) {
                sBv = _mm512_add_ps(sBv, _mm512_loadu_ps(dBt));
                sCv = _mm512_add_ps(sCv, _mm512_loadu_ps(dCt));
              }
              _mm512_storeu_ps(dBt, sBv);
              _mm512_storeu_ps(dCt, sCv);
              goto adjoint_done;
            }
          }
#endif
          for (int64_t n = 0; n < N; ++n) {
            const T bn = Bp[n], cn = Cp[n];
            const T* hp = &Hbuf[(i * N + n) * V];
            const T* hc = &Hbuf[((i + 1) * N + n) * V];
            const T* en = &Ebuf[(i * N + n) * V];
            const T* a = q.a + n * V;
            T* ln_ = lam + n * V;
            T* dac = dAc + n * V;
            T sB = T(0), sC = T(0);
#pragma omp simd reduction(+ : sB, sC)
            for (int c = 0; c < V; ++c) {
              const T ln = ln_[c] + gy[c] * cn;
              const T x = ln * hp[c] * en[c];  // dL/d(dt A[n])
              const T lb = ln * bn;
              ddtv[c] += (x * a[c] + lb * uu[c]);
              dac[c] += x * d[c];
              dut[c] += lb * d[c];
              sB += ln * dtu[c];
              sC += gy[c] * hc[c];
              ln_[c] = ln * en[c];
            }
            dBt[n] = first ? sB : dBt[n] + sB;
            dCt[n] = first ? sC : dCt[n] + sC;
          }
#if defined(__AVX512F__)
        adjoint_done:
#endif
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
        scatter<T, V>(DUl.data(), du, sdu, b, c0, vc, t0, m, pf, P.L);
        scatter<T, V>(DDl.data(), ddelta, sdd, b, c0, vc, t0, m, pf, P.L);
        if (z) scatter<T, V>(DZl.data(), dz, sdz, b, c0, vc, t0, m, pf, P.L);
        for (int64_t j = 0; j < N * V; ++j) {
          dAa[j] += static_cast<double>(dAc[j]);
          dAc[j] = T(0);
        }
      }
      for (int c = 0; c < vc; ++c) {
        const int64_t e = b * P.E + c0 + c;
        for (int64_t n = 0; n < N; ++n) dA[e * N + n] = dAa[n * V + c];
        dD[e] = dDa[c];
        dbias[e] = dba[c];
      }
    }
  }
}

// (batch, G, N, L) -> contiguous (batch, G, L, N)
at::Tensor transposed(const at::Tensor& X) {
  TORCH_CHECK(X.dim() == 4, "B and C must be (batch, G, N, L)");
  auto t = at::empty({X.size(0), X.size(1), X.size(3), X.size(2)}, X.options());
  t.copy_(X.transpose(2, 3));
  return t;
}

Seq seq_of(const at::Tensor& x, const char* name, const at::Tensor& u) {
  TORCH_CHECK(x.sizes() == u.sizes(), name, " must have the shape of u ",
              u.sizes(), ", got ", x.sizes());
  TORCH_CHECK(x.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(x.scalar_type() == u.scalar_type(), name,
              " must have the dtype of u");
  return Seq{x.stride(0), x.stride(1), x.stride(2)};
}

void check_param(const at::Tensor& x, const at::Tensor& u, const char* name,
                 at::IntArrayRef shape) {
  TORCH_CHECK(x.sizes() == shape, name, " must have shape ", shape, ", got ",
              x.sizes());
  TORCH_CHECK(x.is_contiguous() && x.device().is_cpu(), name,
              " must be a contiguous CPU tensor");
  TORCH_CHECK(x.scalar_type() == u.scalar_type(), name,
              " must have the dtype of u");
}

template <typename T>
const T* ptr_or_null(const c10::optional<at::Tensor>& x) {
  return x ? x->data_ptr<T>() : nullptr;
}

Shape shape_of(const at::Tensor& u, const at::Tensor& delta,
               const at::Tensor& A, const at::Tensor& Bt,
               const at::Tensor& Ct, const c10::optional<at::Tensor>& D,
               const c10::optional<at::Tensor>& z,
               const c10::optional<at::Tensor>& bias, bool softplus,
               int64_t K) {
  TORCH_CHECK(u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble,
              "u must be float32 or float64");
  TORCH_CHECK(u.dim() == 3 && u.device().is_cpu(),
              "u must be a (batch, E, L) CPU tensor");
  TORCH_CHECK(K >= 1, "chunk size must be positive");
  TORCH_CHECK(A.dim() == 2 && Bt.dim() == 4, "A must be 2-d, B 4-d");
  Shape P;
  P.nb = u.size(0);
  P.E = u.size(1);
  P.L = u.size(2);
  P.N = A.size(1);
  P.G = Bt.size(1);
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
  seq_of(delta, "delta", u);
  if (z) seq_of(*z, "z", u);
  check_param(A, u, "A", {P.E, P.N});
  check_param(Bt, u, "B^T", {P.nb, P.G, P.L, P.N});
  check_param(Ct, u, "C^T", {P.nb, P.G, P.L, P.N});
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
  const at::Tensor Bt = transposed(B), Ct = transposed(C);
  const Shape P = shape_of(u, delta, A, Bt, Ct, D, z, bias, softplus, K);
  auto out = at::empty({P.nb, P.E, P.L}, u.options());
  auto last = at::empty({P.nb, P.E, P.N}, u.options());
  auto ckpt = save_ckpt ? at::empty({P.nb, P.nchunks, P.N, P.E}, u.options())
                        : at::empty({0}, u.options());
  const Seq su = seq_of(u, "u", u), sd = seq_of(delta, "delta", u);
  const Seq sz = z ? seq_of(*z, "z", u) : Seq{0, 0, 0};
  const Seq so = seq_of(out, "out", u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "selective_scan_fwd", [&] {
    const scalar_t* up = u.data_ptr<scalar_t>();
    const scalar_t* dp = delta.data_ptr<scalar_t>();
    const scalar_t* zp = ptr_or_null<scalar_t>(z);
    const scalar_t* Ap = A.data_ptr<scalar_t>();
    const scalar_t* Bp = Bt.data_ptr<scalar_t>();
    const scalar_t* Cp = Ct.data_ptr<scalar_t>();
    const scalar_t* Dp = ptr_or_null<scalar_t>(D);
    const scalar_t* bp = ptr_or_null<scalar_t>(bias);
    scalar_t* op = out.data_ptr<scalar_t>();
    scalar_t* lp = last.data_ptr<scalar_t>();
    scalar_t* cp = save_ckpt ? ckpt.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, P.nb * P.G * P.nblk, 1, [&](int64_t b0, int64_t b1) {
      fwd_range<scalar_t>(up, su, dp, sd, zp, sz, Ap, Bp, Cp, Dp, bp, op, so,
                          lp, cp, P, b0, b1);
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
  const at::Tensor Bt = transposed(B), Ct = transposed(C);
  const Shape P = shape_of(u, delta, A, Bt, Ct, D, z, bias, softplus, K);
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
  auto dBp = at::empty({S, P.nb, P.G, P.L, P.N}, u.options());
  auto dCp = at::empty({S, P.nb, P.G, P.L, P.N}, u.options());
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
    const scalar_t* Bp = Bt.data_ptr<scalar_t>();
    const scalar_t* Cp = Ct.data_ptr<scalar_t>();
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
      bwd_range<scalar_t>(up, su, dp, sd, zp, sz, Ap, Bp, Cp, Dp, bp, ckp, gp,
                          sg, dlp, dup, sdu, ddp, sdd, dzp, sdz, dBpp, dCpp, S,
                          dAp, dDp, dbp, P, b0, b1);
    });
  });
  auto dB = (S == 1 ? dBp[0] : dBp.sum(0)).transpose(2, 3);
  auto dC = (S == 1 ? dCp[0] : dCp.sum(0)).transpose(2, 3);
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
