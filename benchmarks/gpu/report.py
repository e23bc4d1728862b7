"""Markdown summary of benchmarks/gpu_check.py's results (gpu_check.json)."""


def _fmt(x, digits=3):
    if x is None:
        return ''
    if isinstance(x, float):
        if x == 0:
            return '0'
        if abs(x) < 1e-3 or abs(x) >= 1e5:
            return f'{x:.2e}'
        return f'{x:.{digits}f}'
    return str(x)


def _records(doc, step, kind):
    st = doc['steps'].get(step, {})
    return [r for r in st.get('records', []) if r.get('kind') == kind]


def markdown(doc) -> str:
    """The report as Markdown.

    Args:
        doc (dict): the content of gpu_check.json.

    Returns:
        str: Markdown text.
    """
    m = doc['machine']
    lines = ['# GPU check' + (' (dry run)' if doc.get('dry_run') else ''), '',
             f"Command: `{doc.get('command')}`; budget {doc['budget_s']:.0f} s, "
             f"elapsed {doc['elapsed_s']:.0f} s; git {m.get('git')}"
             + (f"; label {m['label']}" if m.get('label') else '') + '.', '',
             f"Machine: {m.get('gpu', 'no GPU')}"
             + (f" ({m.get('gpu_memory_gib', 0):.0f} GiB, capability "
                f"{m.get('capability')})" if m.get('gpu') else '')
             + f"; nvidia-smi: {m.get('nvidia_smi')}; {m.get('cores')} cores "
             f"{m.get('cpu')}; Python {m.get('python')}, torch {m.get('torch')}"
             f" (CUDA {m.get('torch_cuda')}), numba {m.get('numba')}; nvcc: "
             f"{m.get('nvcc')}; {m.get('date_utc')} UTC.", '',
             '## Steps', '', '| step | status | seconds | note |',
             '|---|---|---:|---|']
    for name, st in doc['steps'].items():
        note = st.get('reason', '')
        for r in st.get('records', []):
            if r.get('kind') in ('build_mmcv', 'build_scan', 'install'):
                if r.get('reused'):
                    what = f"reused ({r.get('how') or 'installed earlier'})"
                else:
                    secs = r.get('compile_s') or r.get('seconds')
                    what = (f'compiled in {_fmt(secs, 0)} s' if secs else
                            'installed')
                    if r.get('export'):
                        what += f"; {r['export']}"
                note = (note + ' ' + what).strip()
            if r.get('kind') in ('build_mmcv_note', 'build_scan_note'):
                note = (note + f" prebuilt not used: "
                        f"{r['prebuilt_not_used'][:120]};").strip()
        lines.append(f"| {name} | {st['status']} | {_fmt(st.get('seconds'), 1)}"
                     f" | {note.replace('|', '/')[:300]} |")

    errs = _records(doc, 'scan', 'scan_error')
    if errs:
        lines += ['', '## selective_scan errors', '',
                  'rel = ||x - ref|| / ||ref|| (float64); the worst over out, '
                  'last_state and the gradients du, ddelta, dA, dB, dC, dD, '
                  'dz, ddelta_bias is shown, then the forward alone.', '',
                  '| case | dtype | compare | worst rel (tensor) | out rel | '
                  'out max abs | tolerance | ok |', '|---|---|---|---|---:|---:|---:|---|']
        for r in errs:
            if 'skipped' in r:
                lines.append(f"| {r['case']} | {r['dtype']} | {r['compare']} |"
                             f" skipped: {r['skipped'][:200]} | | | | |")
                continue
            worst_k = max(r['errors'], key=lambda k: r['errors'][k]['rel_l2'])
            out = r['errors'].get('out', {})
            lines.append(
                f"| {r['case']} | {r['dtype']} | {r['compare']} | "
                f"{_fmt(r['worst_rel_l2'])} ({worst_k}) | "
                f"{_fmt(out.get('rel_l2'))} | {_fmt(out.get('max_abs'))} | "
                f"{_fmt(r['tolerance'])} | {'yes' if r['ok'] else 'NO'} |")
    speed = _records(doc, 'scan_speed', 'scan_speed')
    if speed:
        lines += ['', '## selective_scan kernel speed (cuda, median of CUDA-event '
                  'timings)', '', '| dtype | shape | forward (ms) | fwd+bwd (ms) |',
                  '|---|---|---:|---:|']
        for r in speed:
            if 'skipped' in r:
                lines.append(f"| | skipped: {r['skipped']} | | |")
                continue
            lines.append(f"| {r['dtype']} | {r['shape']} | "
                         f"{r['forward_s'] * 1e3:.2f} | {r['fwd_bwd_s'] * 1e3:.2f} |")

    nets = _records(doc, 'net', 'net') + _records(doc, 'net_reference', 'net')
    if nets:
        lines += ['', '## SemiLLIENet (default configuration)', '',
                  '| backend | case | batch | H x W | pass | AMP | median (s) |'
                  ' peak memory (GiB) | finite |',
                  '|---|---|---:|---|---|---|---:|---:|---|']
        for r in nets:
            if 'skipped' in r or 'error' in r:
                lines.append(f"| {r['backend']} | {r['case']} | | | | | "
                             f"{r.get('skipped') or r.get('error')} | | |")
                continue
            peak = r.get('peak_allocated_gib', r.get('peak_rss_gib'))
            lines.append(
                f"| {r['backend']} | {r['case']} | {r['batch']} | {r['h']} x "
                f"{r['w']} | {r['mode']} | {r.get('amp') or ''} | "
                f"{_fmt(r['median_s'])} | {_fmt(peak, 2)} | {r['finite']} |")
        by = {}
        for r in nets:
            if 'median_s' in r:
                by.setdefault(r['case'], {})[r['backend']] = r['median_s']
        ratios = [(c, v) for c, v in by.items() if len(v) >= 2]
        if ratios:
            lines += ['', '| case | reference / ' +
                      ('cuda' if 'cuda' in next(iter(ratios))[1] else 'cpu') +
                      ' time |', '|---|---:|']
            for c, v in ratios:
                fast = v.get('cuda', v.get('cpu'))
                lines.append(f"| {c} | {v['reference'] / fast:.1f} |")
        peak_note = ('peak = torch.cuda.max_memory_allocated over the timed '
                     'repeats (weights and inputs included)')
        lines += ['', peak_note + '; on CPU the process peak RSS.']
    agree = _records(doc, 'net', 'net_agreement')
    for r in agree:
        lines += ['', f"Network output, same weights, {r['compare']} at "
                  f"{r['h']}x{r['w']}: rel {_fmt(r['rel_l2'])}, max abs "
                  f"{_fmt(r['max_abs'])}."]

    trains = _records(doc, 'train_step', 'train_step')
    model = _records(doc, 'train_step', 'train_model')
    if trains:
        lines += ['', '## SemiLLIE.train_step (paper configuration)', '']
        if model:
            mm = model[0]
            lines.append(f"RAM encoder: {mm['ram_encoder']} "
                         f"({mm['params_ram'] / 1e6:.1f} M parameters); "
                         f"generator {mm['params_generator'] / 1e6:.2f} M; built "
                         f"in {mm['build_s']:.1f} s. One iteration = "
                         'train_step (generator + discriminator updates) + the '
                         "teacher's EMA update.")
            lines.append('')
        lines += ['| variant | batch (paired + unpaired) | size | median (s) | '
                  'peak memory (GiB) | losses finite |', '|---|---|---|---:|---:|---|']
        for r in trains:
            if 'skipped' in r or 'error' in r:
                lines.append(f"| {r['variant']} | {r.get('skipped') or r.get('error')} | | | | |")
                continue
            peak = r.get('peak_allocated_gib', r.get('peak_rss_gib'))
            lines.append(f"| {r['variant']} | {r['batch']} + {r['batch']} | "
                         f"{r['size']} | {_fmt(r['median_s'])} | {_fmt(peak, 2)}"
                         f" | {r['finite']} |")

    runs = _records(doc, 'table3', 'table3_run')
    if runs:
        start = _records(doc, 'table3', 'table3_start')
        lines += ['', '## Table III runs (TARGET val, last iteration)', '']
        if start:
            lines += [f"`{start[0]['command']}`", '']
        lines += ['| row | seed | iterations | teacher PSNR | teacher SSIM | '
                  'student PSNR | s / iteration (all side by side) |',
                  '|---|---:|---:|---:|---:|---:|---:|']
        for r in sorted(runs, key=lambda r: (r['row'], r['seed'])):
            lines.append(
                f"| {r['row']} | {r['seed']} | {r['iters']} | "
                f"{r['teacher']['PSNR']:.2f} | {r['teacher']['SSIM']:.4f} | "
                f"{r['student']['PSNR']:.2f} | "
                f"{_fmt(r.get('seconds_per_iter'))} |")
    for r in _records(doc, 'table3', 'table3_plan'):
        lines += ['', f"Iterations chosen on the device: a probe of "
                  f"{r['probe_iters']} iterations of every run side by side "
                  f"took {r['probe_wall_s']:.0f} s ({r['seconds_per_iter']:.3f}"
                  f" s per iteration with 10 % margin, {r['fixed_s']:.0f} s "
                  f"start-up and evaluation); {r['seconds_left']:.0f} s were "
                  f"left: {r['iters']} iterations."]
    for r in _records(doc, 'table3', 'table3_teacher'):
        lines += ['', f"Teacher weights returned: {r['file']} ({r['row']}, seed "
                  f"{r['seed']}, {r['iters']} iterations, "
                  f"{r['params'] / 1e6:.2f} M parameters, "
                  f"{r['bytes'] / 2**20:.1f} MiB)."]
    return '\n'.join(lines) + '\n'


def summary_lines(steps):
    """A few lines for the console (the device tool returns the output's end)."""
    out = ['[gpu_check] summary:']
    for name, st in steps.items():
        line = f"  {name:14s} {st['status']:8s} {st.get('seconds', '')}"
        if st.get('reason'):
            line += f"  {st['reason'][:160]}"
        out.append(line)
        for r in st.get('records', []):
            if r.get('kind') == 'scan_error' and 'ok' in r and not r['ok']:
                out.append(f"    NOT OK: {r['case']} {r['dtype']} {r['compare']}"
                           f" worst rel {r['worst_rel_l2']:.2e}")
            if r.get('kind') in ('net', 'train_step') and 'median_s' in r:
                peak = r.get('peak_allocated_gib', r.get('peak_rss_gib'))
                out.append(f"    {r.get('case') or r.get('variant')}: "
                           f"{r['median_s']:.4f} s, peak {peak:.2f} GiB")
            if r.get('kind') == 'table3_run':
                out.append(f"    {r['row']} seed {r['seed']}: teacher "
                           f"{r['teacher']['PSNR']:.2f} dB, student "
                           f"{r['student']['PSNR']:.2f} dB, "
                           f"{_fmt(r.get('seconds_per_iter'))} s/it")
            if r.get('kind') in ('net', 'train_step') and 'error' in r:
                out.append(f"    {r.get('case') or r.get('variant')}: {r['error'][:160]}")
    return out
