"""benchmarks/gpu_check.py: its --dry-run on this CPU machine, and the carry check.

The dry run goes through the same orchestrator, step processes and reports as the
device run; on CPU it compares the 'cpu' selective-scan backend with the float64
reference (the 'cuda' comparisons are reported as skipped).
"""
import hashlib
import io
import json
import os
import os.path as osp
import subprocess
import sys
import tarfile

import pytest

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import gpu_check  # noqa: E402
from gpu.build_selective_scan import SOURCES  # noqa: E402


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_check')
    env = dict(os.environ)
    env.pop('OUT', None)
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'benchmarks', 'gpu_check.py'),
         '--dry-run', '--out', str(out), '--carry', str(out / 'no_carry'),
         # net_reference is step_net with backend='reference': left out for time
         '--steps', 'scan,net,train_step,table3'],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    with open(out / 'gpu_check.json') as f:
        doc = json.load(f)
    return proc, doc, out


def test_dry_run_completes(dry_run):
    proc, doc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = doc['steps']
    for name in ('imports', 'scan', 'net', 'train_step', 'table3'):
        assert steps[name]['status'] == 'ok', (name, steps[name])
    assert steps['net_reference']['reason'] == 'not in --steps'
    for name in gpu_check.DEVICE_ONLY:
        assert steps[name]['status'] == 'skipped'
        assert 'dry run' in steps[name]['reason']
    assert 'not prepared' in steps['carry']['reason']
    md = (out / 'gpu_check.md').read_text()
    for heading in ('## Steps', '## selective_scan errors',
                    '## SemiLLIENet', '## SemiLLIE.train_step'):
        assert heading in md
    assert (out / 'gpu_check.log').is_file()


def test_dry_run_scan_matches_float64_reference(dry_run):
    _, doc, _ = dry_run
    records = [r for r in doc['steps']['scan']['records']
               if r['kind'] == 'scan_error']
    cases = gpu_check.plan(dry_run=True)['scan']['cases']
    for case in cases:
        for dtype in ('float32', 'bfloat16'):
            mine = [r for r in records
                    if r['case'] == case['name'] and r['dtype'] == dtype]
            cpu = [r for r in mine if r['compare'] == 'cpu~ref64']
            cuda = [r for r in mine if r['compare'] == 'cuda~ref64']
            assert len(cpu) == 1 and len(cuda) == 1, mine
            assert 'no CUDA' in cuda[0]['skipped']
            errs = cpu[0]['errors']
            expected = {'out', 'last_state', 'du', 'ddelta', 'dA', 'dB', 'dC',
                        'dD', 'ddelta_bias'} | ({'dz'} if case['z'] else set())
            assert set(errs) == expected
            assert cpu[0]['ok'], cpu[0]
            # float32 arithmetic against float64: far below the tolerance
            if dtype == 'float32':
                assert cpu[0]['worst_rel_l2'] < 1e-5, cpu[0]


def test_dry_run_network_and_train_step(dry_run):
    _, doc, _ = dry_run
    nets = [r for r in doc['steps']['net']['records'] if r['kind'] == 'net']
    timed = [r for r in nets if 'median_s' in r]
    assert {r['case'] for r in timed} == {'fwd_32', 'fwd_bwd_b2_32',
                                          'fwd_24x40'}
    assert all(r['finite'] and r['median_s'] > 0 for r in timed)
    assert [r for r in nets if r.get('amp')] == [] and any(
        'CUDA only' in r.get('skipped', '') for r in nets)
    agree = [r for r in doc['steps']['net']['records']
             if r['kind'] == 'net_agreement']
    assert agree and agree[0]['rel_l2'] < 1e-5
    train = [r for r in doc['steps']['train_step']['records']
             if r['kind'] == 'train_step' and 'median_s' in r]
    assert len(train) == 1 and train[0]['finite']
    assert 'loss' in train[0]['losses']


def _fake_carry(root):
    os.makedirs(root / 'wheels')
    os.makedirs(root / 'src')
    (root / 'wheels' / 'demo-1.0-py3-none-any.whl').write_bytes(b'wheel')
    with tarfile.open(root / 'src' / 'mamba_ssm-0.0.tar.gz', 'w:gz') as tar:
        for name in SOURCES:
            data = f'// {name}\n'.encode()
            info = tarfile.TarInfo(f'mamba_ssm-0.0/csrc/selective_scan/{name}')
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    lines = []
    for rel in ('src/mamba_ssm-0.0.tar.gz',
                'wheels/demo-1.0-py3-none-any.whl'):
        digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        lines.append(f'{digest}  {rel}\n')
    (root / 'MANIFEST.txt').write_text(''.join(lines))


def test_carry_check(tmp_path):
    carry = tmp_path / 'carry'
    _fake_carry(carry)
    records = []
    ctx = dict(carry=str(carry), work=str(tmp_path / 'work'))
    gpu_check.setup_carry(ctx, records.append)
    assert records[0]['files'] == 2
    assert records[0]['wheels'] == ['demo-1.0-py3-none-any.whl']
    # a changed file is caught
    (carry / 'wheels' / 'demo-1.0-py3-none-any.whl').write_bytes(b'other')
    with pytest.raises(ValueError, match='sha256 differs'):
        gpu_check.setup_carry(ctx, records.append)
    # no MANIFEST: the error says how to make one
    os.remove(carry / 'MANIFEST.txt')
    with pytest.raises(FileNotFoundError, match='prepare_gpu_carry'):
        gpu_check.setup_carry(ctx, records.append)


@pytest.mark.parametrize('part_bytes', [1 << 20, 700])
def test_prebuilt_round_trip(tmp_path, monkeypatch, part_bytes):
    # a build folder -> OUT/prebuilt_*.tar.xz (split into parts when large)
    # -> CARRY/prebuilt/ -> unpacked only on a machine with the same key
    monkeypatch.setattr(gpu_check, 'PART_BYTES', part_bytes)
    build = tmp_path / 'build'
    os.makedirs(build / 'src')
    payload = os.urandom(1500)  # incompressible: 2-3 parts of 700 bytes
    (build / 'module.bin').write_bytes(payload)
    (build / 'src' / 'big.cu').write_text('left out of the export')
    out, carry, work = tmp_path / 'out', tmp_path / 'carry', tmp_path / 'work'
    for d in (out, carry / 'prebuilt', work):
        os.makedirs(d)
    ctx = dict(out=str(out), carry=str(carry), work=str(work))
    note = gpu_check._export_prebuilt(ctx, 'selective_scan', str(build), 'K1')
    files = sorted(os.listdir(out))
    assert note.startswith('exported') and files
    assert (len(files) > 1) == (part_bytes < 1500)
    for f in files:
        (carry / 'prebuilt' / f).write_bytes((out / f).read_bytes())
    target = tmp_path / 'unpacked'
    assert gpu_check._import_prebuilt(ctx, 'selective_scan', str(target),
                                      'K1') is None
    assert (target / 'module.bin').read_bytes() == payload
    assert not (target / 'src').exists()
    why = gpu_check._import_prebuilt(ctx, 'selective_scan',
                                     str(tmp_path / 'other'), 'K2')
    assert "built for 'K1'" in why and not (tmp_path / 'other').exists()
    assert gpu_check._import_prebuilt(ctx, 'mmcv', str(tmp_path / 'm'),
                                      'K1') == 'none carried'


def test_dry_run_table3(dry_run):
    # benchmarks/ablation.py through the table3 step: each run lands as a
    # record, the summary and the full row's teacher reach the report folder
    import torch
    _, doc, out = dry_run
    recs = doc['steps']['table3']['records']
    runs = [r for r in recs if r['kind'] == 'table3_run']
    assert sorted((r['row'], r['seed']) for r in runs) == [('full', 0),
                                                           ('sup', 0)]
    for r in runs:
        assert r['iters'] == 2
        # an enhancement of the val tiles, scored against their GT
        assert 5 < r['teacher']['PSNR'] < 40 and 0 < r['teacher']['SSIM'] <= 1
    assert (out / 'table3_table.md').is_file()
    summary = json.loads((out / 'table3_results.json').read_text())
    assert set(summary['rows']) == {'sup', 'full'}
    diff = summary['rows']['full']['teacher_psnr_minus_sup']
    full = {r['row']: r for r in runs}
    assert diff['per_seed'][0] == pytest.approx(
        full['full']['teacher']['PSNR'] - full['sup']['teacher']['PSNR'])
    exported = [r for r in recs if r['kind'] == 'table3_teacher']
    assert exported and exported[0]['file'] == 'teacher_full_seed0.pth'
    state = torch.load(out / 'teacher_full_seed0.pth', weights_only=True)
    assert sum(v.numel() for v in state.values()) == exported[0]['params']
    assert all(v.dtype == torch.float32 for v in state.values())
    # the state dict is the demo-sized generator's (the dry run's model)
    from semillie_mm.models.archs.semillie_net import SemiLLIENet

    from mmengine.config import Config
    gen = Config.fromfile(osp.join(
        ROOT, 'configs', 'ablation', 'target_full.py')).model.generator
    net = SemiLLIENet(**{k: v for k, v in gen.items() if k != 'type'})
    net.load_state_dict(state)  # strict: every key, every shape


def test_table3_overlay_scales_rows_without_adding_parts():
    import ablation
    from mmengine.config import Config
    overlay = osp.join(ROOT, 'configs', 'gpu', 'table3_paper_scale.py')
    sup = Config.fromfile(osp.join(ROOT, 'configs/ablation/target_sup.py'))
    full = Config.fromfile(osp.join(ROOT, 'configs/ablation/target_full.py'))
    lr_before = sup.optim_wrapper.generator.optimizer.lr
    for cfg in (sup, full):
        assert 'paper default' in ablation.apply_overlay(cfg, overlay)
        g = cfg.model.generator
        assert (g.embed_dim, g.num_groups, g.blocks_per_group,
                g.d_state) == (64, 2, 2, 16)
        assert cfg.train_dataloader.batch_size == 8
        crop = [t for t in cfg.train_dataloader.dataset.paired.pipeline
                if t['type'] == 'PairedRandomCropWithPad']
        assert crop[0]['crop_size'] == 128
    # what the supervised row switched off stays off
    assert sup.model.discriminator is None and sup.model.ram_encoder is None
    assert full.model.discriminator.base_channels == 64
    assert full.model.ram_encoder is not None
    assert sup.optim_wrapper.generator.optimizer.lr == lr_before
    node = dict(a=None, b=dict(c=1, d=2), e=[1, 2])
    ablation._merge_overlay(node, dict(a=dict(x=1), b=dict(c=5), e=[3], f=4))
    assert node == dict(a=None, b=dict(c=5, d=2), e=[3], f=4)


def test_prebuild_existing_key(tmp_path):
    from gpu import prebuild
    build = tmp_path / 'build'
    os.makedirs(build)
    (build / 'x.so').write_bytes(b'binary')
    carry = tmp_path / 'carry'
    os.makedirs(carry / 'prebuilt')
    ctx = dict(out=str(carry / 'prebuilt'), work=str(tmp_path))
    assert prebuild.existing_key(str(carry), 'mmcv') is None
    gpu_check._export_prebuilt(ctx, 'mmcv', str(build), 'torch X')
    assert prebuild.existing_key(str(carry), 'mmcv') == 'torch X'


def test_plan_iters_prices_the_slowest_run():
    from gpu.checks import plan_iters
    runs = [dict(seconds_per_iter=1.0, seconds_per_iter_steady=0.2),
            dict(seconds_per_iter=1.5, seconds_per_iter_steady=0.4),
            dict(seconds_per_iter=0.9, seconds_per_iter_steady=None)]
    # the slowest steady rate is 0.9 (the one without a steady rate), +10 %
    iters, per_iter, fixed = plan_iters(runs, 30, probe_wall=60.0,
                                        seconds_left=400.0)
    assert per_iter == pytest.approx(0.99)
    assert fixed == pytest.approx(60.0 - 30 * 0.99)
    assert iters == int((400.0 - fixed) / 0.99) // 50 * 50 == 350
    assert plan_iters(runs, 30, 60.0, 400.0, cap=100)[0] == 100
    assert plan_iters(runs, 30, 60.0, 10.0)[0] <= 0
