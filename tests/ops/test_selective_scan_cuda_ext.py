"""cuda_ext.py: the autograd wrapper over a standalone selective_scan_cuda module.

The compiled kernel needs a GPU, so the module is played here by a stand-in that keeps
the kernel's calling convention (mamba-ssm 2.x selective_scan.cpp: 4-d B/C only,
``fwd`` -> [out, x(, out_z)] with the last state at ``x[:, :, -1, 1::2]``, ``bwd`` ->
[du, ddelta, dA, dB, dC, dD, ddelta_bias(, dz)]) and computes with the float64
reference; the wrapper's results must then be the reference's, gradients included.
The kernel itself is checked on a GPU by benchmarks/gpu_check.py (docs/benchmarks.md).
"""
from semillie_mm.ops.selective_scan.backends.cuda_ext import make_extension_scan_fn
from semillie_mm.ops.selective_scan.backends.reference import selective_scan_reference as ref

import pytest
import torch
import torch.nn.functional as F

ARGS = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')


class KernelConvention:
    """Stand-in for the compiled module (asserts the layout it is given)."""

    @staticmethod
    def fwd(u, delta, A, B, C, D, z, delta_bias, softplus):
        assert B.dim() == 4 and C.dim() == 4
        assert all(t.stride(-1) == 1 for t in (u, delta, B, C))
        y, last = ref(u, delta, A, B, C, D=D, delta_bias=delta_bias,
                      delta_softplus=softplus, return_last_state=True)
        b, d, _ = u.shape
        x = torch.zeros(b, d, 1, 2 * A.shape[1], dtype=A.dtype)
        x[..., 1::2] = last[:, :, None, :]
        return [y, x] + ([y * F.silu(z)] if z is not None else [])

    @staticmethod
    def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, softplus,
            recompute_out_z):
        assert B.dim() == 4 and dz is None and recompute_out_z is False
        assert out is not None and x is not None
        leaves = [None if t is None else t.detach().requires_grad_()
                  for t in (u, delta, A, B, C, D, z, delta_bias)]
        with torch.enable_grad():
            o = ref(*leaves[:5], D=leaves[5], z=leaves[6],
                    delta_bias=leaves[7], delta_softplus=softplus)
            o.backward(dout)
        g = [None if t is None else t.grad for t in leaves]
        return g[:6] + [g[7]] + ([g[6]] if z is not None else [])


@pytest.mark.parametrize('groups', [0, 2])
@pytest.mark.parametrize('with_z', [False, True])
def test_wrapper_matches_reference(groups, with_z):
    torch.manual_seed(groups + 2 * with_z)
    b, d, n, L = 2, 8, 4, 13
    bc = (b, groups, n, L) if groups else (b, n, L)

    def leaf(*shape):
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    x = dict(u=leaf(b, d, L), delta=leaf(b, d, L),
             A=(-torch.rand(d, n, dtype=torch.float64)).requires_grad_(),
             B=leaf(*bc), C=leaf(*bc), D=leaf(d),
             z=leaf(b, d, L) if with_z else None, delta_bias=leaf(d))
    inputs = [x[k] for k in ARGS if x[k] is not None]
    fn = make_extension_scan_fn(KernelConvention)
    kw = dict(D=x['D'], z=x['z'], delta_bias=x['delta_bias'],
              delta_softplus=True, return_last_state=True)
    out, last = fn(x['u'], x['delta'], x['A'], x['B'], x['C'], **kw)
    out_r, last_r = ref(x['u'], x['delta'], x['A'], x['B'], x['C'], **kw)
    torch.testing.assert_close(out, out_r)
    torch.testing.assert_close(last, last_r)
    assert not last.requires_grad  # as mamba-ssm: no gradient via last_state
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, inputs, g)
    grads_r = torch.autograd.grad(out_r, inputs, g)
    for a, e in zip(grads, grads_r):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e)
    plain = fn(x['u'], x['delta'], x['A'], x['B'], x['C'], D=x['D'])
    torch.testing.assert_close(
        plain, ref(x['u'], x['delta'], x['A'], x['B'], x['C'], D=x['D']))
