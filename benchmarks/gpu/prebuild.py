"""Prebuild, here, the binaries the GPU check needs, so that nothing compiles on the device.

Run with a Python that matches the device image (3.12, torch 2.11.0+cu130: the same wheel
from the package index) and a CUDA 13 toolkit (``nvcc``); tools/prepare_gpu_carry.sh calls
it when ``PREBUILD_PYTHON`` names such an interpreter::

    PREBUILD_PYTHON=/path/to/py312-torch211/bin/python bash tools/prepare_gpu_carry.sh

It writes into ``CARRY/prebuilt/``, in the format benchmarks/gpu_check.py's set-up steps
unpack (``prebuilt_mmcv.tar.xz``, ``prebuilt_selective_scan.tar.xz``; shared libraries
stripped of debug sections; each with a ``PREBUILT_KEY`` naming the torch, CUDA, Python and
GPU architecture it fits):

- mmcv 2.1.0 with CPU ops (``gpu_check.compile_mmcv``: mmdet's and mmagic's registries
  import ``mmcv._ext``);
- mamba-ssm's ``selective_scan_cuda`` for sm_90, real A
  (:func:`gpu.build_selective_scan.build`).

A part whose ``PREBUILT_KEY`` already matches is kept. The device still compiles a part
whose key does not match its torch (and says so in its report).
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import gpu_check  # noqa: E402
from gpu.build_selective_scan import build  # noqa: E402

PARTS = ('mmcv', 'selective_scan')


def existing_key(carry: str, part: str):
    """The PREBUILT_KEY of a packed part in CARRY/prebuilt, or None."""
    import tarfile
    path = osp.join(carry, 'prebuilt', gpu_check.PREBUILT[part])
    if not osp.isfile(path):
        return None
    with tarfile.open(path) as tar:
        try:
            member = tar.extractfile('./PREBUILT_KEY')
        except KeyError:
            return None
        return member.read().decode() if member else None


def prebuild(carry: str, work: str, parts=PARTS, jobs: int = 0,
             arch: str = '9.0') -> dict:
    """Build the missing parts and pack them into CARRY/prebuilt.

    Args:
        carry (str): folder made by tools/prepare_gpu_carry.sh (src/ holds the
            mmcv and mamba-ssm source packages).
        work (str): build folder (kept: a rerun reuses the selective-scan
            objects).
        parts (tuple[str]): which of ``PARTS``.
        jobs (int): compile jobs; 0 = all cores.
        arch (str): ``TORCH_CUDA_ARCH_LIST`` of the kernel.

    Returns:
        dict: part -> what was done (key, seconds, packed size).
    """
    out = osp.join(carry, 'prebuilt')
    os.makedirs(out, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    ctx = dict(carry=carry, work=work, out=out, jobs=jobs or os.cpu_count(),
               env=dict(os.environ), log=osp.join(work, 'prebuild.log'))
    done = {}
    torch_key = gpu_check._torch_key()
    for part in parts:
        key = torch_key if part == 'mmcv' else f'{torch_key} arch {arch}'
        if existing_key(carry, part) == key:
            done[part] = dict(key=key, kept=True)
            continue
        t0 = time.perf_counter()
        if part == 'mmcv':
            target = osp.join(work, 'mmcv_site')
            shutil.rmtree(target, ignore_errors=True)
            gpu_check.compile_mmcv(ctx, target)
            folder = target
        else:
            folder = osp.join(work, 'selective_scan')
            sdist = [f for f in os.listdir(osp.join(carry, 'src'))
                     if f.startswith('mamba_ssm-')][0]
            build(osp.join(carry, 'src', sdist), folder, arch=arch,
                  jobs=ctx['jobs'], verbose=False)
        note = gpu_check._export_prebuilt(ctx, part, folder, key)
        done[part] = dict(key=key, seconds=round(time.perf_counter() - t0, 1),
                          export=note)
        print(f'[prebuild] {part}: {note}', flush=True)
    return done


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--carry', default=osp.join(ROOT, '.gpu_carry'))
    parser.add_argument('--work', default=osp.join(ROOT, '.gpu_prebuild'))
    parser.add_argument('--parts', default=','.join(PARTS))
    parser.add_argument('--jobs', type=int, default=0)
    parser.add_argument('--arch', default='9.0')
    args = parser.parse_args()
    parts = tuple(p for p in args.parts.split(',') if p)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f'prebuild: unknown part(s) {sorted(unknown)}; '
                         f'parts: {PARTS}')
    print(json.dumps(prebuild(osp.abspath(args.carry), osp.abspath(args.work),
                              parts, args.jobs, args.arch), indent=1))


if __name__ == '__main__':
    main()
