# Copyright (c) semillie-mm contributors. All rights reserved.
"""Kernel variants of the C++ scans, chosen at run time from the CPU.

The binary is compiled for the machine it is built on (``-march=native``),
but within one instruction set CPUs differ in what they do well: a Zen 5
executes 512-bit vector operations at full width, a Zen 4 splits each into
two 256-bit halves, an AVX2-only CPU has 16 vector registers instead of 32.
The d_state-16 tile of both scans (``scan16_run`` in ``csrc/scan_math.h``)
and the fused SS2D forward therefore take a *variant* at run time:

- ``lanes``: 16 = one 512-bit vector per state, 8 = the 16-channel block in
  two passes of 256-bit vectors;
- ``exp``: the exp2 sequence: 0 = clamped, ``vrndscaleps`` + ``vscalefps``
  (AVX-512), 1 = the same without the two clamps (``vscalefps`` saturates by
  itself), 2 = the portable magic-number form (without AVX-512 forms 0 and
  1 are this one), 3 = the table form: ``x`` rounded to eighths, ``2^(j/8)``
  from an 8-entry table by a lane permute, a degree-3 polynomial (three
  FMAs and a multiply where form 2 takes six and one; ``exp2_table`` in
  ``csrc/scan_math.h``);
- ``tile``: steps per tile of the fused SS2D forward;
- ``ahead``: its software-prefetch distance in tiles (0: none);
- ``pfy``: whether that prefetch also fetches the forward's output rows (for
  writing): 1 as first tuned on a Zen 5 (``issue10``); a Zen 4's forward
  ran 4-5 % faster without (8x128² and 1x256², AVX-512 build), the AVX2
  build's batch-1 forward 16 % faster, a Zen 5's within noise;
- ``bwd16``: the backward for d_state 16 in float32 (the fused SS2D
  kernel's and ``selective_scan()``'s): 0 = the generic per-step
  recomputation and adjoint (states, adjoints and per-step sums in memory,
  the channel sums by horizontal reductions), 1 = a register path with the
  recomputation's exp2 in the variant's form. With lanes 16 (AVX-512
  only; ``selective_scan()`` without the gate) the adjoints stay in
  registers through a chunk (``recompute16`` / ``adjoint16``); with lanes
  8, and on every build without AVX-512, 256-bit steps unrolled over the
  states with their sums in registers and the channel sums by a
  shuffle-and-add tree (``recompute_step16_v8`` / ``adjoint_step16_v8``;
  the AVX2 build's fwd+bwd 0.87-0.91x of ``bwd16 = 0``);
- ``spread``: where the scans' software prefetches of the lines the next
  block, tile or chunk reads are issued: 0 = all at once where a tile or
  block starts (as first tuned), 1 = a few a step from inside the
  recurrence (every ``selective_scan()``; the fused kernel with d_state 16
  in float32). All at once, a block's hundreds of lines outran the core's
  miss buffers: spread, ``selective_scan()``'s backward took 0.82-0.92x and
  the fused forward 0.84-0.93x at batch 1 (Zen 5; docs/benchmarks.md,
  "Session 15").

:func:`choose` picks the variant from ``/proc/cpuinfo`` (vendor, family,
flags) by the table :data:`VARIANTS`, measured with
``benchmarks/bench_kernel_variants.py``; ``SEMILLIE_KERNEL_VARIANT`` forces
one, by name (``zen4``) or by fields (``lanes=8,exp=1,bwd16=1``;
missing fields keep the chosen variant's). The extension's loader applies it
once (:func:`apply`); every variant gives the same numbers up to float32
rounding (the tests force each one against the reference).
"""
import os
from typing import Dict, Optional, Tuple

#: environment variable forcing a variant (a name of :data:`VARIANTS` or
#: ``field=value`` pairs)
VARIANT_ENV = 'SEMILLIE_KERNEL_VARIANT'

FIELDS = ('lanes', 'exp', 'tile', 'ahead', 'bwd16', 'pfy', 'spread')
#: what each field may be
ALLOWED = dict(lanes=(8, 16), exp=(0, 1, 2, 3), tile=(16, 32, 64, 128, 256),
               ahead=tuple(range(0, 9)), bwd16=(0, 1), pfy=(0, 1),
               spread=(0, 1))

#: the variants by name, each the fastest measured on its machine with
#: ``benchmarks/bench_kernel_variants.py`` (docs/benchmarks.md). A Zen 4 and
#: a Zen 5 were measured apart and the same fields won on both (on the Zen 5
#: the forward 0.79-0.80x and fwd+bwd 0.84-0.86x the time of ``issue10``;
#: ``pfy`` within noise there); ``issue10`` keeps the fields the kernels
#: were first tuned with on a Zen 5 (#10, before the unclamped exp2 and the
#: register backward existed; also the defaults compiled into the binary)
#: for comparison and for AVX-512 CPUs where it may still win
_AVX512_MEASURED = dict(lanes=16, exp=1, tile=64, ahead=2, bwd16=1, pfy=0,
                        spread=1)
VARIANTS: Dict[str, Dict[str, int]] = {
    'zen5': dict(_AVX512_MEASURED),
    # spread measured on a Zen 5 only (session 15); on a Zen 4 not yet
    'zen4': dict(_AVX512_MEASURED),
    # bwd16 measured with the AVX2 build on a Zen 5 (session 16); exp 3
    # (the table form) on an AVX2-only Zen 3 (session 20: kernels' forward
    # 0.88-0.91x, fwd+bwd 0.92-0.96x the time of exp 2)
    'avx2': dict(lanes=8, exp=3, tile=64, ahead=2, bwd16=1, pfy=0, spread=1),
    'issue10': dict(lanes=16, exp=0, tile=64, ahead=2, bwd16=0, pfy=1,
                    spread=0),
}
#: the variant of AVX-512 CPUs the table does not name (Zen 5, Intel)
DEFAULT = 'zen5'


def cpu_info(path: str = '/proc/cpuinfo') -> Dict[str, object]:
    """Vendor, family, model and flags of the first CPU.

    Args:
        path (str): the cpuinfo file (tests pass their own).

    Returns:
        dict: ``vendor`` (str), ``family`` and ``model`` (int, -1 unknown),
        ``flags`` (set of str).
    """
    info = dict(vendor='', family=-1, model=-1, flags=set())
    try:
        with open(path) as f:
            for line in f:
                if ':' not in line:
                    if info['flags']:
                        break  # the end of the first CPU
                    continue
                key, val = (s.strip() for s in line.split(':', 1))
                if key == 'vendor_id' and not info['vendor']:
                    info['vendor'] = val
                elif key == 'cpu family' and info['family'] == -1:
                    info['family'] = int(val)
                elif key == 'model' and info['model'] == -1:
                    info['model'] = int(val)
                elif key == 'flags' and not info['flags']:
                    info['flags'] = set(val.split())
    except (OSError, ValueError):
        pass
    return info


def choose(info: Optional[dict] = None,
           avx512_build: bool = True) -> Tuple[str, Dict[str, int]]:
    """The variant for a CPU and a binary.

    Args:
        info (dict, optional): :func:`cpu_info` (default: this machine's).
        avx512_build (bool): whether the binary was compiled with AVX-512
            (the module's ``avx512``; False for a build with
            ``-march=x86-64-v3`` on an AVX-512 CPU, the AVX2 proxy).

    Returns:
        tuple: (name, fields).
    """
    info = cpu_info() if info is None else info
    flags = info.get('flags', set())
    if 'avx512f' not in flags or not avx512_build:
        name = 'avx2'  # an AVX2 build: 16 vector registers, no vscalefps
    elif info.get('vendor') == 'AuthenticAMD' and info.get('family') == 25:
        name = 'zen4'  # 512-bit operations as two 256-bit halves
    else:
        name = DEFAULT  # Zen 5 (family 26) and any other AVX-512 CPU
    return name, dict(VARIANTS[name])


def parse(spec: str, base: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """A variant from its name or ``field=value`` pairs.

    Args:
        spec (str): e.g. ``'zen4'``, ``'lanes=8,exp=1'`` or
            ``'zen5,ahead=0'`` (a name, then changes to it).
        base (dict, optional): the fields not given (default: the
            :data:`DEFAULT` variant).

    Returns:
        dict: all the fields (:data:`FIELDS`).

    Raises:
        ValueError: an unknown name, field or value.
    """
    spec = spec.strip()
    if spec in VARIANTS:
        return dict(VARIANTS[spec])
    out = dict(base if base is not None else VARIANTS[DEFAULT])
    parts = spec.split(',')
    if parts[0].strip() in VARIANTS:  # a name, then changes to it
        out = dict(VARIANTS[parts.pop(0).strip()])
    for part in parts:
        if not part.strip():
            continue
        if '=' not in part:
            raise ValueError(
                f'{VARIANT_ENV}={spec!r}: {part.strip()!r} is neither a '
                f'variant ({", ".join(VARIANTS)}) nor field=value')
        key, val = (s.strip() for s in part.split('=', 1))
        if key not in ALLOWED:
            raise ValueError(f'{VARIANT_ENV}={spec!r}: unknown field {key!r} '
                             f'(fields: {", ".join(FIELDS)})')
        try:
            num = int(val)
        except ValueError:
            num = None
        if num not in ALLOWED[key]:
            raise ValueError(f'{VARIANT_ENV}={spec!r}: {key} must be one of '
                             f'{ALLOWED[key]}, got {val!r}')
        out[key] = num
    return out


def requested(avx512_build: bool = True) -> Tuple[str, Dict[str, int]]:
    """The variant this process should run: :data:`VARIANT_ENV` if set,
    else :func:`choose`.

    Args:
        avx512_build (bool): whether the binary has AVX-512 code.

    Returns:
        tuple: (name, or ``'<chosen>+<spec>'`` for a field list, fields).
    """
    name, fields = choose(avx512_build=avx512_build)
    spec = os.environ.get(VARIANT_ENV, '').strip()
    if not spec:
        return name, fields
    if spec in VARIANTS:
        return spec, dict(VARIANTS[spec])
    return f'{name}+{spec}', parse(spec, fields)


def apply(mod, fields: Optional[Dict[str, int]] = None) -> Dict[str, int]:
    """Set the extension's run-time variant.

    Args:
        mod: the loaded extension module.
        fields (dict, optional): the variant (default: :func:`requested`).

    Returns:
        dict: the variant now in effect.
    """
    if fields is None:
        fields = requested(bool(getattr(mod, 'avx512', True)))[1]
    # a binary from before a field was added takes the fields it has
    # (benchmarks/bench_ab_binaries.py loads older commits' binaries)
    n = len(mod.get_variant())
    mod.set_variant(*(int(fields[k]) for k in FIELDS[:n]))
    return current(mod)


def current(mod) -> Dict[str, int]:
    """The extension's variant in effect.

    Args:
        mod: the loaded extension module.

    Returns:
        dict: the fields (:data:`FIELDS`).
    """
    return dict(zip(FIELDS, (int(v) for v in mod.get_variant())))
