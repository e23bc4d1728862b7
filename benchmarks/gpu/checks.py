"""The measurement steps of benchmarks/gpu_check.py.

Each step is a function ``step(cfg, emit)``: ``cfg`` is a dict of settings (sizes
differ between the device run and ``--dry-run``), ``emit(record)`` stores one result
at once (a JSON line), so that a step stopped at its time limit still reports what it
measured. Every step runs in its own process (gpu_check.py starts it).
"""
import copy
import importlib
import importlib.util
import math
import os
import os.path as osp
import resource
import sys
import time

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
OPS_PKG = osp.join(ROOT, 'semillie_mm', 'ops')

#: rel_l2 = ||x - ref|| / ||ref|| below which a comparison is marked ok, by the
#: dtype of the scan inputs (fixed before any run: float32 arithmetic lands far under
#: 1e-3; float16/bfloat16 outputs and input-gradients are rounded to 11/8 bits)
TOLERANCE = {'float32': 1e-4, 'float16': 2e-3, 'bfloat16': 1e-2, 'float64': 1e-10}

#: gradient names in the order of selective_scan's arguments
GRAD_NAMES = ('u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias')


def load_scan_package():
    """``semillie_mm.ops.selective_scan``, even before mmcv is installed.

    The normal import comes first. Where it fails (``semillie_mm/__init__``
    registers everything into mmagic, which needs mmcv; on the device mmcv
    may not be in place yet) the selective-scan package, which imports only
    torch/numba (relative imports, up to ``semillie_mm.ops.cpu_ext``), is
    loaded on its own with its parent ``semillie_mm/ops`` under the name
    ``_semillie_ops``, with numba's cache in a folder of its own: numba
    records the module name with each cached kernel, and a kernel cached
    under the alias breaks a later normal import that finds it
    ("No module named '_semillie_ops'").

    Returns:
        module: the selective-scan package.
    """
    name = '_semillie_ops'
    if name in sys.modules:
        return sys.modules[name + '.selective_scan']
    try:
        return importlib.import_module('semillie_mm.ops.selective_scan')
    except ImportError:
        pass
    if 'numba' not in sys.modules:
        import tempfile
        os.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp(
            prefix='numba_cache_alias_')
    spec = importlib.util.spec_from_file_location(
        name, osp.join(OPS_PKG, '__init__.py'),
        submodule_search_locations=[OPS_PKG])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except ImportError:
        for key in [k for k in sys.modules
                    if k == name or k.startswith(name + '.')]:
            sys.modules.pop(key)
        raise
    return sys.modules[name + '.selective_scan']


def _dtype(name):
    import torch
    return getattr(torch, name)


def compare(x, ref) -> dict:
    """Errors of ``x`` against ``ref`` (both tensors), in float64.

    Returns:
        dict: ``max_abs``, ``rel_l2`` = ||x - ref|| / ||ref||, ``ref_max``,
        ``finite`` (x has no NaN/inf).
    """
    import torch
    x = x.detach().double().cpu()
    ref = ref.detach().double().cpu()
    finite = bool(torch.isfinite(x).all())
    diff = (x - ref).abs()
    denom = float(ref.norm())
    return dict(max_abs=float(diff.max()) if diff.numel() else 0.0,
                rel_l2=float(diff.norm()) / denom if denom > 0 else float(
                    diff.norm()),
                ref_max=float(ref.abs().max()) if ref.numel() else 0.0,
                finite=finite)


def _scan_inputs(case, seed):
    """Random inputs of one scan case (float32, on the CPU)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    b, d, n, L, G = (case['batch'], case['dim'], case['N'], case['L'],
                     case['groups'])

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    x = dict(u=randn(b, d, L))
    if case['softplus']:
        x['delta'] = randn(b, d, L, scale=0.5)
    else:  # steps used as they are: keep them positive and small
        x['delta'] = torch.rand(b, d, L, generator=g) * 0.1 + 0.005
    x['A'] = -torch.exp(randn(d, n, scale=0.5))
    shape_bc = (b, G, n, L) if G else (b, n, L)
    x['B'] = randn(*shape_bc)
    x['C'] = randn(*shape_bc)
    x['D'] = randn(d) if case['D'] else None
    x['z'] = randn(b, d, L) if case['z'] else None
    if not case['bias']:
        x['delta_bias'] = None
    elif case['softplus']:
        x['delta_bias'] = torch.rand(d, generator=g) * 0.5 - 1.0
    else:  # dt = delta + bias itself: keep it positive
        x['delta_bias'] = torch.rand(d, generator=g) * 0.05
    x['dout'] = randn(b, d, L)
    return x


def _run_scan(mod, x, backend, device, dtype, grad=True):
    """out, last_state and the gradients of one backend (None where absent)."""
    import torch
    low = ('u', 'delta', 'B', 'C', 'z')  # the tensors in the input dtype

    def prep(name):
        t = x[name]
        if t is None:
            return None
        t = t.to(dtype) if name in low else t.float()
        if dtype == torch.float64:
            t = t.double()
        # a fresh leaf: .to() may return the caller's tensor itself
        return t.to(device).detach().clone().requires_grad_(grad)

    args = {k: prep(k) for k in GRAD_NAMES}
    out = mod.selective_scan(
        args['u'], args['delta'], args['A'], args['B'], args['C'],
        D=args['D'], z=args['z'], delta_bias=args['delta_bias'],
        delta_softplus=x['softplus'], backend=backend)
    result = dict(out=out.detach())
    if grad:
        dout = x['dout'].to(dtype if dtype != torch.float64 else torch.float64)
        out.backward(dout.to(device))
        for k, v in args.items():
            if v is not None:
                result['d' + k] = v.grad
    with torch.no_grad():
        _, last = mod.selective_scan(
            args['u'], args['delta'], args['A'], args['B'], args['C'],
            D=args['D'], z=args['z'], delta_bias=args['delta_bias'],
            delta_softplus=x['softplus'], return_last_state=True,
            backend=backend)
    result['last_state'] = last
    return result


def _quantized(x, dtype):
    """The float32 inputs rounded to ``dtype`` where the kernels take that dtype,
    so that the float64 reference sees exactly the values the others see."""
    q = dict(x)
    for k in ('u', 'delta', 'B', 'C', 'z', 'dout'):
        if q[k] is not None:
            q[k] = q[k].to(dtype).float()
    return q


def step_scan(cfg, emit):
    """selective_scan: cuda and cpu against the float64 reference (and each
    other), forward, last state and every gradient; then the kernel's speed."""
    import torch
    mod = load_scan_package()
    cuda_ok = torch.cuda.is_available()
    emit(dict(kind='backends', cuda_available=cuda_ok,
              cuda_backends=list(mod.available_backends('cuda'))
              if cuda_ok else [],
              cpu_backends=list(mod.available_backends('cpu')),
              mamba_import_error=None if not cuda_ok else
              _cuda_import_error(mod)))
    ref_device = 'cuda' if cuda_ok else 'cpu'
    for ci, case in enumerate(cfg['cases']):
        x = _scan_inputs(case, seed=1000 + ci)
        x['softplus'] = case['softplus']
        for dname in cfg['dtypes']:
            try:
                _scan_case(mod, case, x, dname, cuda_ok, ref_device, emit)
            except Exception as exc:  # recorded; the next cases still run
                emit(dict(kind='scan_error', case=case['name'], dtype=dname,
                          compare='all', skipped=f'{type(exc).__name__}: '
                          f'{str(exc)[:400]}'))


def _scan_case(mod, case, x, dname, cuda_ok, ref_device, emit):
    """One case in one dtype: every backend against the float64 reference."""
    import torch
    dtype = _dtype(dname)
    q = _quantized(x, dtype)
    q['softplus'] = case['softplus']
    t0 = time.perf_counter()
    ref = _run_scan(mod, q, 'reference', ref_device, torch.float64)
    ref_s = time.perf_counter() - t0
    runs = {}
    skipped = {}
    if cuda_ok:
        try:
            runs['cuda'] = _run_scan(mod, q, 'cuda', 'cuda', dtype)
        except Exception as exc:  # reported, the others still run
            skipped['cuda'] = f'{type(exc).__name__}: {exc}'[:500]
    else:
        skipped['cuda'] = 'no CUDA device on this machine'
    if {'native', 'numba'} & set(mod.available_backends('cpu')):
        runs['cpu'] = _run_scan(mod, q, 'cpu', 'cpu', dtype)
    else:
        skipped['cpu'] = 'neither the C++ extension nor numba is available'
    pairs = [(n, 'ref64') for n in runs]
    if 'cuda' in runs and 'cpu' in runs:
        pairs.append(('cuda', 'cpu'))
    for a, b in pairs:
        other = ref if b == 'ref64' else runs[b]
        errs = {k: compare(runs[a][k], other[k])
                for k in ref if k in runs[a]}
        worst = max(e['rel_l2'] for e in errs.values())
        ok = (all(e['finite'] for e in errs.values())
              and worst <= TOLERANCE[dname]
              and set(errs) == set(ref))
        emit(dict(kind='scan_error', case=case['name'], dtype=dname,
                  compare=f'{a}~{b}', errors=errs, worst_rel_l2=worst,
                  tolerance=TOLERANCE[dname], ok=ok,
                  shape=dict((k, case[k]) for k in
                             ('batch', 'dim', 'N', 'groups', 'L')),
                  reference_seconds=ref_s))
    for name, why in skipped.items():
        emit(dict(kind='scan_error', case=case['name'], dtype=dname,
                  compare=f'{name}~ref64', skipped=why))


def step_scan_speed(cfg, emit, mod=None):
    """The 'cuda' kernel's time at an SS2D size (after the builds, so that
    compilers do not compete with the timed launches)."""
    import torch
    mod = mod or load_scan_package()
    if torch.cuda.is_available() and 'cuda' in mod.available_backends('cuda'):
        _scan_speed(mod, cfg, emit)
    else:
        emit(dict(kind='scan_speed', skipped='needs the cuda backend'))


def step_numba_warmup(cfg, emit):
    """Compile (or load from numba's cache) the 'cpu' backend's kernels with a
    tiny float32 scan, so that the scan step does not pay the JIT."""
    import torch
    mod = load_scan_package()
    if 'numba' not in mod.available_backends('cpu'):
        emit(dict(kind='numba_warmup', skipped='numba is not installed'))
        return
    t0 = time.perf_counter()
    case = dict(batch=1, dim=4, N=2, groups=2, L=5, D=True, z=True,
                bias=True, softplus=True)
    x = _scan_inputs(case, seed=0)
    x['softplus'] = True
    _run_scan(mod, x, 'numba', 'cpu', torch.float32)
    emit(dict(kind='numba_warmup', seconds=time.perf_counter() - t0))


def _cuda_import_error(mod):
    try:
        cuda = importlib.import_module(mod.__name__ + '.cuda')
        return cuda.mamba_import_error()
    except Exception as exc:
        return repr(exc)


def _cuda_time(fn, warmup, repeat):
    """Median seconds of ``fn()`` on the GPU (CUDA events)."""
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2], times


def _scan_speed(mod, spec, emit):
    """The 'cuda' kernel at an SS2D size: forward and forward + backward."""
    import torch
    case = dict(spec, D=True, z=False, bias=True, softplus=True)
    x = _scan_inputs(case, seed=7)
    for dname in spec['dtypes']:
        dtype = _dtype(dname)
        low = ('u', 'delta', 'B', 'C')
        a = {k: (v.to(dtype) if k in low else v).cuda()
             for k, v in x.items() if v is not None and k != 'dout'}
        dout = x['dout'].to(dtype).cuda()

        def fwd():
            with torch.no_grad():
                mod.selective_scan(a['u'], a['delta'], a['A'], a['B'], a['C'],
                                   D=a['D'], delta_bias=a['delta_bias'],
                                   delta_softplus=True, backend='cuda')

        leaves = {k: v.detach().requires_grad_(True) for k, v in a.items()}

        def fwd_bwd():
            out = mod.selective_scan(
                leaves['u'], leaves['delta'], leaves['A'], leaves['B'],
                leaves['C'], D=leaves['D'], delta_bias=leaves['delta_bias'],
                delta_softplus=True, backend='cuda')
            out.backward(dout)

        f_med, f_all = _cuda_time(fwd, 3, spec['repeat'])
        b_med, b_all = _cuda_time(fwd_bwd, 3, spec['repeat'])
        emit(dict(kind='scan_speed', dtype=dname,
                  shape=dict((k, spec[k])
                             for k in ('batch', 'dim', 'N', 'groups', 'L')),
                  forward_s=f_med, fwd_bwd_s=b_med, forward_all=f_all,
                  fwd_bwd_all=b_all))


# --------------------------------------------------------------------- network
def _memory_now(device):
    import torch
    if device == 'cuda':
        return torch.cuda.memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def step_net(cfg, emit):
    """SemiLLIENet (default configuration): forward and forward + backward
    time and peak memory for each case, through ``cfg['backend']``."""
    import semillie_mm  # noqa: F401  (registers, applies compat fixes)
    from semillie_mm.models.archs import SemiLLIENet

    import torch
    import torch.nn.functional as F
    device = cfg['device']
    backend = cfg['backend']
    torch.manual_seed(0)
    net = SemiLLIENet(scan_backend=backend, **cfg.get('net_kwargs', {}))
    net = net.to(device)
    params = sum(p.numel() for p in net.parameters())
    emit(dict(kind='net_model', backend=backend, device=device,
              params=params, net_kwargs=cfg.get('net_kwargs', {}),
              threads=torch.get_num_threads()))
    for case in cfg['cases']:
        name = case['name']
        if case.get('amp') and device != 'cuda':
            emit(dict(kind='net', backend=backend, case=name,
                      skipped='AMP is measured on CUDA only'))
            continue
        try:
            emit(dict(_net_case(net, case, device, torch, F), kind='net',
                      backend=backend, case=name))
        except torch.cuda.OutOfMemoryError as exc:
            emit(dict(kind='net', backend=backend, case=name,
                      error=f'out of memory: {str(exc)[:300]}'))
        except Exception as exc:  # recorded; the next cases still run
            emit(dict(kind='net', backend=backend, case=name,
                      error=f'{type(exc).__name__}: {str(exc)[:400]}'))
        finally:
            if device == 'cuda':
                torch.cuda.empty_cache()
    if cfg.get('agreement'):
        _net_agreement(net, cfg['agreement'], device, emit)


def _net_agreement(net, cfg, device, emit):
    """The same weights through two backends: output differences."""
    import torch
    net.eval()
    x = torch.rand(1, 3, cfg['h'], cfg['w'],
                   generator=torch.Generator().manual_seed(2)).to(device)
    outs = {}
    for backend in cfg['backends']:
        for m in net.modules():
            if hasattr(m, 'scan_backend'):
                m.scan_backend = backend
        with torch.no_grad():
            outs[backend] = net(x)
    first = cfg['backends'][0]
    for other in cfg['backends'][1:]:
        emit(dict(kind='net_agreement', compare=f'{first}~{other}',
                  h=cfg['h'], w=cfg['w'], device=device,
                  **compare(outs[first], outs[other])))


def _net_case(net, case, device, torch, F):
    b, h, w = case['batch'], case['h'], case['w']
    g = torch.Generator().manual_seed(1)
    x = torch.rand(b, 3, h, w, generator=g).to(device)
    target = torch.rand(b, 3, h, w, generator=g).to(device)
    train = case['mode'] == 'fwd_bwd'
    net.train(train)
    amp = case.get('amp')
    amp_dtype = getattr(torch, amp) if amp else None

    def run():
        with torch.autocast('cuda', dtype=amp_dtype, enabled=bool(amp)):
            if train:
                out = net(x)
                loss = F.l1_loss(out.float(), target)
            else:
                with torch.no_grad():
                    out = net(x)
        if train:
            loss.backward()
            net.zero_grad(set_to_none=True)
        return out

    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()

    for _ in range(case['warmup']):
        run()
    sync()
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    base = _memory_now(device)
    times = []
    out = None
    for _ in range(case['repeat']):
        t = time.perf_counter()
        out = run()
        sync()
        times.append(time.perf_counter() - t)
    if device == 'cuda':
        peak = torch.cuda.max_memory_allocated() / 2**30
        mem = dict(peak_allocated_gib=peak, base_allocated_gib=base,
                   peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
    else:
        mem = dict(peak_rss_gib=_memory_now('cpu'), rss_before_gib=base)
    times_sorted = sorted(times)
    return dict(batch=b, h=h, w=w, mode=case['mode'], amp=amp,
                median_s=times_sorted[len(times) // 2], times=times,
                finite=bool(torch.isfinite(out.float()).all()),
                out_mean=float(out.float().mean()), **mem)


# ------------------------------------------------------------------ train step
def _semi_batch(batch, size, seed):
    import torch
    from mmagic.structures import DataSample
    from mmengine.dataset import pseudo_collate
    g = torch.Generator().manual_seed(seed)

    def img():
        return torch.rand(3, size, size, generator=g) * 255

    samples = []
    for _ in range(batch):
        gt = img()
        samples.append(dict(
            inputs=dict(paired=gt * 0.2, unpaired_weak=img() * 0.2,
                        unpaired_strong=img() * 0.2),
            data_samples=DataSample(gt_img=gt)))
    return pseudo_collate(samples)


def step_train(cfg, emit):
    """One ``SemiLLIE.train_step`` (+ the teacher's EMA update) of the paper
    configuration: time and peak memory (random-weight RAM encoder)."""
    import semillie_mm  # noqa: F401

    import torch
    from mmagic.registry import MODELS
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    init_default_scope('mmagic')
    device = cfg['device']
    base = Config.fromfile(osp.join(ROOT, 'configs', 'semillie_visdrone.py'))
    model_cfg = base.model
    model_cfg.ram_encoder.pretrained = None  # random weights (no file here)
    if cfg.get('ram_encoder'):
        model_cfg.ram_encoder = cfg['ram_encoder']
    if cfg.get('generator'):  # dry run: a smaller network
        model_cfg.generator.update(cfg['generator'])
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device)
    build_s = time.perf_counter() - t0
    hub = MessageHub.get_current_instance()
    hub.update_info('epoch', 100)
    hub.update_info('iter', 0)
    ram = model.ram_encoder
    emit(dict(kind='train_model', device=device, build_s=build_s,
              params_generator=sum(p.numel()
                                   for p in model.generator.parameters()),
              params_ram=sum(p.numel() for p in ram.parameters()),
              ram_encoder=cfg.get('ram_encoder') and 'small (dry run)'
              or 'Swin-L/384 (paper), random weights',
              generator=dict(model_cfg.generator)))
    for variant in cfg['variants']:
        wrapper_cfg = copy.deepcopy(base.optim_wrapper.to_dict())
        if variant.get('amp'):
            for key in ('generator', 'discriminator'):
                wrapper_cfg[key]['type'] = 'AmpOptimWrapper'
                wrapper_cfg[key]['dtype'] = variant['amp']
                wrapper_cfg[key]['loss_scale'] = 'dynamic'
        try:
            emit(dict(_train_variant(model, wrapper_cfg, variant, cfg, device,
                                     hub, torch, build_optim_wrapper),
                      kind='train_step', variant=variant['name']))
        except torch.cuda.OutOfMemoryError as exc:
            emit(dict(kind='train_step', variant=variant['name'],
                      error=f'out of memory: {str(exc)[:300]}'))
        except Exception as exc:  # recorded; the next cases still run
            emit(dict(kind='train_step', variant=variant['name'],
                      error=f'{type(exc).__name__}: {str(exc)[:400]}'))
        finally:
            if device == 'cuda':
                torch.cuda.empty_cache()


def _train_variant(model, wrapper_cfg, variant, cfg, device, hub, torch,
                   build_optim_wrapper):
    if variant.get('amp') and device != 'cuda':
        return dict(skipped='AMP is measured on CUDA only')
    optim = build_optim_wrapper(model, wrapper_cfg)
    model.train()
    times, logs = [], None

    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()

    for i in range(cfg['warmup'] + cfg['repeat']):
        if i == cfg['warmup']:
            sync()
            if device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
        data = _semi_batch(cfg['batch'], cfg['size'], seed=i)
        hub.update_info('iter', i)
        sync()
        t = time.perf_counter()
        logs = model.train_step(data, optim)
        model.teacher.update_parameters(model.generator)
        sync()
        if i >= cfg['warmup']:
            times.append(time.perf_counter() - t)
    if device == 'cuda':
        mem = dict(peak_allocated_gib=torch.cuda.max_memory_allocated() / 2**30,
                   peak_reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
    else:
        mem = dict(peak_rss_gib=_memory_now('cpu'))
    losses = {k: float(v) for k, v in logs.items()}
    return dict(batch=cfg['batch'], size=cfg['size'], amp=variant.get('amp'),
                median_s=sorted(times)[len(times) // 2], times=times,
                losses=losses,
                finite=all(math.isfinite(v) for v in losses.values()), **mem)


def _names(path):
    """Normalised distribution names of a requirements-like file."""
    import re
    out = set()
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                out.add(re.split(r'[=<>!~ ;\[]', line, 1)[0].lower().replace(
                    '_', '-').replace('.', '-'))
    return out


def step_imports(cfg, emit):
    """Which distributions ``import semillie_mm`` + mmagic's
    ``register_all_modules()`` load, and whether each is carried or on the
    device image (``device_packages.txt``); run by the dry run, so a new
    dependency is caught before device time is spent."""
    import importlib.metadata as md

    import semillie_mm  # noqa: F401

    from mmagic.utils import register_all_modules
    register_all_modules()
    here = osp.dirname(__file__)
    carried = _names(osp.join(here, 'carry_requirements.txt'))
    device = _names(osp.join(here, 'device_packages.txt'))
    built = {'mmcv', 'semillie-mm'}  # compiled there / the working tree
    have = carried | device | built
    dists = md.packages_distributions()
    loaded, missing = set(), set()

    def norm(d):
        return d.lower().replace('_', '-').replace('.', '-')

    for top in {m.split('.')[0] for m in list(sys.modules)}:
        names = {norm(d) for d in dists.get(top, [])}
        loaded |= names
        # a module several distributions provide (cv2: opencv-python and
        # opencv-python-headless) needs one of them
        if names and not names & have:
            missing |= names
    missing = sorted(missing)
    emit(dict(kind='imports', loaded=sorted(loaded), missing=missing))
    if missing:
        raise RuntimeError(
            f'loaded but neither carried nor on the device image: {missing}; '
            'add them to benchmarks/gpu/carry_requirements.txt')


def export_teacher(ckpt: str, dest: str) -> dict:
    """Save the EMA teacher of a training checkpoint as a plain state dict
    (:func:`semillie_mm.apis.pretrained.export_teacher`).

    Args:
        ckpt (str): an mmengine checkpoint of ``SemiLLIE`` (our own run's).
        dest (str): output ``.pth``.

    Returns:
        dict: tensors, parameters, bytes.
    """
    from semillie_mm.apis.pretrained import export_teacher as export
    return export(ckpt, dest)


def _ablation(cfg, out_dir, name, iters, emit, t0):
    """Run benchmarks/ablation.py for cfg's rows and seeds; emit each run as
    its ``metrics.json`` lands.

    Returns:
        tuple: exit code, list of the runs' metrics dicts.
    """
    import glob
    import json
    import subprocess
    cmd = [sys.executable, osp.join(ROOT, 'benchmarks', 'ablation.py'),
           '--out-dir', out_dir, '--data-root', cfg['data_root'],
           '--rows', *cfg['rows'], '--seeds', *map(str, cfg['seeds']),
           '--iters', str(iters), '--jobs', str(cfg['jobs']),
           '--threads', str(cfg['threads']), '--nice', '0', '--name', name]
    if cfg.get('overlay'):
        cmd += ['--overlay', osp.join(ROOT, cfg['overlay'])]
    emit(dict(kind=f'{name}_start', iters=iters, rows=cfg['rows'],
              seeds=cfg['seeds'], command=' '.join(
                  osp.relpath(c, ROOT) if c.startswith(ROOT) else c
                  for c in cmd)))
    proc = subprocess.Popen(cmd, cwd=ROOT)
    seen, runs = set(), []

    def collect():
        for path in sorted(glob.glob(osp.join(out_dir, 'runs', '*', 'seed*',
                                              'metrics.json'))):
            if path in seen:
                continue
            try:
                with open(path) as f:
                    res = json.load(f)
            except (OSError, ValueError):
                continue
            seen.add(path)
            runs.append(res)
            emit(dict(kind=f'{name}_run', row=res['settings']['row'],
                      seed=res['settings']['seed'], iters=iters,
                      teacher=res['teacher'], student=res['student'],
                      teacher_val_source=res['teacher_val_source'],
                      seconds_per_iter=res.get('seconds_per_iter'),
                      seconds_per_iter_steady=res.get(
                          'seconds_per_iter_steady'),
                      train_seconds=res.get('train_seconds'),
                      wall_s=round(time.time() - t0, 1)))

    while proc.poll() is None:
        time.sleep(2)
        collect()
    collect()
    return proc.returncode, runs


def plan_iters(probe_runs, probe_iters, probe_wall, seconds_left,
               step=50, cap=None):
    """How many iterations fit in the time left, from a probe of the same
    runs side by side.

    The slowest run's steady time per iteration (plus 10 %) prices each
    iteration; everything else the probe spent (start-up, evaluation, the
    summary) is paid once more.

    Args:
        probe_runs (list[dict]): the probe's metrics.json contents.
        probe_iters (int): the probe's iterations.
        probe_wall (float): the probe's wall time (s).
        seconds_left (float): time left for the real runs.
        step (int): round down to a multiple of this. Defaults to 50.
        cap (int, optional): at most this many.

    Returns:
        tuple: (iterations, seconds per iteration, fixed seconds).
    """
    rates = [r.get('seconds_per_iter_steady') or r['seconds_per_iter']
             for r in probe_runs]
    per_iter = 1.1 * max(rates)
    fixed = max(0.0, probe_wall - probe_iters * per_iter)
    iters = int((seconds_left - fixed) / per_iter) // step * step
    if cap is not None:
        iters = min(iters, cap)
    return iters, per_iter, fixed


def step_table3(cfg, emit):
    """Table III on the target-domain benchmark: ``benchmarks/ablation.py``
    with every (row, seed) side by side on one device.

    With ``iters='auto'`` a probe (``probe_iters`` iterations of every run,
    side by side, evaluated and summarised like the real ones) first proves
    the pipeline and prices an iteration; then every run trains as many
    iterations as fit before ``deadline`` (the same fixed schedule for all:
    learning-rate decay and ramp-up scale with it). Each finished run is
    emitted as it lands; at the end the summary (``results.json`` /
    ``table.md`` / ``grid.jpg``) and the teacher of ``cfg['export']`` (row,
    seed) are copied into the report folder.
    """
    import shutil
    t0 = time.time()
    iters = cfg['iters']
    if iters == 'auto':
        probe_iters = cfg.get('probe_iters', 30)
        rc, runs = _ablation(cfg, osp.join(cfg['work'], 'table3_probe'),
                             'table3_probe', probe_iters, emit, t0)
        probe_wall = time.time() - t0
        expected = len(cfg['rows']) * len(cfg['seeds'])
        if rc != 0 or len(runs) != expected:
            raise RuntimeError(f'the probe failed (exit {rc}, {len(runs)} of '
                               f'{expected} runs): no real runs')
        left = cfg['deadline'] - time.time() - cfg.get('margin_s', 30)
        iters, per_iter, fixed = plan_iters(runs, probe_iters, probe_wall,
                                            left, cap=cfg.get('max_iters'),
                                            step=cfg.get('iter_step', 50))
        emit(dict(kind='table3_plan', probe_iters=probe_iters,
                  probe_wall_s=round(probe_wall, 1),
                  seconds_per_iter=per_iter, fixed_s=round(fixed, 1),
                  seconds_left=round(left, 1), iters=iters))
        if iters < cfg.get('min_iters', 2):
            raise RuntimeError(f'only {iters} iterations would fit in '
                               f'{left:.0f} s: no real runs')
    out_dir = osp.join(cfg['work'], 'table3')
    rc, _ = _ablation(cfg, out_dir, 'table3', iters, emit, t0)
    for name in ('table3_results.json', 'table3_table.md', 'table3_grid.jpg'):
        src = osp.join(out_dir, name)
        if osp.isfile(src) and cfg.get('out'):
            shutil.copyfile(src, osp.join(cfg['out'], name + '.tmp'))
            os.replace(osp.join(cfg['out'], name + '.tmp'),
                       osp.join(cfg['out'], name))
    row, seed = cfg['export']
    ckpt = osp.join(out_dir, 'runs', row, f'seed{seed}', f'iter_{iters}.pth')
    if osp.isfile(ckpt) and cfg.get('out'):
        dest = osp.join(cfg['out'], f'teacher_{row}_seed{seed}.pth')
        emit(dict(kind='table3_teacher', row=row, seed=seed, iters=iters,
                  file=osp.basename(dest), **export_teacher(ckpt, dest)))
    if rc != 0:
        raise RuntimeError(f'benchmarks/ablation.py exited {rc}')
    emit(dict(kind='table3_done', iters=iters,
              wall_s=round(time.time() - t0, 1)))


STEPS = dict(imports=step_imports, numba_warmup=step_numba_warmup, scan=step_scan,
             scan_speed=step_scan_speed, net=step_net, train_step=step_train,
             table3=step_table3)
