"""AdamP (Heo et al., ICLR 2021) in mmagic's OPTIMIZERS registry.

The optimizer itself comes from the ``adamp`` package (the authors' release); only
the registration is ours, so configs can say ``optimizer=dict(type='AdamP', ...)``.
"""
from mmagic.registry import OPTIMIZERS

try:
    from adamp import SGDP, AdamP
except ImportError:  # pragma: no cover - adamp is a runtime requirement
    AdamP = SGDP = None

if AdamP is not None:
    for _cls in (AdamP, SGDP):
        if OPTIMIZERS.get(_cls.__name__) is None:
            OPTIMIZERS.register_module(module=_cls)
