"""The prepared GPU check: set-up from carried files, then the CUDA path measured.

    bash benchmarks/gpu_check.sh [--dry-run] [--budget SECONDS] [--steps a,b] [--out DIR]

On a device machine (no network; see docs/benchmarks.md, "GPU check") it installs the
carried wheels and unpacks mmcv 2.1.0 (CPU ops) and mamba-ssm's selective-scan extension
(sm_90), both prebuilt here for the device's Python and torch
(benchmarks/gpu/prebuild.py; it compiles them only when no prebuilt copy fits, and says
so), then runs, one at a time:

- ``scan``: ``selective_scan`` 'cuda' and 'cpu' against the float64 reference on the
  GPU: forward, last state and every gradient, float32 / float16 / bfloat16, grouped
  and 3-d B/C, odd lengths;
- ``scan_speed``: the kernel's time at the SS2D size of a 256x256 image (after the
  builds);
- ``net``: the default SemiLLIENet on CUDA (forward at 256x256 and 1920x1080,
  forward + backward at batch 16 x 256x256 in float32 and with AMP), and the same
  weights through 'reference' and 'cuda' (output agreement);
- ``train_step``: one ``SemiLLIE.train_step`` of the paper configuration (random
  Swin-L RAM encoder, 8 + 8 images at 256x256);
- ``table3``: Table III on the target-domain benchmark at the paper's backbone and
  batch (``benchmarks/ablation.py --overlay configs/gpu/table3_paper_scale.py``: rows
  supervised only / + mean teacher / full method, 3 seeds, all side by side on the GPU),
  as many iterations as fit in what is left of ``--budget`` (priced by a 30-iteration
  probe of the same runs); its summary and the full method's seed-0 teacher weights go
  to OUT;
- ``net_reference``: SemiLLIENet through the 'reference' backend, for speed ratios.

(``numba_warmup`` compiles the 'cpu' backend's numba kernels meanwhile.) Every step
runs in its own process with its own time limit, all within ``--budget``;
results are written as they come to ``OUT/gpu_check.json`` (all numbers) and
``OUT/gpu_check.md`` (summary), logs to ``OUT/gpu_check.log``. OUT is ``--out``, else
``$OUT`` (the device tool's folder), else ``work_dirs/gpu_check``.

``--dry-run`` runs every step that can run here (small sizes, CPU backends, no
installs or builds) and says why the rest is skipped; its ``imports`` step checks that
every package ``import semillie_mm`` loads is carried or on the device image.
"""
import argparse
import datetime
import glob
import hashlib
import json
import os
import os.path as osp
import platform
import shutil
import signal
import subprocess
import sys
import time

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import harness  # noqa: E402  (benchmarks/harness.py)

MMCV_SDIST = 'mmcv-2.1.0.tar.gz'
LOG_TAIL = 60_000  # characters of each step's log kept in gpu_check.log

# ------------------------------------------------------------------ settings
#: L > 2048 makes the kernel work in several chunks; groups=0 means 3-d B/C
SCAN_CASES = [
    dict(label='groups4_z', batch=2, dim=48, N=16, groups=4, L=4099,
         D=True, z=True, bias=True, softplus=True),
    dict(label='bc3d_z', batch=2, dim=24, N=8, groups=0, L=1, D=True,
         z=True, bias=True, softplus=True),
    dict(label='groups2_nosoftplus', batch=3, dim=32, N=16, groups=2,
         L=777, D=True, z=False, bias=True, softplus=False),
    dict(label='ss2d_dim512', batch=1, dim=512, N=16, groups=4, L=2049,
         D=True, z=False, bias=True, softplus=True),
]
DRY_L = {4099: 259, 777: 77, 2049: 129}


def _named(case):
    return dict(case, name=f"{case['label']}_L{case['L']}")


def _net_case(name, mode, batch, h, w, warmup, repeat, amp=None):
    return dict(name=name, mode=mode, batch=batch, h=h, w=w, warmup=warmup,
                repeat=repeat, amp=amp)


#: Table III of the device run: rows, seeds, the overlay that scales the rows
#: to the paper's backbone and batch, and the run whose teacher is returned
TABLE3 = dict(rows=['sup', 'mt', 'full'], seeds=[0, 1, 2],
              overlay='configs/gpu/table3_paper_scale.py',
              data_root='data/target_domain', threads=1, export=('full', 0))


def plan(dry_run: bool, table3_iters='auto') -> dict:
    """Settings of every measurement step (device run or dry run).

    Args:
        dry_run (bool): small sizes on this machine's CPU.
        table3_iters (int | str): training iterations of each Table III run
            on the device, or 'auto': as many as fit in the step's time after
            a 30-iteration probe (the dry run probes 2 and trains 2).

    Returns:
        dict: step name -> cfg passed to the step.
    """
    if not dry_run:
        ratio_cases = [
            _net_case('fwd_64', 'forward', 1, 64, 64, 1, 3),
            _net_case('fwd_bwd_b2_64', 'fwd_bwd', 2, 64, 64, 1, 2),
            _net_case('fwd_256_once', 'forward', 1, 256, 256, 0, 1),
        ]
        return dict(
            scan=dict(cases=[_named(c) for c in SCAN_CASES],
                      dtypes=['float32', 'float16', 'bfloat16']),
            scan_speed=dict(batch=1, dim=512, N=16, groups=4, L=65536,
                            dtypes=['float32', 'bfloat16'], repeat=10),
            net=dict(device='cuda', backend='cuda',
                     agreement=dict(h=64, w=64,
                                    backends=['reference', 'cuda']),
                     cases=[
                _net_case('fwd_256', 'forward', 1, 256, 256, 2, 5),
                _net_case('fwd_1080p', 'forward', 1, 1080, 1920, 1, 3),
                _net_case('fwd_bwd_b16_256', 'fwd_bwd', 16, 256, 256, 1, 3),
                _net_case('fwd_bwd_b16_256_amp_fp16', 'fwd_bwd', 16, 256, 256,
                          1, 3, 'float16'),
                _net_case('fwd_bwd_b16_256_amp_bf16', 'fwd_bwd', 16, 256, 256,
                          1, 3, 'bfloat16'),
                # a number even if batch 16 does not fit in float32
                _net_case('fwd_bwd_b8_256', 'fwd_bwd', 8, 256, 256, 1, 2),
            ] + ratio_cases),
            train_step=dict(device='cuda', batch=8, size=256, warmup=1,
                            repeat=2, variants=[
                                dict(name='fp32'),
                                dict(name='amp_fp16', amp='float16')]),
            net_reference=dict(device='cuda', backend='reference',
                               cases=ratio_cases),
            table3=dict(TABLE3, iters=table3_iters, probe_iters=30,
                        min_iters=100, iter_step=50, margin_s=25,
                        jobs=len(TABLE3['rows']) * len(TABLE3['seeds'])),
        )
    cases = [_named(dict(c, L=DRY_L.get(c['L'], c['L']),
                         dim=64 if c['dim'] == 512 else c['dim']))
             for c in SCAN_CASES]
    # a small SemiLLIENet (the default one takes seconds per call on 2 cores)
    tiny = dict(embed_dim=8, num_groups=1, blocks_per_group=1, d_state=4)
    small = [
        _net_case('fwd_32', 'forward', 1, 32, 32, 1, 2),
        _net_case('fwd_bwd_b2_32', 'fwd_bwd', 2, 32, 32, 1, 1),
    ]
    return dict(
        scan=dict(cases=cases, dtypes=['float32', 'bfloat16']),
        scan_speed=dict(batch=1, dim=64, N=4, groups=4, L=129,
                        dtypes=['float32'], repeat=1),
        net=dict(device='cpu', backend='cpu', net_kwargs=tiny,
                 agreement=dict(h=16, w=24, backends=['reference', 'cpu']),
                 cases=small + [
            _net_case('fwd_24x40', 'forward', 1, 24, 40, 0, 1),
            _net_case('fwd_bwd_b2_32_amp_fp16', 'fwd_bwd', 2, 32, 32, 0, 1,
                      'float16')]),
        train_step=dict(device='cpu', batch=2, size=32, warmup=0, repeat=1,
                        generator=tiny,
                        ram_encoder=dict(
                            type='RAMImageEncoder', pretrained=None,
                            img_size=32, patch_size=4, embed_dim=8,
                            depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1),
                            window_size=2, proj_dim=8),
                        variants=[dict(name='fp32'),
                                  dict(name='amp_fp16', amp='float16')]),
        net_reference=dict(device='cpu', backend='reference', cases=small,
                           net_kwargs=tiny),
        # the rows' own (demo-sized) models, two iterations, one seed
        table3=dict(TABLE3, rows=['sup', 'full'], seeds=[0], overlay=None,
                    iters='auto', probe_iters=2, max_iters=2, min_iters=2,
                    iter_step=1, margin_s=0, jobs=2),
    )


# ------------------------------------------------------------------ set-up steps
def _run_logged(cmd, log, env=None, cwd=None):
    with open(log, 'a') as f:
        f.write('$ ' + ' '.join(cmd) + '\n')
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                              env=env, cwd=cwd).returncode


def setup_carry(ctx, emit):
    """Check the carried folder against its MANIFEST (sha256)."""
    carry = ctx['carry']
    manifest = osp.join(carry, 'MANIFEST.txt')
    if not osp.isfile(manifest):
        raise FileNotFoundError(f'{manifest}: not found; run '
                                'tools/prepare_gpu_carry.sh here first')
    bad, total, n = [], 0, 0
    with open(manifest) as f:
        for line in f:
            digest, rel = line.split(None, 1)
            path = osp.join(carry, rel.strip())
            h = hashlib.sha256()
            try:
                with open(path, 'rb') as g:
                    for chunk in iter(lambda: g.read(1 << 20), b''):
                        h.update(chunk)
            except OSError as exc:
                bad.append(f'{rel.strip()}: {exc}')
                continue
            total += osp.getsize(path)
            n += 1
            if h.hexdigest() != digest:
                bad.append(f'{rel.strip()}: sha256 differs')
    if bad:
        raise ValueError(f'{manifest}: ' + '; '.join(bad))
    from gpu.build_selective_scan import extract_sources
    sdists = [f for f in os.listdir(osp.join(carry, 'src'))
              if f.startswith('mamba_ssm-')]
    work = osp.join(ctx['work'], 'carry_check')
    shutil.rmtree(work, ignore_errors=True)
    extract_sources(osp.join(carry, 'src', sdists[0]), work)
    shutil.rmtree(work, ignore_errors=True)
    emit(dict(kind='carry', files=n, mib=total / 2**20,
              wheels=sorted(os.listdir(osp.join(carry, 'wheels')))))


def setup_install(ctx, emit):
    """pip-install the carried wheels into WORK/site (no index, no deps)."""
    site = ctx['site']
    wheels = sorted(
        osp.join(ctx['carry'], 'wheels', w)
        for w in os.listdir(osp.join(ctx['carry'], 'wheels')))
    stamp = osp.join(site, '.carry-stamp')
    key = hashlib.sha256('\n'.join(osp.basename(w)
                                   for w in wheels).encode()).hexdigest()
    if osp.isfile(stamp) and open(stamp).read() == key:
        emit(dict(kind='install', reused=True, wheels=len(wheels)))
        return
    shutil.rmtree(site, ignore_errors=True)
    rc = _run_logged([sys.executable, '-m', 'pip', 'install', '-q',
                      '--no-index', '--no-deps', '--no-compile',
                      '--no-cache-dir', '--upgrade', '--target', site] +
                     wheels, ctx['log'])
    if rc != 0:
        raise RuntimeError(f'pip install of the carried wheels failed ({rc})')
    with open(stamp, 'w') as f:
        f.write(key)
    emit(dict(kind='install', reused=False, wheels=len(wheels)))


def _torch_key():
    import torch
    return (f'torch {torch.__version__} cuda {torch.version.cuda} '
            f'python {sys.version_info[0]}.{sys.version_info[1]}')


# Prebuilt binaries: a device run returns what it compiled as OUT/prebuilt_*.tar.xz
# (shared libraries stripped of debug sections: mmcv's _ext goes from ~80 MB to ~2 MB);
# copied into CARRY/prebuilt/, they let the next fresh machine skip both builds.
PREBUILT = dict(mmcv='prebuilt_mmcv.tar.xz',
                selective_scan='prebuilt_selective_scan.tar.xz')
PART_BYTES = 15 * 2**20


def _strip(path):
    strip = shutil.which('strip')
    if strip:
        subprocess.run([strip, '--strip-debug', path], capture_output=True)


def _export_prebuilt(ctx, name, folder, key):
    """Pack FOLDER (with KEY in PREBUILT_KEY) as OUT/prebuilt_NAME.tar.xz.

    Returns:
        str: a note for the report.
    """
    import tarfile
    out = ctx.get('out')
    if not out:
        return 'not exported (no report folder)'
    stage = folder + '.export'
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(folder, stage, ignore=shutil.ignore_patterns(
        'src', '*.o', '*.ninja', '.ninja_*', 'build.ninja', '__pycache__'))
    for dirpath, _, files in os.walk(stage):
        for f in files:
            if f.endswith('.so'):
                _strip(osp.join(dirpath, f))
    with open(osp.join(stage, 'PREBUILT_KEY'), 'w') as f:
        f.write(key)
    dest = osp.join(out, PREBUILT[name])
    packed = osp.join(ctx['work'], PREBUILT[name])
    # xz, not gzip: the kernel library packs to 12 MiB instead of 15, and the
    # device call carries 64 MiB in all (unpacking reads either)
    with tarfile.open(packed, 'w:xz', preset=9) as tar:
        tar.add(stage, arcname='.')
    shutil.rmtree(stage, ignore_errors=True)
    size = osp.getsize(packed)
    if size > 3 * PART_BYTES:
        os.remove(packed)
        return f'not exported: {size / 2**20:.1f} MiB packed'
    if size <= PART_BYTES:
        shutil.move(packed, dest + '.tmp')
        os.replace(dest + '.tmp', dest)
        return f'exported {PREBUILT[name]} ({size / 2**20:.1f} MiB)'
    # the device tool returns files of at most 16 MiB: split into parts
    names = []
    with open(packed, 'rb') as f:
        for i, chunk in enumerate(iter(lambda: f.read(PART_BYTES), b'')):
            part = f'{dest}.part{i}'
            with open(part + '.tmp', 'wb') as g:
                g.write(chunk)
            os.replace(part + '.tmp', part)
            names.append(osp.basename(part))
    os.remove(packed)
    return f'exported {", ".join(names)} ({size / 2**20:.1f} MiB)'


def _import_prebuilt(ctx, name, folder, key):
    """Unpack CARRY/prebuilt/prebuilt_NAME.tar.xz into FOLDER if its key
    matches.

    Returns:
        str | None: None if used, else why not.
    """
    import tarfile
    path = osp.join(ctx['carry'], 'prebuilt', PREBUILT[name])
    parts = sorted(glob.glob(path + '.part*'),
                   key=lambda p: int(p.rsplit('.part', 1)[1]))
    if not osp.isfile(path) and parts:  # join the parts of a split export
        joined = osp.join(ctx['work'], PREBUILT[name])
        with open(joined, 'wb') as f:
            for part in parts:
                with open(part, 'rb') as g:
                    shutil.copyfileobj(g, f)
        path = joined
    if not osp.isfile(path):
        return 'none carried'
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with tarfile.open(path) as tar:
        tar.extractall(folder, filter='data')
    key_file = osp.join(folder, 'PREBUILT_KEY')
    found = open(key_file).read() if osp.isfile(key_file) else None
    if found != key:
        shutil.rmtree(folder, ignore_errors=True)
        return f'built for {found!r}, this machine has {key!r}'
    return None


def _mmcv_imports(ctx):
    check = subprocess.run(
        [sys.executable, '-c', 'import mmcv, mmcv.ops; '
         'from mmcv.ops import nms; print(mmcv.__version__)'],
        env=ctx['env'], capture_output=True, text=True)
    return check.returncode == 0, check.stderr.strip()[-800:]


def compile_mmcv(ctx, target):
    """Compile mmcv 2.1.0 with CPU ops into TARGET (``pip install --target``).

    As tools/setup_env.sh does: C++20 instead of its hard-coded C++17,
    setuptools < 81, CUDA hidden so that its setup.py builds no CUDA ops. Used
    on the device only when no matching prebuilt copy was carried, and by
    benchmarks/gpu/prebuild.py here.

    Args:
        ctx (dict): ``carry`` (with src/mmcv-2.1.0.tar.gz), ``work``, ``env``,
            ``jobs``, ``log``.
        target (str): install folder.

    Returns:
        tuple: compile seconds, wheel file name.
    """
    import tarfile
    work = osp.join(ctx['work'], 'mmcv')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with tarfile.open(osp.join(ctx['carry'], 'src', MMCV_SDIST)) as tar:
        tar.extractall(work, filter='data')
    src = osp.join(work, MMCV_SDIST[:-len('.tar.gz')])
    setup_py = osp.join(src, 'setup.py')
    text = open(setup_py).read()
    if '-std=c++17' not in text:
        raise ValueError(f'{setup_py}: no -std=c++17 flag to raise to C++20')
    with open(setup_py, 'w') as f:
        f.write(text.replace('-std=c++17', '-std=c++20'))
    env = dict(ctx['env'], CUDA_VISIBLE_DEVICES='', MMCV_WITH_OPS='1',
               FORCE_CUDA='0', MAX_JOBS=str(ctx['jobs']))
    t0 = time.perf_counter()
    # from inside the source folder, as tools/setup_env.sh (its setup.py reads
    # relative paths)
    rc = _run_logged([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps',
                      '--no-build-isolation', '--no-index', '-w',
                      osp.join(work, 'dist'), '.'], ctx['log'], env=env,
                     cwd=src)
    if rc != 0:
        raise RuntimeError(f'mmcv build failed ({rc}); see {ctx["log"]}')
    compile_s = time.perf_counter() - t0
    wheel = [w for w in os.listdir(osp.join(work, 'dist'))
             if w.startswith('mmcv-')][0]
    rc = _run_logged([sys.executable, '-m', 'pip', 'install', '-q',
                      '--no-index', '--no-deps', '--no-compile', '--target',
                      target, osp.join(work, 'dist', wheel)], ctx['log'])
    if rc != 0:
        raise RuntimeError(f'installing the built mmcv wheel failed ({rc})')
    return compile_s, wheel


def setup_build_mmcv(ctx, emit):
    """Compile mmcv 2.1.0 with CPU ops (as tools/setup_env.sh does: C++20 flag,
    setuptools < 81), with CUDA hidden so that its setup.py builds no CUDA ops.
    A matching prebuilt copy (benchmarks/gpu/prebuild.py, or an earlier
    device run) is used instead."""
    target = ctx['mmcv_site']
    stamp = osp.join(target, '.mmcv-stamp')
    key = _torch_key()
    if osp.isfile(stamp) and open(stamp).read() == key:
        emit(dict(kind='build_mmcv', reused=True, how='built earlier on '
                  'this machine', torch=key))
        return
    why = _import_prebuilt(ctx, 'mmcv', target, key)
    if why is None:
        ok, err = _mmcv_imports(ctx)
        if ok:
            with open(stamp, 'w') as f:
                f.write(key)
            emit(dict(kind='build_mmcv', reused=True, how='prebuilt',
                      torch=key))
            return
        why = f'prebuilt copy does not import: {err}'
        shutil.rmtree(target, ignore_errors=True)
    emit(dict(kind='build_mmcv_note', prebuilt_not_used=why))
    compile_s, wheel = compile_mmcv(ctx, target)
    ok, err = _mmcv_imports(ctx)
    if not ok:
        raise RuntimeError('the built mmcv does not import: ' + err)
    with open(stamp, 'w') as f:
        f.write(key)
    note = _export_prebuilt(ctx, 'mmcv', target, key)
    emit(dict(kind='build_mmcv', reused=False, compile_s=compile_s,
              wheel=wheel, jobs=ctx['jobs'], torch=key, export=note))


def setup_build_scan(ctx, emit):
    """Compile mamba-ssm's selective_scan_cuda extension (sm_90), or use a
    matching prebuilt copy from an earlier device run."""
    from gpu.build_selective_scan import build
    sdist = [f for f in os.listdir(osp.join(ctx['carry'], 'src'))
             if f.startswith('mamba_ssm-')][0]
    key = f"{_torch_key()} arch {ctx['arch']}"
    folder = ctx['scan_build']
    stamp = osp.join(folder, 'PREBUILT_KEY')
    how = 'built earlier on this machine'
    if not (osp.isfile(stamp) and open(stamp).read() == key):
        why = _import_prebuilt(ctx, 'selective_scan', folder, key)
        how = 'prebuilt' if why is None else None
        if why is not None:
            emit(dict(kind='build_scan_note', prebuilt_not_used=why))
    result = build(osp.join(ctx['carry'], 'src', sdist), folder,
                   arch=ctx['arch'], jobs=min(ctx['jobs'], 10))
    if not result['reused']:
        with open(stamp, 'w') as f:
            f.write(key)
        result['export'] = _export_prebuilt(ctx, 'selective_scan', folder,
                                            key)
    elif how:
        result['how'] = how
    emit(dict(result, kind='build_scan', sdist=sdist))


SETUP = dict(carry=setup_carry, install=setup_install,
             build_mmcv=setup_build_mmcv, build_scan=setup_build_scan)

# ------------------------------------------------------------------ the steps
#: name, dependencies (must succeed), steps to wait for (any outcome), time limit
#: (s), exclusive (one at a time: the GPU timings)
STEP_TABLE = [
    ('carry', (), (), 60, False),
    ('imports', (), (), 120, False),
    # after mmcv: the scan package is then imported under its own name, so
    # that numba caches its kernels for the normal import (checks.py,
    # load_scan_package); with prebuilt binaries mmcv takes seconds
    ('numba_warmup', (), ('build_mmcv', ), 240, False),
    ('install', ('carry', ), (), 120, False),
    ('build_scan', ('carry', ), (), 360, False),
    ('build_mmcv', ('install', ), (), 420, False),
    ('scan', ('build_scan', ), ('numba_warmup', 'build_mmcv'), 240, True),
    ('scan_speed', ('build_scan', ), ('build_mmcv', ), 60, True),
    # after numba_warmup: so that no two processes compile into numba's cache
    # at once (the suspected cause of one unreproduced dry-run test failure)
    ('net', ('build_scan', 'build_mmcv'), ('numba_warmup', ), 180, True),
    ('train_step', ('build_scan', 'build_mmcv'), ('numba_warmup', ), 150,
     True),
    # Table III at paper scale: every (row, seed) side by side on the one GPU,
    # after the timed checks (its limit is what is left of --budget)
    ('table3', ('build_scan', 'build_mmcv'),
     ('numba_warmup', 'scan', 'scan_speed', 'net', 'train_step'), 600, True),
    ('net_reference', ('build_scan', 'build_mmcv'), ('numba_warmup', ), 150,
     True),
]
DEVICE_ONLY = ('install', 'build_scan', 'build_mmcv')
#: dry-run-only steps: the imports are checked against the device's package list
#: here; on the device the measuring steps import for real
DRY_ONLY = ('imports', )
#: measuring steps that a dry run skips, and why
DRY_SKIP = dict(scan_speed='times the cuda kernel: needs CUDA')


def child_main(args):
    """Run one step in this process, appending its results to a JSON-lines file."""
    with open(args.child_cfg) as f:
        payload = json.load(f)
    records = open(payload['records'], 'a')

    def emit(record):
        records.write(json.dumps(record, default=str) + '\n')
        records.flush()
        os.fsync(records.fileno())

    name = args.child
    if name in SETUP:
        SETUP[name](payload['ctx'], emit)
    else:
        from gpu import checks
        fn = checks.STEPS['net' if name == 'net_reference' else name]
        fn(payload['cfg'], emit)


# ------------------------------------------------------------------ orchestrator
def machine_info(dry_run):
    info = dict(date_utc=datetime.datetime.now(
        datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S'),
        python=sys.version.split()[0], executable=sys.executable,
        platform=platform.platform(), cores=os.cpu_count(), dry_run=dry_run)
    info['cpu'] = harness.cpu_model()
    try:
        import torch
        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                    cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info.update(gpu=p.name, gpu_memory_gib=p.total_memory / 2**30,
                        capability=f'{p.major}.{p.minor}')
    except Exception as exc:
        info['torch_error'] = repr(exc)
    for key, cmd in (('nvidia_smi', ['nvidia-smi', '--query-gpu=name,'
                                     'driver_version,memory.total,clocks.sm,'
                                     'clocks.max.sm', '--format=csv,noheader']),
                     ('nvcc', ['nvcc', '--version'])):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True,
                                 timeout=20)
            lines = out.stdout.strip().splitlines()
            release = [ln for ln in lines if 'release' in ln]  # nvcc
            info[key] = (release or lines or [out.stderr.strip()[:200]])[-1]
        except Exception as exc:
            info[key] = f'unavailable: {exc}'
    try:
        import numba
        info['numba'] = numba.__version__
    except Exception:
        info['numba'] = None
    rev = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'],
                         capture_output=True, text=True)
    info['git'] = rev.stdout.strip() or 'unknown (no .git)'
    return info


def _descendants(pid):
    """Process ids below ``pid`` (from /proc). ninja starts each compiler in a
    process group of its own, so killing the step's group does not reach them."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(')', 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(proc):
    """SIGKILL a step's process, its group and every process below it."""
    for _ in range(3):  # again, for anything started meanwhile
        pids = _descendants(proc.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if not pids:
            break
    proc.wait()


def _write_atomic(path, text):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def _read_records(path):
    out = []
    if osp.isfile(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut by a kill
                        pass
    return out


class Orchestrator:
    """Starts the steps as their dependencies finish, enforces the limits and
    rewrites the JSON/Markdown reports after every change."""

    def __init__(self, args):
        self.args = args
        self.dry = args.dry_run
        self.out = osp.abspath(args.out or os.environ.get('OUT') or osp.join(
            ROOT, 'work_dirs', 'gpu_check_dry' if self.dry else 'gpu_check'))
        os.makedirs(self.out, exist_ok=True)
        self.work = osp.abspath(args.work or (
            osp.join(self.out, '.work') if self.dry else
            osp.join(ROOT, '.gpu_build')))
        os.makedirs(self.work, exist_ok=True)
        self.deadline = time.monotonic() + args.budget
        self.t0 = time.monotonic()
        self.cfgs = plan(self.dry, args.table3_iters)
        site = osp.join(self.work, 'site')
        mmcv_site = osp.join(self.work, 'mmcv_site')
        scan_build = osp.join(self.work, 'selective_scan')
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        if not self.dry:
            paths = [site, mmcv_site, scan_build, ROOT]
            env['PYTHONPATH'] = os.pathsep.join(
                paths + [p for p in [os.environ.get('PYTHONPATH')] if p])
            pybin = osp.dirname(sys.executable)  # ninja's console script
            env['PATH'] = pybin + os.pathsep + env.get('PATH', '')
        else:
            env['PYTHONPATH'] = os.pathsep.join(
                [ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p])
        env.pop('SEMILLIE_SCAN_BACKEND', None)
        self.env = env
        self.ctx = dict(carry=osp.abspath(args.carry), work=self.work,
                        out=self.out,
                        site=site, mmcv_site=mmcv_site, scan_build=scan_build,
                        jobs=args.jobs or os.cpu_count() or 1, arch=args.arch,
                        env=env, log=None)
        wanted = set(args.steps.split(',')) if args.steps else None
        known = [row[0] for row in STEP_TABLE]
        if wanted and wanted - set(known):
            raise SystemExit(f'gpu_check: unknown step(s) in --steps: '
                             f'{sorted(wanted - set(known))}; steps: {known}')
        if wanted:  # the measuring steps wait for it
            wanted.add('numba_warmup')
        self.steps = {}
        for name, deps, after, limit, excl in STEP_TABLE:
            st = dict(name=name, deps=deps, after=after, limit=limit,
                      exclusive=excl, status='pending', records=[])
            if self.dry and name in DEVICE_ONLY:
                st.update(status='skipped', reason='dry run: uses this '
                          "machine's environment; installs and builds run on "
                          'the device only')
            elif self.dry and name in DRY_SKIP:
                st.update(status='skipped', reason=DRY_SKIP[name])
            elif not self.dry and name in DRY_ONLY:
                st.update(status='skipped', reason='dry-run check')
            elif wanted is not None and name not in wanted and \
                    name not in ('carry', ) + (DRY_ONLY if self.dry else DEVICE_ONLY):
                st.update(status='skipped', reason='not in --steps')
            self.steps[name] = st
        if self.dry and not osp.isfile(osp.join(args.carry, 'MANIFEST.txt')):
            self.steps['carry'].update(
                status='skipped', reason=f'{args.carry} not prepared (run '
                'tools/prepare_gpu_carry.sh); the device run needs it')
        self.machine = machine_info(self.dry)
        if args.label:
            self.machine['label'] = args.label
        self.log_path = osp.join(self.out, 'gpu_check.log')
        _write_atomic(self.log_path, '')

    # -- bookkeeping
    def elapsed(self):
        return time.monotonic() - self.t0

    def report(self):
        doc = dict(machine=self.machine, budget_s=self.args.budget,
                   elapsed_s=round(self.elapsed(), 1), dry_run=self.dry,
                   command=' '.join([osp.relpath(sys.argv[0], ROOT)] +
                                    sys.argv[1:]),
                   steps={n: self._public(s) for n, s in self.steps.items()})
        _write_atomic(osp.join(self.out, 'gpu_check.json'),
                      json.dumps(doc, indent=1, default=str))
        from gpu.report import markdown
        _write_atomic(osp.join(self.out, 'gpu_check.md'), markdown(doc))

    @staticmethod
    def _public(st):
        out = {k: v for k, v in st.items()
               if k not in ('proc', 'fh', 'start_mono', 'records_path')}
        if st['status'] == 'running':  # what it has measured so far
            out['records'] = _read_records(st['records_path'])
            out['seconds'] = round(time.monotonic() - st['start_mono'], 1)
        return out

    def append_log(self, st):
        path = st.get('log')
        text = ''
        if path and osp.isfile(path):
            with open(path, errors='replace') as f:
                text = f.read()
            if len(text) > LOG_TAIL:
                text = f'[... {len(text) - LOG_TAIL} characters cut ...]\n' + \
                    text[-LOG_TAIL:]
        with open(self.log_path, 'a') as f:
            f.write(f'\n===== {st["name"]}: {st["status"]} '
                    f'({st.get("seconds", 0):.1f} s) =====\n{text}')

    # -- running
    def start(self, st):
        name = st['name']
        limit = min(st['limit'], self.deadline - time.monotonic() - 3)
        if limit < 5:
            st.update(status='skipped', reason='no time left in --budget')
            return
        records = osp.join(self.work, f'{name}.jsonl')
        if osp.exists(records):
            os.remove(records)
        log = osp.join(self.work, f'{name}.log')
        ctx = dict(self.ctx, log=log)
        cfg_path = osp.join(self.work, f'{name}.cfg.json')
        cfg = self.cfgs.get(name)
        if name == 'table3':  # its summary and teacher go to the report
            # folder; its iteration count may depend on the time it has
            cfg = dict(cfg, out=self.out, work=self.work,
                       deadline=time.time() + limit)
        with open(cfg_path, 'w') as f:
            json.dump(dict(records=records, ctx=ctx, cfg=cfg), f, default=str)
        fh = open(log, 'w')
        proc = subprocess.Popen(
            [sys.executable, osp.abspath(__file__), '--child', name,
             '--child-cfg', cfg_path], stdout=fh, stderr=subprocess.STDOUT,
            env=self.env, cwd=ROOT, start_new_session=True)
        st.update(status='running', proc=proc, fh=fh, log=log,
                  records_path=records, started_s=round(self.elapsed(), 1),
                  effective_limit_s=round(limit, 1),
                  start_mono=time.monotonic())
        print(f'[gpu_check] {self.elapsed():6.1f}s start {name} '
              f'(limit {limit:.0f} s)', flush=True)

    def finish(self, st, status, reason=None):
        st['fh'].close()
        st['records'] = _read_records(st['records_path'])
        st['seconds'] = round(time.monotonic() - st.pop('start_mono'), 1)
        st['status'] = status
        if reason:
            st['reason'] = reason
        for key in ('proc', 'fh', 'records_path'):
            st.pop(key, None)
        self.append_log(st)
        print(f'[gpu_check] {self.elapsed():6.1f}s {st["name"]}: {status}'
              + (f' ({reason})' if reason else ''), flush=True)

    def poll(self, st):
        proc = st['proc']
        rc = proc.poll()
        ran = time.monotonic() - st['start_mono']
        if rc is None:
            if ran > st['effective_limit_s']:
                kill_tree(proc)
                self.finish(st, 'timeout', f'stopped after {ran:.0f} s '
                            '(its limit); the records it wrote are kept')
                return True
            return False
        if rc == 0:
            self.finish(st, 'ok')
        else:
            tail = ''
            try:
                with open(st['log'], errors='replace') as f:
                    lines = [ln for ln in f.read().splitlines() if ln.strip()]
                tail = lines[-1][:400] if lines else ''
            except OSError:
                pass
            self.finish(st, 'failed', f'exit {rc}: {tail}')
        return True

    def run(self):
        self.report()
        last_report = time.monotonic()
        while True:
            changed = False
            running = [s for s in self.steps.values()
                       if s['status'] == 'running']
            for st in running:
                changed |= self.poll(st)
            busy_exclusive = any(s['status'] == 'running' and s['exclusive']
                                 for s in self.steps.values())
            for st in self.steps.values():
                if st['status'] != 'pending':
                    continue
                dep_states = [self.steps[d]['status'] for d in st['deps']]
                blocking = [d for d in st['deps']
                            if self.steps[d]['status'] not in
                            ('ok', 'pending', 'running')
                            and not (self.dry and d in DEVICE_ONLY + (
                                'carry', ))]
                if blocking:
                    st.update(status='skipped', reason='needs ' + ', '.join(
                        f'{d} ({self.steps[d]["status"]})' for d in blocking))
                    changed = True
                    continue
                ready = all(s == 'ok' or (self.dry and d in DEVICE_ONLY + (
                    'carry', )) for d, s in zip(st['deps'], dep_states))
                ready = ready and all(
                    self.steps[a]['status'] not in ('pending', 'running')
                    for a in st['after'])
                if not ready:
                    continue
                if st['exclusive'] and busy_exclusive:
                    continue
                self.start(st)
                changed = True
                if st['exclusive'] and st['status'] == 'running':
                    busy_exclusive = True
            if changed or time.monotonic() - last_report > 5:
                self.report()  # also while steps run: the call may be cut
                last_report = time.monotonic()
            if not any(s['status'] in ('pending', 'running')
                       for s in self.steps.values()):
                break
            time.sleep(0.2)
        self.report()
        from gpu.report import summary_lines
        for line in summary_lines(self.steps):
            print(line)
        print(f'[gpu_check] done in {self.elapsed():.0f} s; reports in '
              f'{self.out}/gpu_check.{{json,md,log}}')
        bad = [n for n, s in self.steps.items()
               if s['status'] in ('failed', 'timeout')]
        return 1 if bad else 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Prepared GPU check (docs/benchmarks.md, "GPU check")')
    parser.add_argument('--dry-run', action='store_true',
                        help='run what this machine can (CPU, small sizes)')
    parser.add_argument('--out', help='report folder (default: $OUT, else '
                        'work_dirs/gpu_check[_dry])')
    parser.add_argument('--carry', default=osp.join(ROOT, '.gpu_carry'),
                        help='folder made by tools/prepare_gpu_carry.sh')
    parser.add_argument('--work', help='build/install folder (default: '
                        '.gpu_build/, reused by a later call on the same '
                        'machine)')
    parser.add_argument('--budget', type=float, default=420,
                        help='seconds for the whole check (default 420)')
    parser.add_argument('--steps', help='comma-separated measurement steps '
                        'to run (set-up steps always run)')
    parser.add_argument('--jobs', type=int, default=0,
                        help='compile jobs (default: all cores)')
    parser.add_argument('--arch', default='9.0',
                        help='TORCH_CUDA_ARCH_LIST of the kernel build')
    parser.add_argument('--table3-iters', default='auto',
                        type=lambda v: v if v == 'auto' else int(v),
                        help="training iterations of each Table III run on "
                        "the device, or 'auto' (default): as many as fit in "
                        "what is left of --budget, priced by a probe")
    parser.add_argument('--label', help='recorded in the report, e.g. the '
                        'commit (the device copy has no .git)')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--child-cfg', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    return Orchestrator(args).run()


if __name__ == '__main__':
    sys.exit(main())
