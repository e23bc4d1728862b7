# Copyright (c) semillie-mm contributors. All rights reserved.
"""What the CPU scan kernels share: argument preparation ('native' and
'numba'), the work split of the backward's dB/dC partial buffers, the
checkpoint interval of the C++ kernels ('native' and SS2D's fused one)."""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .reference import compute_dtype_for


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
    """Checkpoint interval of the C++ kernels' backward: ceil(sqrt(L)), at
    most 128 (the per-thread recompute buffers then stay in L2).

    Args:
        length (int): sequence length L (H * W for SS2D).

    Returns:
        int: K >= 1.
    """
    return max(1, min(128, math.isqrt(max(length - 1, 0)) + 1))


def num_slots(batch: int, groups: int, blocks: int, threads: int) -> int:
    """Partial dB/dC buffers per (batch, group) in the backward.

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
