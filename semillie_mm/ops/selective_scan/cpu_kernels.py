# Copyright (c) semillie-mm contributors. All rights reserved.
"""numba kernels of the fast CPU selective scan.

This module imports numba; it is imported lazily by
:mod:`semillie_mm.ops.selective_scan.cpu` on the first CPU scan, so that
``import semillie_mm`` stays cheap and works without numba.

Layouts (all arrays C-contiguous, one floating dtype ``T`` = float32 or
float64 except the float64 accumulators named below):

- ``u``, ``delta``, ``z``, ``out``, ``du``, ``ddelta``, ``dz``, ``dout``:
  (batch, dim, L);
- ``A``: (dim, N); ``D``, ``dbias``: (dim,) (zeros when absent);
- ``Bt``, ``Ct``: (batch, G, L, N) -- B and C with the state axis last, so a
  time step reads N consecutive numbers;
- ``ckpt``: (batch, dim, n_chunks, N): the state entering each chunk of
  ``K`` steps (``ckpt[:, :, 0] == 0``);
- ``last``, ``dlast``: (batch, dim, N).

No (batch, dim, L, N) array is ever formed: the forward keeps one state
vector per (batch, channel); the backward recomputes one chunk of states at a
time from the checkpoints into a K x N buffer and runs the adjoint recurrence
backwards over it.
"""
import math

import numpy as np
from numba import njit, prange


@njit(cache=True, fastmath=False, inline='always')
def _softplus(x):
    # same threshold as torch.nn.functional.softplus and mamba-ssm's kernel
    if x <= 20.0:
        return math.log1p(math.exp(x))
    return x


@njit(parallel=True, cache=True, fastmath=False)
def scan_fwd(u, delta, A, Bt, Ct, D, z, dbias, has_D, has_z, softplus, K,
             save_ckpt, out, last, ckpt):
    """Forward scan, parallel over (batch, channel) pairs.

    Writes ``out`` (gated output), ``last`` (final state) and, when
    ``save_ckpt``, ``ckpt`` (state entering every chunk of ``K`` steps).
    """
    nb, nd, L = u.shape
    G = Bt.shape[1]
    N = A.shape[1]
    cpg = nd // G
    for p in prange(nb * nd):
        b = p // nd
        d = p - b * nd
        g = d // cpg
        h = np.zeros(N, A.dtype)
        zero = h[0]  # 0 in the compute dtype
        Dd = D[d]
        bias = dbias[d]
        for t in range(L):
            if save_ckpt and t % K == 0:
                k = t // K
                for n in range(N):
                    ckpt[b, d, k, n] = h[n]
            dt = delta[b, d, t] + bias
            if softplus:
                dt = _softplus(dt)
            uu = u[b, d, t]
            dtu = dt * uu
            y = Dd * uu if has_D else zero
            for n in range(N):
                hn = math.exp(dt * A[d, n]) * h[n] + dtu * Bt[b, g, t, n]
                h[n] = hn
                y += Ct[b, g, t, n] * hn
            if has_z:
                zz = z[b, d, t]
                y = y * (zz / (1.0 + math.exp(-zz)))
            out[b, d, t] = y
        for n in range(N):
            last[b, d, n] = h[n]


@njit(parallel=True, cache=True, fastmath=False)
def scan_bwd(u, delta, A, Bt, Ct, D, z, dbias, has_D, has_z, softplus, K,
             ckpt, dout, has_dout, dlast, has_dlast, S, du, ddelta, dz, dA_acc,
             dD_acc, dBp, dCp):
    """Backward scan with chunked recomputation of the states.

    Work items are (s, b, g) triples: slot ``s`` of ``S`` handles the
    channels ``g * cpg + s, g * cpg + s + S, ...`` of group ``g`` of batch
    ``b`` one after the other and accumulates their shared dB/dC into its
    own partial buffers ``dBp[s]``, ``dCp[s]`` (S, batch, G, L, N): no two
    threads write the same element. The caller sums the partials over
    ``s`` (S == 1 needs no sum).

    Writes ``du``, ``ddelta`` (w.r.t. delta before bias/softplus), ``dz``,
    ``dA_acc`` (batch, dim, N) float64, ``dD_acc`` (batch, dim) float64,
    ``dBp``, ``dCp``.
    """
    nb, nd, L = u.shape
    G = Bt.shape[1]
    N = A.shape[1]
    cpg = nd // G
    n_chunks = (L + K - 1) // K
    for item in prange(S * nb * G):
        s = item // (nb * G)
        r = item - s * (nb * G)
        b = r // G
        g = r - b * G
        # per-worker buffers: one chunk of states, decays, dt and dsoftplus
        H = np.empty((K, N), A.dtype)
        E = np.empty((K, N), A.dtype)
        DT = np.empty(K, A.dtype)
        DS = np.empty(K, A.dtype)
        lam = np.empty(N, A.dtype)
        hh = np.empty(N, A.dtype)
        dAa = np.empty(N, np.float64)
        zero = np.zeros(1, A.dtype)[0]  # 0 in the compute dtype
        for d in range(g * cpg + s, (g + 1) * cpg, S):
            Dd = D[d]
            bias = dbias[d]
            for n in range(N):
                lam[n] = dlast[b, d, n] if has_dlast else 0.0
                dAa[n] = 0.0
            dDa = 0.0
            for k in range(n_chunks - 1, -1, -1):
                t0 = k * K
                t1 = min(t0 + K, L)
                # recompute the chunk's states from its checkpoint
                for n in range(N):
                    hh[n] = ckpt[b, d, k, n]
                for t in range(t0, t1):
                    i = t - t0
                    raw = delta[b, d, t] + bias
                    if softplus:
                        dt = _softplus(raw)
                        DS[i] = 1.0 / (1.0 + math.exp(-raw))
                    else:
                        dt = raw
                    DT[i] = dt
                    dtu = dt * u[b, d, t]
                    for n in range(N):
                        e = math.exp(dt * A[d, n])
                        hn = e * hh[n] + dtu * Bt[b, g, t, n]
                        hh[n] = hn
                        H[i, n] = hn
                        E[i, n] = e
                # adjoint recurrence over the chunk, backwards in time.
                # lam[n] enters step t holding exp(dt[t+1] A[n]) * dL/dh[t+1, n]
                for t in range(t1 - 1, t0 - 1, -1):
                    i = t - t0
                    dt = DT[i]
                    uu = u[b, d, t]
                    g_out = dout[b, d, t] if has_dout else zero
                    if has_z:
                        y = Dd * uu if has_D else zero
                        for n in range(N):
                            y += Ct[b, g, t, n] * H[i, n]
                        zz = z[b, d, t]
                        sg = 1.0 / (1.0 + math.exp(-zz))
                        dz[b, d, t] = g_out * y * sg * (1.0 + zz * (1.0 - sg))
                        gy = g_out * zz * sg
                    else:
                        gy = g_out
                    du_t = Dd * gy if has_D else zero
                    if has_D:
                        dDa += gy * uu
                    ddt = 0.0
                    for n in range(N):
                        ln = lam[n] + gy * Ct[b, g, t, n]
                        dCp[s, b, g, t, n] += gy * H[i, n]
                        hp = H[i - 1, n] if i > 0 else ckpt[b, d, k, n]
                        e = E[i, n]
                        x = ln * hp * e  # dL/d(dt * A[n])
                        bn = Bt[b, g, t, n]
                        ddt += x * A[d, n] + ln * bn * uu
                        dAa[n] += x * dt
                        dBp[s, b, g, t, n] += ln * dt * uu
                        du_t += ln * dt * bn
                        lam[n] = ln * e
                    du[b, d, t] = du_t
                    if softplus:
                        ddelta[b, d, t] = ddt * DS[i]
                    else:
                        ddelta[b, d, t] = ddt
            for n in range(N):
                dA_acc[b, d, n] = dAa[n]
            dD_acc[b, d] = dDa
