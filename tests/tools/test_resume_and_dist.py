"""Exact resume (N straight == N/2 + resume + N/2) and a 2-process CPU run
through tools/dist_train.sh (issue 6, parts 6 and 7)."""
import os
import os.path as osp
import subprocess
import sys

import torch
from semillie_test_config import REPO, make_dataset, write_config

HERE = osp.dirname(osp.abspath(__file__))


def run(args, timeout=900, **env):
    # tests/ holds dump_teacher_hook.py, which the config imports
    env = dict(os.environ, PYTHONPATH=f'{REPO}:{osp.dirname(HERE)}',
               CUDA_VISIBLE_DEVICES='',
               **env)
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def load_state(path):
    from semillie_mm.utils.checkpoint import load_checkpoint_file
    return load_checkpoint_file(path, map_location='cpu')


def test_resume_is_exact(tmp_path):
    data = make_dataset(str(tmp_path / 'data'), n_train=3, n_unpaired=5)
    # drop-path on, data loading in a worker: both random streams matter
    cfg = write_config(str(tmp_path / 'cfg.py'), data, max_iters=4,
                       num_workers=1, drop_path=0.2, val_interval=100,
                       ckpt_interval=2)
    straight, split = str(tmp_path / 'straight'), str(tmp_path / 'split')
    # one fixed thread count in all three runs: the CPU thread governor
    # follows the load of other jobs, and float sums over another number of
    # threads round differently (this test is about resuming, not the load)
    fixed = dict(SEMILLIE_ADAPTIVE_THREADS='0', OMP_NUM_THREADS='2')
    run([sys.executable, 'tools/train.py', cfg, '--work-dir', straight],
        **fixed)
    run([sys.executable, 'tools/train.py', cfg, '--work-dir', split,
         '--cfg-options', 'train_cfg.max_iters=2'], **fixed)
    log = run([sys.executable, 'tools/train.py', cfg, '--work-dir', split,
               '--resume'], **fixed)
    assert 'resumed epoch' in log

    a = load_state(osp.join(straight, 'iter_4.pth'))
    b = load_state(osp.join(split, 'iter_4.pth'))
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    for name in ('generator', 'discriminator'):
        sa, sb = a['optimizer'][name]['state'], b['optimizer'][name]['state']
        for idx in sa:
            for k in sa[idx]:
                assert torch.equal(torch.as_tensor(sa[idx][k]),
                                   torch.as_tensor(sb[idx][k])), (name, idx, k)
    assert int(a['state_dict']['teacher.steps']) == 4
    # checkpoints carry what a resume needs
    for key in ('optimizer', 'param_schedulers', 'message_hub', 'rng_state'):
        assert key in a, key


def test_dist_train_two_cpu_processes(tmp_path):
    data = make_dataset(str(tmp_path / 'data'), n_train=4, n_unpaired=4)
    cfg = write_config(str(tmp_path / 'cfg.py'), data, max_iters=2,
                       val_interval=2, drop_path=0.1)
    with open(cfg, 'a') as f:
        f.write("custom_imports = dict(imports=['semillie_mm', "
                "'dump_teacher_hook'], allow_failed_imports=False)\n"
                "custom_hooks = [dict(type='MeanTeacherHook'), "
                "dict(type='RNGStateHook'), dict(type='DumpTeacherHook')]\n")
    work = str(tmp_path / 'work')
    log = run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work],
              PYTHON=sys.executable, PORT='29517')
    assert 'gloo' in log
    assert 'Iter(train) [2/2]' in log
    r0 = torch.load(osp.join(work, 'rank0.pt'))
    r1 = torch.load(osp.join(work, 'rank1.pt'))
    for part in ('teacher', 'student'):
        for key, value in r0[part].items():
            assert torch.equal(value, r1[part][key]), (part, key)
    assert int(r0['teacher']['steps']) == 2
