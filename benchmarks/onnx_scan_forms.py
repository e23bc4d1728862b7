"""Which form of the selective scan to export to ONNX: accuracy and graph
size of three forms (no timing).

    python benchmarks/onnx_scan_forms.py [--dim 64] [--d-state 16]
        [--length 1961] [--chunk 16]

Forms, each exported with dynamic length by the TorchScript ONNX exporter
and run by ONNX Runtime:

- ``loop``: the recurrence step by step, one ONNX ``Loop``
  (:mod:`semillie_mm.ops.selective_scan.backends.exportable`, what the
  export uses);
- ``chunked``: chunks of ``--chunk`` steps in closed form (pairwise decays
  ``exp(A (cs[t] - cs[s]))`` from a CumSum, summed against ``C B``), a
  ``Loop`` over the chunks carrying the state;
- ``factorised``: ``exp(A cs[t]) * cumsum(exp(-A cs[s]) x[s])`` over the
  whole sequence, no loop.

Printed: the max absolute error against the float64 reference (PyTorch and
ONNX Runtime), at the inputs' ``dt`` and at 4x larger ``dt``, the node count
(subgraphs included) and the file size. Results: docs/enhance.md, "ONNX".
"""
import argparse
import os
import os.path as osp
import tempfile
import warnings

import numpy as np


def _forms(chunk):
    from semillie_mm.ops.selective_scan.backends import exportable

    import torch
    import torch.nn.functional as F
    from torch import Tensor

    def chunk_loop(dt: Tensor, dtu: Tensor, A: Tensor, Bs: Tensor,
                   Cs: Tensor) -> Tensor:
        # dt, dtu: (chunks, T, b, D); A: (D, N); Bs, Cs: (chunks, T, b, N)
        T = dt.size(1)
        h = torch.zeros([dt.size(2), dt.size(3), A.size(1)], dtype=dt.dtype)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        ys = []
        for c in range(dt.size(0)):
            cs = torch.cumsum(dt[c], 0)  # (T, b, D)
            seg = cs.unsqueeze(1) - cs.unsqueeze(0)  # (t, s, b, D)
            seg = torch.where(mask[:, :, None, None], seg,
                              torch.full_like(seg, float('inf')))
            dec = torch.exp(seg.unsqueeze(-1) * A)  # (t, s, b, D, N)
            CB = Cs[c].unsqueeze(1) * Bs[c].unsqueeze(0)  # (t, s, b, N)
            y = (dec * CB.unsqueeze(3) *
                 dtu[c].unsqueeze(0).unsqueeze(-1)).sum(-1).sum(1)
            decay0 = torch.exp(cs.unsqueeze(-1) * A)  # (T, b, D, N)
            y = y + (decay0 * h.unsqueeze(0) * Cs[c].unsqueeze(2)).sum(-1)
            last = torch.exp((cs[-1].unsqueeze(0) - cs).unsqueeze(-1) * A)
            h = decay0[-1] * h + (last * (dtu[c].unsqueeze(-1) *
                                          Bs[c].unsqueeze(2))).sum(0)
            ys.append(y)
        return torch.cat(ys, 0)

    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        chunk_loop = torch.jit.script(chunk_loop)

    def chunked(u, delta, A, B, C, D, bias):
        b, d, L = u.shape
        dt = F.softplus(delta + bias[:, None])
        pad = (-L) % chunk
        n = (L + pad) // chunk

        def split(t):  # (b, c, L) -> (chunks, T, b, c)
            return F.pad(t, (0, pad)).permute(2, 0, 1).reshape(
                n, chunk, b, -1)

        ys = chunk_loop(split(dt), split(dt * u), A, split(B), split(C))
        return ys[:L].permute(1, 2, 0) + D[:, None] * u

    def factorised(u, delta, A, B, C, D, bias):
        dt = F.softplus(delta + bias[:, None])
        P = torch.cumsum(dt, -1).unsqueeze(-1) * A[:, None]
        x = (dt * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)
        h = torch.exp(P) * torch.cumsum(torch.exp(-P) * x, 2)
        return (h * C.transpose(1, 2).unsqueeze(1)).sum(-1) + D[:, None] * u

    def loop(u, delta, A, B, C, D, bias):
        return exportable.selective_scan_exportable(
            u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True)

    return dict(loop=loop, chunked=chunked, factorised=factorised)


def _nodes(graph):
    return sum(1 + sum(_nodes(a.g) for a in n.attribute if a.g.node)
               for n in graph.node)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--d-state', type=int, default=16)
    parser.add_argument('--length', type=int, default=37 * 53)
    parser.add_argument('--chunk', type=int, default=16)
    args = parser.parse_args(argv)
    import semillie_mm  # noqa: F401
    from semillie_mm.ops.selective_scan import selective_scan_reference

    import onnx
    import onnxruntime as ort
    import torch

    class Scan(torch.nn.Module):

        def __init__(self, fn, A, D, bias):
            super().__init__()
            self.fn, self.A, self.D, self.bias = fn, A, D, bias

        def forward(self, u, delta, B, C):
            return self.fn(u, delta, self.A, B, C, self.D, self.bias)

    g = torch.Generator().manual_seed(0)
    d, N, L = args.dim, args.d_state, args.length
    u, delta = (torch.randn(1, d, L, generator=g) for _ in range(2))
    B, C = (torch.randn(1, N, L, generator=g) for _ in range(2))
    A = -torch.arange(1, N + 1.).repeat(d, 1)  # SS2D's initial A
    D, bias = torch.randn(d, generator=g), torch.randn(d, generator=g)
    rows = []
    tmp = tempfile.mkdtemp(prefix='onnx_scan_forms_')
    for name, fn in _forms(args.chunk).items():
        row = dict(form=name)
        for scale in (1., 4.):
            args64 = [t.double() for t in (u, delta * scale, A, B, C, D,
                                           bias)]
            ref = selective_scan_reference(
                *args64[:5], D=args64[5], delta_bias=args64[6],
                delta_softplus=True).float().numpy()
            with torch.no_grad():
                out = fn(u, delta * scale, A, B, C, D, bias).numpy()
            row[f'torch_err_dt{scale:g}'] = float(np.abs(out - ref).max())
            if scale == 1.:
                path = osp.join(tmp, f'{name}.onnx')
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    torch.onnx.export(
                        Scan(fn, A, D, bias), (u, delta, B, C), path,
                        dynamo=False, opset_version=17,
                        input_names=['u', 'delta', 'B', 'C'],
                        dynamic_axes={k: {2: 'L'}
                                      for k in ('u', 'delta', 'B', 'C')})
                model = onnx.load(path)
                onnx.checker.check_model(model)
                opts = ort.SessionOptions()
                opts.log_severity_level = 3
                sess = ort.InferenceSession(path, opts,
                                            providers=['CPUExecutionProvider'])
                got = sess.run(None, dict(u=u.numpy(), delta=delta.numpy(),
                                          B=B.numpy(), C=C.numpy()))[0]
                row.update(ort_err_dt1=float(np.abs(got - ref).max()),
                           nodes=_nodes(model.graph),
                           bytes=os.path.getsize(path))
                os.remove(path)
        rows.append(row)
        print(f"{name:10s} err vs float64: ORT {row['ort_err_dt1']:.1e}, "
              f"torch {row['torch_err_dt1']:.1e}, torch at dt x4 "
              f"{row['torch_err_dt4']:.1e}; {row['nodes']} nodes, "
              f"{row['bytes'] / 1e3:.0f} kB", flush=True)
    os.rmdir(tmp)
    return rows


if __name__ == '__main__':
    main()
