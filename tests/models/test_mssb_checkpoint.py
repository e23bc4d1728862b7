"""MSSB's ``with_cp``: same output and gradients, fewer saved activations."""
from semillie_mm.models.archs.mssb import MSSB

import torch


def saved_bytes(fn):
    """Bytes of the distinct storages autograd saves while running fn."""
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def test_with_cp_matches_and_saves_less():
    torch.manual_seed(0)
    ref = MSSB(16, d_state=4, scan_backend='reference').double()
    ckp = MSSB(16, d_state=4, scan_backend='reference', with_cp=True).double()
    ckp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 6, 5, 16, dtype=torch.float64)
    outs, grads, sizes = [], [], []
    for m in (ref, ckp):
        xi = x.clone().requires_grad_()
        y, nbytes = saved_bytes(lambda: m(xi))
        y.square().sum().backward()
        outs.append(y)
        grads.append([xi.grad] + [p.grad for p in m.parameters()])
        sizes.append(nbytes)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert sizes[1] < sizes[0] / 2
