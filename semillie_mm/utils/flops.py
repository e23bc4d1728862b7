"""Parameters and FLOPs with the selective scans counted.

FLOP counters that trace the model (fvcore, mmengine's ``FlopAnalyzer``,
thop's hooks) do not see inside a custom kernel: mamba-ssm's CUDA scan and
our numba CPU scan count as zero, and tracing the pure-PyTorch reference
scan would record ``L`` small steps (65 536 at 256x256). Here:

- the layers are counted by mmengine's :class:`~mmengine.analysis.FlopAnalyzer`
  (fvcore's counter: convolutions, linear layers, matmul, norms;
  **one multiply-add = one FLOP**, i.e. the figures are MACs, fvcore's and
  most papers' convention; element-wise activations are not counted), with an
  exact handle for two-operand ``einsum`` (SS2D's projections; mmengine's
  reads numpy's count rounded to 4 digits);
- every call of :func:`semillie_mm.ops.selective_scan` is, while counting,
  replaced by a stand-in autograd function (``SelectiveScanCount``: same
  output shape, trivial arithmetic) that the tracer records as one op,
  ``prim::PythonOp.SelectiveScanCount``; a handle registered for that op
  returns the analytic count from the traced shapes (:func:`scan_macs`).

Analytic count of one scan call with ``u`` of shape (batch, dim, L) and
``A`` of shape (dim, N): per (batch, channel, step, state) 5 MACs --
``dt * A`` (the argument of ``exp``), ``dt * B * u`` (2), the state update
``h = exp(dt A) h + dt B u`` (1) and ``y += C h`` (1); plus 1 per
(batch, channel, step) for the skip ``D * u`` when ``D`` is given and 1 for
the gate ``y * silu(z)`` when ``z`` is given::

    MACs = batch * dim * L * (5 N + [D given] + [z given])

``exp``, ``softplus`` and ``silu`` are not counted, as the counter does not
count activations elsewhere. ``by_operator`` keeps the recurrence
(``5 N`` per element, :data:`SCAN_COUNT_NAME`) apart from the skip and gate
(:data:`SCAN_SKIP_NAME`).

:func:`count_macs` is the narrower count of the products alone (convolutions,
linear layers, einsums and matrix products, the scans' recurrence): the
figure that a matrix-product rate turns into a time floor
(``benchmarks/bench_cpu_path.py``'s "sgemm floor"). The count does not depend on the backend: SS2D's
fused CPU kernel (which also computes the directions' projections in C++) is
switched off while counting, so its projections are counted as the einsums of
the unfused path, which does the same arithmetic.
"""
import importlib
import sys
from collections import Counter
from contextlib import contextmanager
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

#: the op name under which the tracer records a counted scan
SCAN_OP_NAME = 'prim::PythonOp.SelectiveScanCount'
#: the name of the scans' recurrence (5 N per element) in
#: ``FlopAnalyzer.by_operator()``
SCAN_COUNT_NAME = 'selective_scan'
#: the name of the scans' skip ``D * u`` and gate ``z`` in ``by_operator()``
SCAN_SKIP_NAME = 'selective_scan_skip'
#: the operators :func:`count_macs` adds up: products only
PRODUCT_OPERATORS = ('conv', 'linear', 'einsum', 'matmul', 'bmm',
                     SCAN_COUNT_NAME)


def scan_macs(u_shape: Sequence[int],
              a_shape: Sequence[int],
              has_d: bool = True,
              has_z: bool = False) -> int:
    """Analytic multiply-accumulates of one selective-scan call.

    Args:
        u_shape (sequence[int]): shape of ``u``, (batch, dim, L).
        a_shape (sequence[int]): shape of ``A``, (dim, N).
        has_d (bool): whether the skip ``D`` is given.
        has_z (bool): whether the gate ``z`` is given.

    Returns:
        int: ``batch * dim * L * (5 N + has_d + has_z)``.
    """
    batch, dim, length = (int(s) for s in u_shape)
    n_state = int(a_shape[1])
    return batch * dim * length * (5 * n_state + int(has_d) + int(has_z))


class SelectiveScanCount(torch.autograd.Function):
    """Traceable stand-in of the selective scan used only while counting.

    Its forward returns a tensor of the scan's output shape computed with
    one element-wise op, so tracing is instant; the tracer records it as a
    single ``prim::PythonOp.SelectiveScanCount`` node whose inputs are
    ``u, delta, A, B, C, D, z`` (an empty tensor for a missing ``D``/``z``).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z):  # noqa: D102
        return u * 1.0

    @staticmethod
    def backward(ctx, grad):  # noqa: D102 -- never used
        return grad, None, None, None, None, None, None


def _counting_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                   delta_softplus=False, return_last_state=False,
                   backend=None):
    """Drop-in for :func:`selective_scan` that the tracer can count."""
    empty = u.new_zeros(0)
    out = SelectiveScanCount.apply(u, delta, A, B, C,
                                   empty if D is None else D,
                                   empty if z is None else z)
    if return_last_state:
        last = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
        return out, last
    return out


@contextmanager
def counting_selective_scan():
    """Replace :func:`semillie_mm.ops.selective_scan` by the counting
    stand-in in every loaded module that imported it, then restore it.

    Yields:
        list: one entry (the shape of ``u``) per scan call made meanwhile.
    """
    # the package, not ``semillie_mm.ops.selective_scan``'s attribute chain
    # (which ends at the function of the same name)
    scan_pkg = importlib.import_module('semillie_mm.ops.selective_scan')
    original = scan_pkg.selective_scan
    calls = []

    def counting(u, *args, **kwargs):
        calls.append(tuple(u.shape))
        return _counting_scan(u, *args, **kwargs)

    patched = []
    for module in list(sys.modules.values()):
        if module is None:
            continue
        try:
            if getattr(module, 'selective_scan', None) is original:
                patched.append(module)
        except Exception:  # noqa: BLE001 -- lazy modules may raise
            continue
    for module in patched:
        module.selective_scan = counting
    try:
        yield calls
    finally:
        for module in patched:
            module.selective_scan = original


def _never(*args, **kwargs) -> bool:
    return False


def _einsum_handle(inputs, outputs):
    """Exact MACs of a two-operand ``einsum``: the product of the sizes of all
    its distinct indices (each output element sums over the contracted
    ones). mmengine's generic einsum handle reads numpy's rounded
    "Optimized FLOP count" (4 significant digits); other forms go to it."""
    from mmengine.analysis.jit_handles import einsum_flop_jit, get_shape
    equation = inputs[0].toIValue().replace(' ', '')
    shapes = [get_shape(v) for v in inputs[1].node().inputs()]
    lhs = equation.split('->')[0].split(',')
    if len(lhs) != 2 or '.' in equation or len(shapes) != 2:
        return einsum_flop_jit(inputs, outputs)
    sizes = {}
    for letters, shape in zip(lhs, shapes):
        if len(letters) != len(shape):
            return einsum_flop_jit(inputs, outputs)
        for letter, size in zip(letters, shape):
            sizes[letter] = int(size)
    total = 1
    for size in sizes.values():
        total *= size
    return total


def _scan_handle(inputs, outputs) -> Counter:
    """FlopAnalyzer handle for ``SelectiveScanCount`` nodes."""
    from mmengine.analysis.jit_handles import get_shape
    shapes = [get_shape(v) for v in inputs]
    u_shape, a_shape = shapes[0], shapes[2]
    has_d = bool(shapes[5]) and shapes[5][0] > 0
    has_z = bool(shapes[6]) and shapes[6][0] > 0
    total = scan_macs(u_shape, a_shape, has_d, has_z)
    state = scan_macs(u_shape, a_shape, False, False)
    return Counter({SCAN_COUNT_NAME: state, SCAN_SKIP_NAME: total - state})


def count_flops(model: nn.Module,
                inputs: Tuple[torch.Tensor, ...]) -> Dict[str, object]:
    """Parameters and MACs of ``model(*inputs)`` with the scans counted.

    Args:
        model (nn.Module): the network (in eval mode while counting).
        inputs (tuple[Tensor]): its forward arguments.

    Returns:
        dict: ``params`` (int), ``flops`` (int, total MACs), ``flops_scan``
        (int, the selective scans' share), ``flops_layers`` (int, the rest),
        ``scan_calls`` (int), ``by_module`` (dict of MACs by module
        name, '' for the whole model) and ``by_operator`` (dict of MACs by
        operator: 'conv', 'linear', 'einsum', 'layer_norm', ...,
        :data:`SCAN_COUNT_NAME`, :data:`SCAN_SKIP_NAME`).
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count
    was_training = model.training
    model.eval()
    # SS2D's fused CPU kernel also does the four directions' projections
    # inside C++, where the counter cannot see them: count the unfused path
    # (same arithmetic, the projections as einsums + one scan call)
    unfused = [m for m in model.modules() if hasattr(m, '_use_fused')]
    for m in unfused:
        m._use_fused = _never
    try:
        with counting_selective_scan() as calls, torch.no_grad():
            analyzer = FlopAnalyzer(model, inputs)
            analyzer.set_op_handle(SCAN_OP_NAME, _scan_handle)
            analyzer.set_op_handle('aten::einsum', _einsum_handle)
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            analyzer.tracer_warnings('none')
            total = int(analyzer.total())
            by_operator = dict(analyzer.by_operator())
            by_module = dict(analyzer.by_module())
    finally:
        model.train(was_training)
        for m in unfused:
            del m._use_fused
    scan_total = int(by_operator.get(SCAN_COUNT_NAME, 0) +
                     by_operator.get(SCAN_SKIP_NAME, 0))
    return dict(
        params=int(parameter_count(model)['']),
        flops=total,
        flops_scan=scan_total,
        flops_layers=total - scan_total,
        scan_calls=len(calls),
        by_module=by_module,
        by_operator={k: int(v) for k, v in by_operator.items()})


def count_macs(model: nn.Module, inputs: Tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of the products of ``model(*inputs)``.

    The sum of :func:`count_flops`'s ``by_operator`` over
    :data:`PRODUCT_OPERATORS`: every convolution (output elements x
    in_channels / groups x kernel area), linear layer (output elements x
    in_features), einsum and matrix product (SS2D's projections), and 5 MACs
    per (batch, channel, step, state) of each selective scan; norms,
    pooling, the scans' skip and gate and other element-wise operations are
    not counted. The module-by-module path runs while counting (under the
    tracer), so layers that the no-grad or memory-lean paths apply through
    their weights are counted too.

    Args:
        model (nn.Module): the network (its mode is restored afterwards).
        inputs (tuple[Tensor]): its forward arguments.

    Returns:
        int: the MACs.
    """
    by_operator = count_flops(model, inputs)['by_operator']
    return sum(by_operator.get(k, 0) for k in PRODUCT_OPERATORS)


def build_model_from_config(cfg, part: Optional[str] = None) -> nn.Module:
    """Build the network to count from an mmagic/semillie config.

    Args:
        cfg (mmengine.Config): the config.
        part (str, optional): key of a sub-network of ``cfg.model`` to
            build alone (default: ``'generator'`` when the model has one --
            the network that runs at test time -- else the whole model).

    Returns:
        nn.Module: the network, in eval mode.
    """
    import semillie_mm  # noqa: F401  (registers the modules)

    from mmagic.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmagic'))
    model_cfg = cfg.model
    if part is None and 'generator' in model_cfg:
        part = 'generator'
    if part:
        if part not in model_cfg:
            raise KeyError(part)
        model_cfg = model_cfg[part]
    return MODELS.build(model_cfg).eval()
