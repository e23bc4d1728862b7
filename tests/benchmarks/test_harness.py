"""benchmarks/harness.py: child processes (memory watchdog, timeout, thread
count, peak RSS), the machine's description, tables and JSON."""
import json
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'benchmarks'))

import harness  # noqa: E402

CHILD = '''
import json, os, sys, time
sys.path.insert(0, {bench!r})
import harness


def grow(mib, sleep=0.0):
    x = bytearray(mib * 2**20)
    x[::4096] = b'x' * len(x[::4096])
    time.sleep(sleep)
    return dict(omp=os.environ.get('OMP_NUM_THREADS'))


def fail():
    raise ValueError('broken child')


if __name__ == '__main__':
    args = json.loads(sys.argv[sys.argv.index('--params') + 1])
    harness.child_main(dict(grow=grow, fail=fail), sys.argv[2], args)
'''


def _script(tmp_path):
    path = tmp_path / 'child.py'
    path.write_text(CHILD.format(bench=osp.join(ROOT, 'benchmarks')))
    return str(path)


def test_watchdog_stops_a_growing_child(tmp_path):
    grow = ('import time\nx = []\nfor _ in range(40):\n'
            '    x.append(bytearray(50 * 2**20)); time.sleep(0.05)\n')
    job = harness.Job([sys.executable, '-c', grow], None, str(tmp_path),
                      str(tmp_path / 'log'), cap=300 * 2**20, reserve=0)
    res = harness.wait_all([job], interval=0.02)[0]
    assert 'stopped at' in res['stopped']
    assert 0.29 < res['peak_seen_gb'] < 1.0


def test_child_result_threads_and_peak_rss(tmp_path):
    script = _script(tmp_path)
    res = harness.run_child(script, 'grow', dict(mib=300), threads=3)
    assert res['returncode'] == 0 and 'error' not in res
    assert res['omp'] == '3'
    # the child's own peak (ru_maxrss) and the one os.wait4 reports hold
    # the 300 MiB it touched (and, on Linux, at least what the forking
    # process held: keep the benchmark's parent free of torch)
    assert 0.3 < res['maxrss_gb'] <= res['rusage_maxrss_gb']
    assert res['wall_s'] > 0


def test_child_failure_and_timeout(tmp_path):
    script = _script(tmp_path)
    res = harness.run_child(script, 'fail')
    assert res['returncode'] != 0
    assert 'broken child' in res['error']
    assert harness.failure(res).startswith('failed: ValueError')
    res = harness.run_child(script, 'grow', dict(mib=1, sleep=30),
                            timeout=1)
    assert res['stopped'].startswith('stopped: timeout after')
    assert res['wall_s'] < 20
    assert harness.failure(res) is None  # stopped, not failed


def test_machine_table_json(tmp_path):
    m = harness.machine_summary()
    assert m['model'] and m['mem_gb'] > 0
    assert set(m['flags'].split()) <= set(harness.FLAGS_OF_INTEREST)
    assert m['model'] in harness.machine_line(m)
    assert harness.markdown_table(['a', 'b'], [[1, 'x'], [2.5, None]],
                                  align=['', 'r']) == \
        '| a | b |\n|---|---:|\n| 1 | x |\n| 2.5 | None |'
    path = str(tmp_path / 'r.json')
    harness.write_json(path, dict(a=1, b=[1.5]))
    with open(path) as f:
        assert json.load(f) == dict(a=1, b=[1.5])
    assert not osp.exists(path + '.tmp')


def test_ext_missing(tmp_path):
    """A checkout whose extension would not load names the loader's line
    and the build command; one that loads, or has no extension, is None."""
    assert harness.ext_missing(str(tmp_path)) is None
    build = tmp_path / 'semillie_mm' / 'ops' / 'cpu_ext' / 'build.py'
    build.parent.mkdir(parents=True)
    build.write_text('import sys\nprint("CPU scans of a fresh process: '
                     'no compiled binary at /x.so")\nsys.exit(1)\n')
    msg = harness.ext_missing(str(tmp_path))
    assert 'no compiled binary at /x.so' in msg
    assert msg.endswith(f'python {build} --build')
    build.write_text('print("CPU scans of a fresh process: the C++ '
                     'extension")\n')
    assert harness.ext_missing(str(tmp_path)) is None
