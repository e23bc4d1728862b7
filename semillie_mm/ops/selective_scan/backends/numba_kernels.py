# Copyright (c) semillie-mm contributors. All rights reserved.
"""numba kernels of the 'numba' selective-scan backend.

This module imports numba; it is imported lazily by
:mod:`semillie_mm.ops.selective_scan.backends.numba` on its first scan, so that
``import semillie_mm`` stays cheap and works without numba.

Layouts (all arrays C-contiguous, one floating dtype ``T`` = float32 or
float64 except the float64 accumulators named below):

- ``u``, ``delta``, ``z``, ``out``, ``du``, ``ddelta``, ``dz``, ``dout``:
  (batch, dim, L);
- ``A``: (dim, N); ``D``, ``dbias``: (dim,) (zeros when absent);
- ``Bt``, ``Ct``: (batch, G, L, N) -- B and C with the state axis last;
- ``ckpt``: (batch, dim, n_chunks, N): the state entering each chunk of
  ``K`` steps (``ckpt[:, :, 0] == 0``);
- ``last``, ``dlast``: (batch, dim, N).

How it is fast without ``fastmath``: the channels of a group share B and C,
so each work item takes a block of ``W`` channels of one group (W = the
group's channel count rounded up to a multiple of 8, at most 64, see
:func:`lanes_for`) and the innermost loops run over those channels. Every
operation there is element-wise per channel (no floating-point reduction to
reorder), so LLVM vectorises them (AVX2: 8 float32 lanes) with IEEE
semantics. ``exp`` is the hot function (one per element and step); libm's
scalar ``exp`` would block vectorisation, so :func:`vexp` is an exp made of
arithmetic only (Cody-Waite range reduction, a Taylor polynomial of degree 7
(float32) / 13 (float64) and the exponent built from integer bits): within
1 ulp of the exact result on normal results; it returns 0 where the exact
result is subnormal and saturates to inf about 0.35 earlier than libm
(x > 127.5 ln 2 for float32, 1023.5 ln 2 for float64). Softplus uses it with
:func:`vlog1p` (same idea, within about 2 ulp).

No (batch, dim, L, N) array is ever formed: the forward keeps one (N, W)
state per block; the backward recomputes one chunk of ``K`` steps at a time
from the checkpoints into (K, N, W) buffers (states and decays) per work
item and runs the adjoint recurrence backwards over it.
"""
import math

import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload

#: most channels per work item (the vectorised axis); see :func:`lanes_for`
MAX_LANES = 64


def lanes_for(channels_per_group):
    """Channels per work item W: the group's channel count rounded up to a
    multiple of 8 (one AVX2 float32 vector), at most ``MAX_LANES``. Lanes
    past the end of a group's channels are zero-padded.

    Args:
        channels_per_group (int): dim // groups.

    Returns:
        int: W.
    """
    return min(MAX_LANES, -(-channels_per_group // 8) * 8)


def vexp(x):
    """exp(x); inside numba kernels a vectorisable version (see module
    docstring)."""
    return math.exp(x)


def _exp_consts(F, degree, mant_bits, bias):
    log2e = F(1.4426950408889634)
    if F is np.float32:
        ln2_hi, ln2_lo = F(0.693359375), F(-2.12194440e-4)
    else:
        ln2_hi, ln2_lo = F(6.93147180369123816490e-01), F(
            1.90821492927058770002e-10)
    lo = F(-(bias - 1) * math.log(2.0))  # smallest normal result
    hi = F((bias + 0.5) * math.log(2.0))  # keeps k <= bias
    coefs = tuple(F(1.0 / math.factorial(j)) for j in range(degree + 1))
    return log2e, ln2_hi, ln2_lo, lo, hi, coefs


@overload(vexp)
def _vexp_overload(x):
    if x == types.float32:
        F, I, degree, mant, bias = np.float32, np.int32, 7, 23, 127  # noqa: E741
    elif x == types.float64:
        F, I, degree, mant, bias = np.float64, np.int64, 13, 52, 1023  # noqa: E741
    else:
        return None
    log2e, ln2_hi, ln2_lo, lo, hi, c = _exp_consts(F, degree, mant, bias)
    zero, half, inf = F(0.0), F(0.5), F(np.inf)
    c0, c1, c2, c3, c4, c5, c6, c7 = c[:8]
    ibias = I(bias)
    imant = I(mant)

    if degree == 7:

        def poly(r):
            return c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (
                c5 + r * (c6 + r * c7))))))
    else:
        c8, c9, c10, c11, c12, c13 = c[8:]

        def poly(r):
            return c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (
                c5 + r * (c6 + r * (c7 + r * (c8 + r * (c9 + r * (
                    c10 + r * (c11 + r * (c12 + r * c13))))))))))))

    poly = njit(inline='always')(poly)

    def impl(x):
        xc = x if x >= lo else lo  # NaN -> lo, fixed up below
        xc = xc if xc <= hi else hi
        k = np.floor(xc * log2e + half)
        r = xc - k * ln2_hi - k * ln2_lo
        bits = I((I(k) + ibias) << imant)
        e = poly(r) * bits.view(F)
        e = zero if x < lo else e
        e = inf if x > hi else e
        return x if x != x else e

    return impl


def vlog1p(x):
    """log1p(x) for x >= 0; inside numba kernels a vectorisable version
    (used by softplus)."""
    return math.log1p(x)


@overload(vlog1p)
def _vlog1p_overload(x):
    if x == types.float32:
        F, I, mant, bias, nterms = np.float32, np.int32, 23, 127, 5  # noqa: E741
    elif x == types.float64:
        F, I, mant, bias, nterms = np.float64, np.int64, 52, 1023, 11  # noqa: E741
    else:
        return None
    one, two, half = F(1.0), F(2.0), F(0.5)
    sqrt2 = F(math.sqrt(2.0))
    if F is np.float32:
        ln2_hi, ln2_lo = F(0.693359375), F(-2.12194440e-4)
    else:
        ln2_hi, ln2_lo = F(6.93147180369123816490e-01), F(
            1.90821492927058770002e-10)
    # log(m) = 2 atanh(s) = 2 s (1 + z/3 + z^2/5 + ...), s = (m-1)/(m+1)
    c = tuple(F(1.0 / (2 * j + 1)) for j in range(11))
    mant_mask = I((1 << mant) - 1)
    one_bits = I(bias << mant)
    imant, ibias = I(mant), I(bias)
    emask = I(2 * bias + 1)

    if nterms == 5:

        def series(z):
            return c[0] + z * (c[1] + z * (c[2] + z * (c[3] + z * c[4])))
    else:

        def series(z):
            return c[0] + z * (c[1] + z * (c[2] + z * (c[3] + z * (
                c[4] + z * (c[5] + z * (c[6] + z * (c[7] + z * (
                    c[8] + z * (c[9] + z * c[10])))))))))

    series = njit(inline='always')(series)

    def impl(x):
        u = one + x
        corr = (x - (u - one)) / u  # rounding error of 1 + x, to first order
        bits = F(u).view(I)
        k = ((bits >> imant) & emask) - ibias
        m = I((bits & mant_mask) | one_bits).view(F)  # in [1, 2)
        big = m > sqrt2
        m = m * half if big else m
        kf = F(k + 1) if big else F(k)
        s = (m - one) / (m + one)
        logm = two * s * series(s * s)
        r = kf * ln2_hi + (logm + (kf * ln2_lo + corr))
        return r if u < F(np.inf) else u

    return impl


@njit(cache=True, fastmath=False)
def log1p_array(x):
    """:func:`vlog1p` over an array (for tests)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out.flat[i] = vlog1p(x.flat[i])
    return out


@njit(cache=True, fastmath=False)
def exp_array(x):
    """:func:`vexp` over an array (for tests)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out.flat[i] = vexp(x.flat[i])
    return out


@njit(cache=True, fastmath=False, inline='always')
def _load_block(u, delta, z, dbias, b, c0, w, W, t0, t1, has_z, softplus,
                need_ds, U, DT, DTU, DS, Z):
    """Read steps [t0, t1) of channels c0..c0+w of batch b into (K, W)
    tiles: u, dt (after bias/softplus), dt*u, dsoftplus/draw (if
    ``need_ds``), z; zero the lanes past ``w``."""
    m = t1 - t0
    for c in range(w, W):
        for i in range(m):
            U[i, c] = 0.0
            DT[i, c] = 0.0
            DTU[i, c] = 0.0
            DS[i, c] = 0.0
            Z[i, c] = 0.0
    for c in range(w):
        d = c0 + c
        bias = dbias[d]
        for t in range(t0, t1):
            U[t - t0, c] = u[b, d, t]
            DT[t - t0, c] = delta[b, d, t] + bias
        if has_z:
            for t in range(t0, t1):
                Z[t - t0, c] = z[b, d, t]
    if softplus:
        # softplus with the threshold 20 of torch and mamba-ssm; its
        # derivative is sigmoid(raw)
        one = np.ones(1, DT.dtype)[0]
        if need_ds:
            for i in range(m):
                for c in range(W):
                    DS[i, c] = one / (one + vexp(-DT[i, c]))
        for i in range(m):
            for c in range(W):
                raw = DT[i, c]
                sp = vlog1p(vexp(raw))
                DT[i, c] = sp if raw <= 20.0 else raw
    for i in range(m):
        for c in range(W):
            DTU[i, c] = DT[i, c] * U[i, c]


@njit(parallel=True, cache=True, fastmath=False)
def scan_fwd(u, delta, A, Bt, Ct, D, z, dbias, has_D, has_z, softplus, K,
             W, save_ckpt, out, last, ckpt):
    """Forward scan, parallel over (batch, group, block of W channels).

    Writes ``out`` (gated output), ``last`` (final state) and, when
    ``save_ckpt``, ``ckpt`` (state entering every chunk of ``K`` steps).
    """
    nb, nd, L = u.shape
    G = Bt.shape[1]
    N = A.shape[1]
    cpg = nd // G
    nblk = (cpg + W - 1) // W
    for item in prange(nb * G * nblk):
        b = item // (G * nblk)
        r = item - b * (G * nblk)
        g = r // nblk
        c0 = g * cpg + (r - g * nblk) * W
        w = min(W, (g + 1) * cpg - c0)
        # (K, W) tiles, padded lanes stay zero: they compute h = 0
        U = np.zeros((K, W), A.dtype)
        DT = np.zeros((K, W), A.dtype)
        DTU = np.zeros((K, W), A.dtype)
        DS = np.zeros((K, W), A.dtype)
        Z = np.zeros((K, W), A.dtype)
        Y = np.zeros((K, W), A.dtype)
        AT = np.zeros((N, W), A.dtype)
        h = np.zeros((N, W), A.dtype)
        Dv = np.zeros(W, A.dtype)
        for c in range(w):
            Dv[c] = D[c0 + c]
            for n in range(N):
                AT[n, c] = A[c0 + c, n]
        for t0 in range(0, L, K):
            t1 = min(t0 + K, L)
            if save_ckpt:
                for c in range(w):
                    for n in range(N):
                        ckpt[b, c0 + c, t0 // K, n] = h[n, c]
            _load_block(u, delta, z, dbias, b, c0, w, W, t0, t1, has_z,
                        softplus, False, U, DT, DTU, DS, Z)
            for i in range(t1 - t0):
                t = t0 + i
                y = Y[i]
                dt = DT[i]
                dtu = DTU[i]
                for c in range(W):
                    y[c] = Dv[c] * U[i, c] if has_D else 0.0
                for n in range(N):
                    bn = Bt[b, g, t, n]
                    cn = Ct[b, g, t, n]
                    hn = h[n]
                    an = AT[n]
                    for c in range(W):
                        hv = vexp(dt[c] * an[c]) * hn[c] + dtu[c] * bn
                        hn[c] = hv
                        y[c] += cn * hv
            if has_z:  # gate: y * silu(z)
                for i in range(t1 - t0):
                    for c in range(W):
                        zz = Z[i, c]
                        Y[i, c] = Y[i, c] * (zz / (1.0 + vexp(-zz)))
            for c in range(w):
                d = c0 + c
                for t in range(t0, t1):
                    out[b, d, t] = Y[t - t0, c]
        for c in range(w):
            for n in range(N):
                last[b, c0 + c, n] = h[n, c]


@njit(cache=True, fastmath=False, inline='always')
def _sum_lanes(x, W):
    # sum of x[:W] (W a multiple of 8) in a fixed order: 8 interleaved
    # partial sums (vectorisable), then a pairwise tree
    a0, a1, a2, a3 = x[0], x[1], x[2], x[3]
    a4, a5, a6, a7 = x[4], x[5], x[6], x[7]
    for k in range(8, W, 8):
        a0 += x[k]
        a1 += x[k + 1]
        a2 += x[k + 2]
        a3 += x[k + 3]
        a4 += x[k + 4]
        a5 += x[k + 5]
        a6 += x[k + 6]
        a7 += x[k + 7]
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


@njit(parallel=True, cache=True, fastmath=False)
def scan_bwd(u, delta, A, Bt, Ct, D, z, dbias, has_D, has_z, softplus, K,
             W, ckpt, dout, has_dout, dlast, has_dlast, S, du, ddelta, dz,
             dA_acc, dD_acc, dbias_acc, dBp, dCp):
    """Backward scan with chunked recomputation of the states.

    Work items are (s, b, g) triples: slot ``s`` of ``S`` handles the blocks
    ``s, s + S, ...`` of W channels of group ``g`` of batch ``b`` one after
    the other and accumulates their shared dB/dC into its own partial
    buffers ``dBp[s]``, ``dCp[s]`` (S, batch, G, L, N): no two threads write
    the same element. The caller sums the partials over ``s``.

    Writes ``du``, ``ddelta`` (w.r.t. delta before bias/softplus), ``dz``,
    ``dA_acc`` (batch, dim, N), ``dD_acc`` and ``dbias_acc`` (batch, dim)
    (sums over L, float64), ``dBp``, ``dCp``.
    """
    nb, nd, L = u.shape
    G = Bt.shape[1]
    N = A.shape[1]
    cpg = nd // G
    nblk = (cpg + W - 1) // W
    n_chunks = (L + K - 1) // K
    for item in prange(S * nb * G):
        s = item // (nb * G)
        r = item - s * (nb * G)
        b = r // G
        g = r - b * G
        # per-item buffers: one chunk of states and decays, (K, W) tiles
        H = np.zeros((K + 1, N, W), A.dtype)  # H[i + 1] = state after step i
        E = np.zeros((K, N, W), A.dtype)  # decays exp(dt A)
        U = np.zeros((K, W), A.dtype)
        DT = np.zeros((K, W), A.dtype)
        DTU = np.zeros((K, W), A.dtype)
        DS = np.zeros((K, W), A.dtype)
        Z = np.zeros((K, W), A.dtype)
        GO = np.zeros((K, W), A.dtype)
        DU = np.zeros((K, W), A.dtype)
        DDL = np.zeros((K, W), A.dtype)
        DZ = np.zeros((K, W), A.dtype)
        AT = np.zeros((N, W), A.dtype)
        lam = np.zeros((N, W), A.dtype)
        dAc = np.zeros((N, W), A.dtype)
        dAa = np.zeros((N, W), np.float64)
        Dv = np.zeros(W, A.dtype)
        dDa = np.zeros(W, np.float64)
        dba = np.zeros(W, np.float64)
        gy = np.zeros(W, A.dtype)
        y = np.zeros(W, A.dtype)
        dzt = np.zeros(W, A.dtype)
        ddt = np.zeros(W, A.dtype)
        dut = np.zeros(W, A.dtype)
        pB = np.zeros(W, A.dtype)
        pC = np.zeros(W, A.dtype)
        for blk in range(s, nblk, S):
            c0 = g * cpg + blk * W
            w = min(W, (g + 1) * cpg - c0)
            for c in range(W):
                Dv[c] = D[c0 + c] if c < w else 0.0
                dDa[c] = 0.0
                dba[c] = 0.0
                for n in range(N):
                    AT[n, c] = A[c0 + c, n] if c < w else 0.0
                    lam[n, c] = dlast[b, c0 + c, n] if (has_dlast
                                                        and c < w) else 0.0
                    dAa[n, c] = 0.0
            for k in range(n_chunks - 1, -1, -1):
                t0 = k * K
                t1 = min(t0 + K, L)
                m = t1 - t0
                _load_block(u, delta, z, dbias, b, c0, w, W, t0, t1, has_z,
                            softplus, True, U, DT, DTU, DS, Z)
                for c in range(W):
                    for i in range(m):
                        GO[i, c] = (dout[b, c0 + c, t0 + i]
                                    if (has_dout and c < w) else 0.0)
                    for n in range(N):
                        H[0, n, c] = ckpt[b, c0 + c, k, n] if c < w else 0.0
                # recompute the chunk's states from its checkpoint
                for i in range(m):
                    t = t0 + i
                    dt = DT[i]
                    dtu = DTU[i]
                    for n in range(N):
                        bn = Bt[b, g, t, n]
                        an = AT[n]
                        hp = H[i, n]
                        hc = H[i + 1, n]
                        en = E[i, n]
                        for c in range(W):
                            e = vexp(dt[c] * an[c])
                            en[c] = e
                            hc[c] = e * hp[c] + dtu[c] * bn
                # adjoint recurrence, backwards in time. lam[n] enters step
                # t holding exp(dt[t+1] A[n]) * dL/dh[t+1, n]
                for i in range(m - 1, -1, -1):
                    t = t0 + i
                    dt = DT[i]
                    dtu = DTU[i]
                    uu = U[i]
                    go = GO[i]
                    if has_z:
                        for c in range(W):
                            y[c] = Dv[c] * uu[c] if has_D else 0.0
                        for n in range(N):
                            cn = Ct[b, g, t, n]
                            hc = H[i + 1, n]
                            for c in range(W):
                                y[c] += cn * hc[c]
                        zt = Z[i]
                        for c in range(W):
                            zz = zt[c]
                            sg = 1.0 / (1.0 + vexp(-zz))
                            dzt[c] = go[c] * y[c] * sg * (
                                1.0 + zz * (1.0 - sg))
                            gy[c] = go[c] * zz * sg
                        for c in range(W):
                            DZ[i, c] = dzt[c]
                    else:
                        for c in range(W):
                            gy[c] = go[c]
                    for c in range(W):
                        dut[c] = Dv[c] * gy[c]
                        dDa[c] += gy[c] * uu[c]
                        ddt[c] = 0.0
                    for n in range(N):
                        bn = Bt[b, g, t, n]
                        cn = Ct[b, g, t, n]
                        an = AT[n]
                        hp = H[i, n]
                        hc = H[i + 1, n]
                        ln_ = lam[n]
                        dac = dAc[n]
                        en = E[i, n]
                        for c in range(W):
                            e = en[c]
                            ln = ln_[c] + gy[c] * cn
                            x = ln * hp[c] * e  # dL/d(dt * A[n])
                            ddt[c] += x * an[c] + ln * bn * uu[c]
                            dac[c] += x * dt[c]
                            dut[c] += ln * dt[c] * bn
                            pB[c] = ln * dtu[c]
                            pC[c] = gy[c] * hc[c]
                            ln_[c] = ln * e
                        dBp[s, b, g, t, n] += _sum_lanes(pB, W)
                        dCp[s, b, g, t, n] += _sum_lanes(pC, W)
                    if softplus:
                        for c in range(W):
                            ddt[c] = ddt[c] * DS[i, c]
                    for c in range(W):
                        dba[c] += ddt[c]
                    for c in range(W):
                        DU[i, c] = dut[c]
                        DDL[i, c] = ddt[c]
                # write the chunk's du, ddelta, dz row by row
                for c in range(w):
                    d = c0 + c
                    for i in range(m):
                        du[b, d, t0 + i] = DU[i, c]
                        ddelta[b, d, t0 + i] = DDL[i, c]
                    if has_z:
                        for i in range(m):
                            dz[b, d, t0 + i] = DZ[i, c]
                # chunk sums of dA in T, the total in float64
                for n in range(N):
                    for c in range(W):
                        dAa[n, c] += dAc[n, c]
                        dAc[n, c] = 0.0
            for c in range(w):
                for n in range(N):
                    dA_acc[b, c0 + c, n] = dAa[n, c]
                dD_acc[b, c0 + c] = dDa[c]
                dbias_acc[b, c0 + c] = dba[c]
