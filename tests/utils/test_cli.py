"""semillie_mm.utils.cli: one-line user errors, exit status 2, --debug."""
import os
import subprocess
import sys
import textwrap

from semillie_mm.utils.checks import check_checkpoint, load_config, require_dir, require_file
from semillie_mm.utils.cli import UserError, run_cli

import pytest
import torch


def _main_raising(exc):

    def main(argv):
        main.argv = argv
        raise exc

    return main


def test_user_error_is_one_line():
    assert str(UserError('a\nb  c')) == 'a b c'


def test_run_cli_user_error_exits_2_one_line(capsys):
    main = _main_raising(UserError('config x.py does not exist; fix it'))
    with pytest.raises(SystemExit) as exc:
        run_cli(main, ['x.py'], prog='tool.py')
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == 'tool.py: error: config x.py does not exist; fix it\n'
    assert main.argv == ['x.py']


def test_run_cli_debug_flag_propagates_and_is_stripped(monkeypatch):
    monkeypatch.delenv('SEMILLIE_DEBUG', raising=False)
    main = _main_raising(UserError('boom'))
    with pytest.raises(UserError):
        run_cli(main, ['a', '--debug', 'b'])
    assert main.argv == ['a', 'b']


@pytest.mark.parametrize('value,propagates', [('1', True), ('0', False),
                                              ('', False)])
def test_run_cli_debug_env(monkeypatch, value, propagates):
    monkeypatch.setenv('SEMILLIE_DEBUG', value)
    main = _main_raising(UserError('boom'))
    if propagates:
        with pytest.raises(UserError):
            run_cli(main, [])
    else:
        with pytest.raises(SystemExit) as exc:
            run_cli(main, [])
        assert exc.value.code == 2


def test_run_cli_bug_keeps_traceback(monkeypatch):
    monkeypatch.delenv('SEMILLIE_DEBUG', raising=False)
    with pytest.raises(ZeroDivisionError):
        run_cli(_main_raising(ZeroDivisionError('ours')), [])


def test_run_cli_status_and_interrupt(capsys, monkeypatch):
    monkeypatch.delenv('SEMILLIE_DEBUG', raising=False)
    with pytest.raises(SystemExit) as exc:
        run_cli(lambda argv: 3, [])
    assert exc.value.code == 3
    with pytest.raises(SystemExit) as exc:
        run_cli(lambda argv: None, [])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        run_cli(_main_raising(KeyboardInterrupt()), [], prog='t')
    assert exc.value.code == 130
    assert capsys.readouterr().err.strip().count('\n') == 0


def test_require_file(tmp_path):
    f = tmp_path / 'w.pth'
    with pytest.raises(UserError, match=r'RAM weights .*w\.pth does not '
                       r'exist; get it'):
        require_file(f, 'RAM weights', 'get it')
    with pytest.raises(UserError, match='is a directory'):
        require_file(tmp_path, 'input')
    f.write_bytes(b'x')
    assert require_file(f, 'input') == str(f)
    if os.geteuid() != 0:  # root reads everything
        f.chmod(0)
        with pytest.raises(UserError, match='not readable'):
            require_file(f, 'input')
        f.chmod(0o644)
    with pytest.raises(UserError, match='not a folder'):
        require_dir(f, 'root')
    assert require_dir(tmp_path, 'root') == str(tmp_path)


def test_load_config(tmp_path):
    good = tmp_path / 'good.py'
    good.write_text('a = 1\n')
    assert load_config(good).a == 1
    with pytest.raises(UserError, match=r'config .*nope\.py does not exist'):
        load_config(tmp_path / 'nope.py')
    bad = tmp_path / 'bad.py'
    bad.write_text('a = 1\nb = (\nc = 2 3\n')
    with pytest.raises(UserError) as exc:
        load_config(bad)
    msg = str(exc.value)
    assert 'bad.py line' in msg and 'syntax error' in msg
    # the error is in a _base_ file: the message names that file and line
    base = tmp_path / 'base.py'
    base.write_text('x = 1\ny = = 2\n')
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['./base.py']\nz = 3\n")
    with pytest.raises(UserError, match=r'base\.py line 2'):
        load_config(child)
    orphan = tmp_path / 'orphan.py'
    orphan.write_text("_base_ = ['./missing_base.py']\n")
    with pytest.raises(UserError, match='missing_base.py'):
        load_config(orphan)


def test_check_checkpoint(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.arange(1000.)}, 'meta': {}}, good)
    assert check_checkpoint(good) == str(good)
    data = good.read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match=r'cut\.pth is truncated or corrupt.*'
                       're-download'):
        check_checkpoint(cut)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(UserError, match='is empty'):
        check_checkpoint(empty)
    text = tmp_path / 'text.pth'
    text.write_text('hello, I am not a checkpoint\n')
    with pytest.raises(UserError, match=r'text\.pth'):
        check_checkpoint(text)
    tensor = tmp_path / 'tensor.pth'
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(UserError, match='not a checkpoint dict'):
        check_checkpoint(tensor)
    with pytest.raises(UserError, match='does not exist'):
        check_checkpoint(tmp_path / 'missing.pth')


def test_run_cli_in_a_process(tmp_path):
    """The whole contract as a user sees it: status 2, one line, --debug."""
    script = tmp_path / 'tool.py'
    cli_path = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), 'semillie_mm', 'utils', 'cli.py')
    # cli.py imports only the standard library at import time: load it by
    # path so that the process does not pay for importing the package
    script.write_text(textwrap.dedent(f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location('cli', {cli_path!r})
        cli = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cli)

        def main(argv):
            # a message with a newline: run_cli folds it into one line
            raise cli.UserError('input image ' + argv[0] +
                                ' does not exist;\\n check the path')

        cli.run_cli(main)
    """))
    env = dict(os.environ)
    env.pop('SEMILLIE_DEBUG', None)
    proc = subprocess.run([sys.executable, str(script), 'no.png'], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ['tool.py: error: input image no.png does not exist; '
                     'check the path']
    proc = subprocess.run(
        [sys.executable, str(script), 'no.png', '--debug'], env=env,
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and 'Traceback' in proc.stderr


def test_check_config_files(tmp_path):
    from semillie_mm.utils.checks import check_config_files
    weights = tmp_path / 'w.pth'
    weights.write_bytes(b'x')
    cfg = dict(
        model=dict(
            backbone=dict(init_cfg=dict(type='Pretrained',
                                        checkpoint='torchvision://resnet50')),
            ram_encoder=dict(type='RAMImageEncoder', pretrained=str(weights)),
            head=dict(pretrained=None)),
        test_evaluator=[dict(type='PSNR')])
    check_config_files(cfg, ('model', 'test_evaluator'), 'c.py')  # all fine
    cfg['model']['backbone']['init_cfg']['checkpoint'] = 'nope/r50.pth'
    with pytest.raises(UserError, match=r'c\.py: model\.backbone\.init_cfg\.'
                       r'checkpoint = nope/r50\.pth does not exist'):
        check_config_files(cfg, ('model', ), 'c.py')
    cfg['model']['backbone'] = {}
    cfg['model']['ram_encoder']['pretrained'] = 'gone.pth'
    with pytest.raises(UserError, match=r'ram_encoder\.pretrained = gone\.pth'
                       r'.*ram_swin_large_14m\.pth'):
        check_config_files(cfg, ('model', ), 'c.py')
    # an evaluator that is not in the checked sections is not looked at
    cfg['model']['ram_encoder']['pretrained'] = None
    cfg['test_evaluator'] = [dict(type='ReferenceFID', reference_dir='x')]
    check_config_files(cfg, ('model', 'val_evaluator'), 'c.py')
    with pytest.raises(UserError, match=r'test_evaluator\.0\.inception_path '
                       'is not set'):
        check_config_files(cfg, ('test_evaluator', ), 'c.py')
