# Copyright (c) semillie-mm contributors. All rights reserved.
"""What the scan implementations share: the compute dtype, argument
preparation of the CPU kernels ('native' and 'numba'), their checkpoint
interval (:func:`chunk_size`, every CPU kernel: 'native', 'numba' and SS2D's
fused one) and the work split of the backward's partial buffers
(:func:`num_slots`)."""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor


def compute_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """The dtype the scan is computed in for inputs of ``dtype``.

    float64 inputs are computed in float64; everything else (float32,
    float16, bfloat16) in float32, like mamba-ssm's kernel.

    Args:
        dtype (torch.dtype): dtype of ``u``.

    Returns:
        torch.dtype: float64 or float32.
    """
    return torch.float64 if dtype == torch.float64 else torch.float32


def kernel_args(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                D: Optional[Tensor], z: Optional[Tensor],
                delta_bias: Optional[Tensor]
                ) -> Tuple[List[Optional[Tensor]], bool]:
    """The inputs of a CPU kernel: cast to the compute dtype (float64 for
    float64 ``u``, else float32), B and C with one group count.

    The kernels take a single number of groups for B and C: where they
    differ, both are repeated to the least common multiple (autograd sums
    their gradients back).

    Args:
        u, delta, A, B, C, D, z, delta_bias: as :func:`selective_scan`.

    Returns:
        tuple[list, bool]: ``[u, delta, A, B, C, D, z, delta_bias]`` (None
        where absent) and whether a gradient is needed.
    """
    cdt = compute_dtype_for(u.dtype)
    groups_B = B.shape[1] if B.dim() == 4 else 1
    groups_C = C.shape[1] if C.dim() == 4 else 1
    if groups_B != groups_C:
        groups = math.lcm(groups_B, groups_C)
        B = (B if B.dim() == 4 else B.unsqueeze(1)).repeat_interleave(
            groups // groups_B, dim=1)
        C = (C if C.dim() == 4 else C.unsqueeze(1)).repeat_interleave(
            groups // groups_C, dim=1)
    args = [None if x is None else x.to(cdt)
            for x in (u, delta, A, B, C, D, z, delta_bias)]
    need_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in args)
    return args, need_grad


def chunk_size(length: int) -> int:
    """Checkpoint interval of the CPU kernels' backward: ceil(sqrt(L)), at
    most 128 (the per-thread recompute buffers then stay in L2).

    The forward stores the state entering every chunk of K steps
    (``ceil(L / K)`` states per channel), the backward recomputes one chunk
    at a time into a K x N buffer per thread. K changes memory and speed,
    never the numbers (the recomputation repeats the forward's arithmetic).

    Args:
        length (int): sequence length L (H * W for SS2D).

    Returns:
        int: K >= 1.
    """
    return max(1, min(128, math.isqrt(max(length - 1, 0)) + 1))


def cpp_blocks(channels: int, dtype: torch.dtype) -> int:
    """Blocks of channels the C++ kernels vectorise over: 16 lanes in
    float32, 8 in float64 (one AVX-512 register).

    Args:
        channels (int): channels (of one group).
        dtype (torch.dtype): compute dtype.

    Returns:
        int: ``ceil(channels / lanes)``.
    """
    lanes = 16 if dtype == torch.float32 else 8
    return -(-channels // lanes)


def num_slots(batch: int, groups: int, blocks: int, threads: int) -> int:
    """Partial buffers per (batch, group) of the backward's sums over
    channels (dB/dC of the plain scan, d xdbl of SS2D's fused one, which has
    one group).

    Enough (slot, batch, group) work items to keep ``threads`` busy, at most
    one slot per block of channels of a group; 1 (no extra buffer) whenever
    ``batch * groups >= threads``.

    Args:
        batch (int): batch size.
        groups (int): groups of B/C.
        blocks (int): blocks of channels (work units) per group.
        threads (int): worker threads.

    Returns:
        int: S >= 1.
    """
    return max(1, min(blocks, -(-threads // (batch * groups))))
