"""What the benchmark scripts share: child processes, memory, machine, tables.

A benchmark script measures each figure in a fresh child process (so that its
peak resident memory is its own) started with :class:`Job` /
:func:`run_child`; the child side is :func:`child_main`, which runs one
registered function and prints its result as one JSON line after
:data:`MARK`. The parent watches the child's memory (a cap and a floor of
free machine memory), its wall time (a timeout) and reads its ``ru_maxrss``
from ``os.wait4``. Also here: the machine's description (``lscpu``), the
sgemm rate that the "sgemm floor" ratios use, Markdown tables and JSON
results. Model MACs come from :func:`semillie_mm.utils.flops.count_macs`.

The scripts import this module by name (``import harness``): run them as
``python benchmarks/SCRIPT.py``, which puts this folder on ``sys.path``. It
imports neither torch nor semillie_mm at module level, so a child of another
checkout (``PYTHONPATH`` = that checkout) can use it.
"""
import json
import os
import os.path as osp
import platform
import resource
import signal
import subprocess
import sys
import time

#: prefix of the result line a child prints
MARK = 'BENCH_JSON '
GiB = 2**30
#: CPU flags worth knowing for the kernels (SIMD width, FMA, AMX)
FLAGS_OF_INTEREST = ('sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f',
                     'avx512dq', 'avx512bw', 'avx512vl', 'avx512_vnni',
                     'avx512_bf16', 'avx_vnni', 'amx_tile', 'amx_bf16')
#: environment variables that set a child's thread pools
THREAD_VARS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'NUMBA_NUM_THREADS',
               'OPENBLAS_NUM_THREADS')


# --------------------------------------------------------------------------
# memory of this process and of the machine
# --------------------------------------------------------------------------
def maxrss_bytes():
    """Peak resident set size of this process so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes(pid='self'):
    """Current resident set size of a process (this one by default)."""
    with open(f'/proc/{pid}/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def proc_tree_rss(pid):
    """Resident bytes of a process and its descendants (0 once gone)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += rss_bytes(p)
            with open(f'/proc/{p}/task/{p}/children') as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return total


def mem_available():
    """The machine's ``MemAvailable`` in bytes (inf when unknown)."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return float('inf')


# --------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------
def thread_env(threads):
    """Environment variables giving a child ``threads`` threads in torch's
    (OpenMP), MKL's, numba's and OpenBLAS's pools ({} for None: their
    defaults)."""
    if not threads:
        return {}
    return {k: str(int(threads)) for k in THREAD_VARS}


def child_command(script, name, params=None):
    """Command line that runs ``child_main`` of ``script`` for ``name``."""
    return [sys.executable, osp.abspath(script), '--child', name, '--params',
            json.dumps(params or {})]


def child_main(children, name, params):
    """Child side: run ``children[name](**params)`` and print its result
    (a dict) as one JSON line after :data:`MARK`, with the process's peak
    RSS (``maxrss_gb``) and where ``semillie_mm`` was imported from.

    Args:
        children (dict): name -> function returning a JSON-able dict.
        name (str): which one.
        params (dict): its keyword arguments.

    Returns:
        dict: the result printed.
    """
    result = children[name](**params)
    result['maxrss_gb'] = maxrss_bytes() / GiB
    mod = sys.modules.get('semillie_mm')
    if mod is not None:
        result['semillie_file'] = osp.abspath(mod.__file__)
    print(MARK + json.dumps(result, default=str), flush=True)
    return result


class Job:
    """A child process watched for memory and time.

    It is stopped (SIGKILL to its process group) when its tree's RSS passes
    ``cap`` bytes, when the machine's available memory falls under
    ``reserve`` bytes or when it runs longer than ``timeout`` seconds; its
    peak RSS is the ``ru_maxrss`` that ``os.wait4`` reports.

    Args:
        cmd (list[str]): command.
        env (dict | None): environment (None: this process's).
        cwd (str): working directory.
        log (str): file receiving stdout and stderr.
        cap (float): RSS limit in bytes. Default: no limit.
        reserve (float): minimum MemAvailable in bytes. Default: 0.
        timeout (float | None): wall-clock limit in seconds.
        threads (int | None): thread count of the child's pools
            (:func:`thread_env`).
    """

    def __init__(self, cmd, env, cwd, log, cap=float('inf'), reserve=0,
                 timeout=None, threads=None):
        self.log = log
        self.cap, self.reserve, self.timeout = cap, reserve, timeout
        env = dict(os.environ if env is None else env)
        env.update(thread_env(threads))
        self.t0 = time.perf_counter()
        with open(log, 'w') as f:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.expect_json = '--child' in cmd
        self.stopped = None
        self.peak_seen = 0
        self.rusage = None
        self.status = None
        self.seconds = None

    def _stop(self, why):
        self.stopped = why
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def poll(self):
        """Check memory and time, reap if finished. Returns True when done."""
        if self.status is not None:
            return True
        pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
        if pid:
            self.status, self.rusage = status, ru
            self.seconds = time.perf_counter() - self.t0
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            return True
        rss = proc_tree_rss(self.proc.pid)
        self.peak_seen = max(self.peak_seen, rss)
        if self.stopped is None:
            elapsed = time.perf_counter() - self.t0
            if rss > self.cap:
                self._stop(f'stopped at {rss / GiB:.1f} GB RSS after '
                           f'{elapsed:.0f} s')
            elif mem_available() < self.reserve:
                self._stop(f'stopped: machine memory low at '
                           f'{rss / GiB:.1f} GB RSS after {elapsed:.0f} s')
            elif self.timeout is not None and elapsed > self.timeout:
                self._stop(f'stopped: timeout after {elapsed:.0f} s')
        return False

    def result(self):
        """The child's JSON line (dict) plus its rusage figures: ``wall_s``,
        ``rusage_maxrss_gb``, ``returncode``; ``stopped`` and
        ``peak_seen_gb`` when it was stopped, ``error`` (the log's tail)
        when it failed."""
        with open(self.log) as f:
            text = f.read()
        out = None
        for line in text.splitlines():
            if line.startswith(MARK):
                out = json.loads(line[len(MARK):])
        res = dict(out or {})
        res['wall_s'] = self.seconds
        res['rusage_maxrss_gb'] = self.rusage.ru_maxrss * 1024 / GiB
        res['returncode'] = self.proc.returncode
        if self.stopped:
            res['stopped'] = self.stopped
            res['peak_seen_gb'] = self.peak_seen / GiB
        elif (out is None and self.expect_json) or self.proc.returncode != 0:
            tail = '\n'.join(text.strip().splitlines()[-15:])
            res['error'] = f'exit {self.proc.returncode}: {tail}'
        return res


def wait_all(jobs, interval=0.2, on_poll=None):
    """Poll ``jobs`` until all are done (``on_poll()`` after each round).

    Returns:
        list[dict]: their :meth:`Job.result`, in order.
    """
    while True:
        done = [j.poll() for j in jobs]
        if on_poll is not None:
            on_poll()
        if all(done):
            return [j.result() for j in jobs]
        time.sleep(interval)


def run_child(script, name, params=None, log=None, env=None, cwd=None,
              **job_kw):
    """Run one child of ``script`` (:func:`child_main`) and wait for it.

    Args:
        script (str): the benchmark script.
        name (str): the child function's name.
        params (dict): its keyword arguments.
        log (str | None): log file (default: a temporary file, removed).
        env, cwd: as :class:`Job`; ``job_kw``: ``cap``, ``reserve``,
            ``timeout``, ``threads``.

    Returns:
        dict: :meth:`Job.result`.
    """
    import tempfile
    tmp = None
    if log is None:
        fd, tmp = tempfile.mkstemp(prefix=f'bench_{name}_', suffix='.log')
        os.close(fd)
        log = tmp
    try:
        job = Job(child_command(script, name, params), env,
                  cwd or os.getcwd(), log, **job_kw)
        return wait_all([job], interval=0.05)[0]
    finally:
        if tmp is not None:
            os.remove(tmp)


def failure(res):
    """A one-line reason when a child result failed (None otherwise; a
    stopped child is not a failure: its ``stopped`` says why)."""
    if res is None or 'stopped' in res:
        return None
    if 'error' in res:
        return 'failed: ' + res['error'].strip().splitlines()[-1][:120]
    return None


def log(msg):
    """Progress on stderr (stdout carries the results)."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# the machine
# --------------------------------------------------------------------------
def machine_summary():
    """The machine as ``lscpu`` and ``/proc/meminfo`` describe it.

    Returns:
        dict: ``model`` (model name), ``family`` (CPU family), ``flags``
        (the :data:`FLAGS_OF_INTEREST` present, space separated), ``cpus``,
        ``threads_per_core``, ``l2``, ``mem_gb``.
    """
    info = dict(model=platform.processor() or 'unknown', flags='')
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True,
                             check=True).stdout
        fields = {}
        for line in out.splitlines():
            k, _, v = line.partition(':')
            fields[k.strip()] = v.strip()
        info['model'] = fields.get('Model name', info['model'])
        info['family'] = fields.get('CPU family', '?')
        flags = set(fields.get('Flags', '').split())
        info['flags'] = ' '.join(f for f in FLAGS_OF_INTEREST if f in flags)
        info['cpus'] = fields.get('CPU(s)', str(os.cpu_count()))
        info['threads_per_core'] = fields.get('Thread(s) per core', '?')
        info['l2'] = fields.get('L2 cache', '?')
    except (OSError, subprocess.CalledProcessError):
        info['cpus'] = str(os.cpu_count())
        info['model'] = cpu_model()
    with open('/proc/meminfo') as f:
        info['mem_gb'] = int(f.readline().split()[1]) / 2**20
    return info


def cpu_model():
    """The CPU's model name from ``/proc/cpuinfo`` ('unknown CPU' if none)."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def machine_line(m=None):
    """One line describing the machine (model, CPUs, L2, RAM)."""
    m = m or machine_summary()
    return (f'{m["model"]}, {m["cpus"]} CPUs '
            f'({m.get("threads_per_core", "?")} thread(s) per core), '
            f'L2 {m.get("l2", "?")}, {m["mem_gb"]:.1f} GB RAM')


def git_describe(root):
    """Short commit of ``root``, '+ uncommitted changes' when the package,
    tools or configs differ from it."""

    def git(*a):
        r = subprocess.run(['git', '-C', root] + list(a),
                           capture_output=True, text=True)
        return r.stdout.strip()

    commit = git('rev-parse', '--short', 'HEAD') or 'unknown'
    dirty = git('status', '--porcelain', '--', 'semillie_mm', 'tools',
                'configs')
    return commit + (' + uncommitted changes' if dirty else '')


def sgemm(n, repeat=3):
    """Rate of a float32 n x n x n ``torch.mm`` with torch's default threads
    (run it in a child; the best of ``repeat`` after one warm-up).

    Returns:
        dict: ``gmacs`` (wall), ``gmacs_per_cpu_s`` (per CPU second of the
        process), ``times``, ``cpu_times``, ``threads``, ``torch``, ``n``.
    """
    import torch
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    torch.mm(a, b)
    times, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return dict(
        n=n,
        torch=torch.__version__,
        times=times,
        cpu_times=cpu,
        gmacs=n**3 / min(times) / 1e9,
        gmacs_per_cpu_s=n**3 / min(cpu) / 1e9,
        threads=torch.get_num_threads())


# --------------------------------------------------------------------------
# what the scan benchmarks share
# --------------------------------------------------------------------------
def scan_inputs(batch, dim, length, d_state, groups, grad, dtype=None,
                seed=0):
    """Inputs of ``selective_scan`` shaped and scaled like SS2D's call:
    A = -(1..N), ``delta_bias`` from the Mamba dt initialisation (inverse
    softplus of dt in [1e-3, 0.1]), D = 1; call with ``delta_softplus=True``.

    Returns:
        dict: keyword arguments (float32 unless ``dtype``).
    """
    import math

    import torch
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(
        torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) +
        math.log(1e-3)).clamp(min=1e-4)
    x = dict(
        u=torch.randn(batch, dim, length, generator=g),
        delta=torch.randn(batch, dim, length, generator=g).mul_(0.1),
        A=-torch.arange(1, d_state + 1, dtype=torch.float32).repeat(dim, 1),
        B=torch.randn(batch, groups, d_state, length, generator=g),
        C=torch.randn(batch, groups, d_state, length, generator=g),
        D=torch.ones(dim),
        delta_bias=dt + torch.log(-torch.expm1(-dt)))
    return {k: v.to(dtype or torch.float32).requires_grad_(grad)
            for k, v in x.items()}


def ext_missing(root):
    """Why a checkout's C++ CPU extension would not load in a fresh process
    under this environment (``SEMILLIE_CACHE``, ``SEMILLIE_EXT_EXTRA_CFLAGS``
    ...), or None when it loads or the checkout has none.

    Args:
        root (str): the checkout.

    Returns:
        str | None: the loader's own line, with the command that builds it.
    """
    build = os.path.join(root, 'semillie_mm', 'ops', 'cpu_ext', 'build.py')
    if not os.path.isfile(build):
        return None
    proc = subprocess.run([sys.executable, build, '--which'], cwd=root,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        return None
    line = (proc.stdout.strip().splitlines() or ['(no output)'])[-1]
    return (f'{line} -- build it under the same environment: '
            f'python {build} --build')


def fused_kernel_modules():
    """The CPU extension's loader (``load()``, ``unavailable_reason()``) and
    the fused SS2D scan's helpers (``chunk_size``, ``num_slots``), in the
    package layout of issue #19 or the one before.

    Returns:
        tuple: (ext module, fused module).

    Raises:
        ImportError: the checkout has no fused kernel.
    """
    try:
        from semillie_mm.ops.cpu_ext import build as ext
        from semillie_mm.ops.selective_scan import ss2d_fused as fused
    except ImportError:
        from semillie_mm.ops.selective_scan import ext, fused
    return ext, fused


def kernel_case(mod, fused, batch, channels, h, w, d_state=16, dt_rank=4):
    """Random inputs of the fused SS2D kernel and its two timed calls (all
    four directions; no projections).

    Args:
        mod: the loaded extension; fused: ``ss2d_fused`` (``chunk_size``,
            ``num_slots``), both from :func:`fused_kernel_modules`.
        batch, channels, h, w, d_state, dt_rank (int): the problem.

    Returns:
        tuple: (fwd, fwdbwd, elements): the forward without checkpoints,
        the forward with them and the backward, and the (direction,
        channel, step, state) elements of one pass.
    """
    import torch
    torch.manual_seed(0)
    B, E, N, R, L = batch, channels, d_state, dt_rank, h * w
    X = R + 2 * N
    K = fused.chunk_size(L)
    u = torch.randn(B, L, E)
    xdbl = torch.randn(B, L, X) * 0.3
    Wdt, bias = torch.randn(E, R) * 0.1, torch.randn(E) * 0.1
    A, D = -torch.rand(E, N) - 0.5, torch.randn(E)
    y, dy, du = (torch.zeros(B, L, E), torch.randn(B, L, E),
                 torch.zeros(B, L, E))
    S = fused.num_slots(B, E, torch.float32, torch.get_num_threads())
    dxp = torch.empty(S, B, L, X)
    cks = [torch.empty(B, -(-L // K), N, E) for _ in range(4)]
    none = u.new_empty(0)

    def fwd():
        for k in range(4):
            mod.fwd(u, xdbl, Wdt, bias, A, D, y, none, h, w, k, K)

    def fwdbwd():
        for k in range(4):
            mod.fwd(u, xdbl, Wdt, bias, A, D, y, cks[k], h, w, k, K)
        for k in range(4):
            mod.bwd(u, xdbl, Wdt, bias, A, D, dy, cks[k], du, dxp, h, w, k,
                    K)

    return fwd, fwdbwd, 4 * B * E * L * N


def scan_case(mod, batch, dim, length, d_state=16, groups=4):
    """Inputs of the extension's plain selective scan (``scan_fwd`` /
    ``scan_bwd``, the ``native`` backend of ``selective_scan()`` without
    its autograd wrapper) shaped like :func:`scan_inputs`, and its two
    timed calls.

    Args:
        mod: the loaded extension.
        batch, dim, length, d_state, groups (int): the problem.

    Returns:
        tuple: (fwd, fwdbwd, elements): the forward without checkpoints,
        the forward with them and the backward (``delta_softplus``, no z),
        and the (channel, step, state) elements of one pass.
    """
    from semillie_mm.ops.selective_scan.common import chunk_size, cpp_blocks, num_slots

    import torch
    x = {k: v.detach() for k, v in
         scan_inputs(batch, dim, length, d_state, groups, False).items()}
    K = chunk_size(length)
    S = num_slots(batch, groups, cpp_blocks(dim // groups, torch.float32),
                  torch.get_num_threads())
    dout = torch.randn_like(x['u'])
    args = (x['u'], x['delta'], x['A'], x['B'], x['C'], x['D'], None,
            x['delta_bias'], True, K)

    def fwd():
        mod.scan_fwd(*args, False)

    def fwdbwd():
        ckpt = mod.scan_fwd(*args, True)[2]
        mod.scan_bwd(*args, ckpt, dout, None, S)

    return fwd, fwdbwd, batch * dim * length * d_state


def model_case(batch, h, w, seed=0):
    """The default SemiLLIENet on random images: its no-grad forward and a
    training step (forward, L1 loss, backward), as ``bench_cpu_path.py``'s
    ``fwd`` and ``train`` rows time them. The model calls the C++
    extension through ``semillie_mm.ops.cpu_ext.load()`` at each call, so
    setting ``semillie_mm.ops.cpu_ext.build._module`` between calls
    switches the binary it runs.

    Args:
        batch, h, w (int): the images.
        seed (int): torch's seed for the weights and the images.

    Returns:
        tuple: (fwd, train).
    """
    from semillie_mm.models.archs import SemiLLIENet

    import torch
    torch.manual_seed(seed)
    net = SemiLLIENet()
    x = torch.rand(batch, 3, h, w)
    target = torch.rand(batch, 3, h, w)

    def fwd():
        net.eval()
        with torch.no_grad():
            net(x)

    def train():
        net.train()
        (net(x) - target).abs().mean().backward()
        net.zero_grad(set_to_none=True)

    return fwd, train


#: the op-mix floor's tiles, in steps: L1-resident (forward: u, dt, B, C
#: of 64 steps, 16 KB; backward: the chunk's states and decays, 17 KB)
OPMIX_STEPS = dict(fwd=64, bwd=8)


def opmix_floor(mod=None, target_s=0.4, repeat=3, only=None):
    """The scan's op-mix floor on this machine, per element and thread.

    Times the extension's ``opmix_floor`` microbenchmark (see
    ``semillie_mm/ops/cpu_ext/csrc/opmix_floor.cpp``: the recurrence's
    exp2 + FMA chain and its loads in L1, the states in registers, no
    layout work) in every thread of torch's pool at once, for each lane
    width and exp2 form the binary has; the floor is the best of them.

    Args:
        mod: the loaded extension (default: load it).
        target_s (float): about how long one timed call runs.
        repeat (int): timed calls per variant (the best counts).
        only (dict, optional): ``{'fwd': (lanes, form), 'bwd': (lanes,
            form)}``: time only these (a re-measurement of the variants
            found best before).

    Returns:
        dict: ``fwd``, ``bwd`` (ns per (step, state, channel) element and
        thread, the best variant), ``fwdbwd`` (their sum), ``variants``
        ({'fwd/lanes16/exp1': ns, ...}), ``threads``; or ``absent`` (why).
    """
    import torch
    if mod is None:
        ext, _ = fused_kernel_modules()
        mod = ext.load()
        if mod is None:
            return dict(absent=f'extension not built: '
                        f'{ext.unavailable_reason()}')
    if not hasattr(mod, 'opmix_floor'):
        return dict(absent='no op-mix microbenchmark in this binary')
    # the exp2 forms the binary has (binaries from before the table form
    # have no exp_forms: 0-2 with AVX-512, else 2)
    forms = tuple(getattr(mod, 'exp_forms', None) or (
        (0, 1, 2) if getattr(mod, 'avx512', False) else (2, )))
    out = dict(variants={}, threads=torch.get_num_threads())
    for kind, k in (('fwd', 0), ('bwd', 1)):
        steps = OPMIX_STEPS[kind]
        best = None
        for lanes in (16, 8):
            for form in forms:
                if only is not None and only[kind] != (lanes, form):
                    continue
                mod.opmix_floor(k, lanes, form, steps, 50)  # warm-up
                t0 = time.perf_counter()
                mod.opmix_floor(k, lanes, form, steps, 200)
                per = (time.perf_counter() - t0) / 200
                reps = max(1, int(target_s / max(per, 1e-9)))
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    mod.opmix_floor(k, lanes, form, steps, reps)
                    times.append(time.perf_counter() - t0)
                ns = min(times) / (reps * steps * 256) * 1e9
                out['variants'][f'{kind}/lanes{lanes}/exp{form}'] = ns
                best = ns if best is None else min(best, ns)
        out[kind] = best
    out['fwdbwd'] = out['fwd'] + out['bwd']
    return out


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------
def markdown_table(header, rows, align=None):
    """A Markdown table.

    Args:
        header (list[str]): column titles.
        rows (list[list]): cells (converted with ``str``).
        align (list[str] | None): per column '' (default) or 'r' (right).

    Returns:
        str: the lines, joined by newlines.
    """
    align = align or [''] * len(header)
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + ''.join('---:|' if a == 'r' else '---|' for a in align)]
    lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(lines)


def _fileio():
    """``semillie_mm/utils/fileio.py`` loaded by its path: the package's one
    atomic writer, without importing the package (which would load torch and
    OpenMMLab into the parent process whose memory the rows measure)."""
    import importlib.util
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'semillie_mm', 'utils', 'fileio.py')
    spec = importlib.util.spec_from_file_location('_semillie_fileio', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_json(path, obj):
    """Write ``obj`` as indented JSON, atomically
    (:func:`semillie_mm.utils.fileio.atomic_write_json`)."""
    _fileio().atomic_write_json(path, obj, indent=1, default=str)
