"""Print metric results in the layout of the paper's Table I."""
from typing import Dict, Mapping, Optional, Tuple

#: Display order, arrow (direction) and decimals, as in Table I.
METRIC_FORMATS = {
    'PSNR': ('↑', 2),
    'SSIM': ('↑', 4),
    'PSNR_GTmean': ('↑', 2),
    'SSIM_GTmean': ('↑', 4),
    'FID': ('↓', 2),
    'NIQE': ('↓', 3),
    'LOE': ('↓', 1),
    'ImageNetTop1Agree': ('↑', 3),
    'ImageNetTop5Agree': ('↑', 3),
}


def split_metric_key(key: str) -> Tuple[str, str]:
    """``'visdrone/FID'`` -> ``('visdrone', 'FID')``; no prefix -> ``''``."""
    if '/' in key:
        prefix, name = key.rsplit('/', 1)
        return prefix, name
    return '', key


def group_metrics(metrics: Mapping[str, float],
                  default_dataset: str) -> Dict[str, Dict[str, float]]:
    """Group ``{prefix/metric: value}`` by dataset (the prefix)."""
    out: Dict[str, Dict[str, float]] = {}
    for key, value in metrics.items():
        prefix, name = split_metric_key(key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        out.setdefault(prefix or default_dataset, {})[name] = value
    return out


def format_table1(results: Mapping[str, Mapping[str, float]],
                  method: str = 'Ours',
                  extra_columns: Optional[Mapping[str, Mapping[str, Mapping[
                      str, float]]]] = None) -> str:
    """Format results as the paper's Table I (rows: dataset x metric).

    Args:
        results (dict): ``{dataset: {metric: value}}`` of this run.
        method (str): Column title of this run. Default: 'Ours'.
        extra_columns (dict, optional): ``{method: {dataset: {metric:
            value}}}`` printed as further columns (e.g. published numbers).

    Returns:
        str: The table (plain text, aligned columns). Metrics of Table I come
        first in its order (PSNR, SSIM, FID, NIQE, LOE) with their direction
        and decimals; other metrics follow with 4 decimals.
    """
    columns = [(method, results)] + list((extra_columns or {}).items())
    rows = []
    for dataset, metrics in results.items():
        names = [m for m in METRIC_FORMATS if m in metrics]
        names += sorted(m for m in metrics if m not in METRIC_FORMATS)
        for i, name in enumerate(names):
            arrow, decimals = METRIC_FORMATS.get(name, ('', 4))
            cells = []
            for _, col in columns:
                v = col.get(dataset, {}).get(name)
                cells.append('-' if v is None else f'{v:.{decimals}f}')
            rows.append([dataset if i == 0 else '',
                         f'{name} {arrow}'.strip()] + cells)
    header = ['Datasets', 'Metrics'] + [c for c, _ in columns]
    widths = [max(len(r[j]) for r in rows + [header])
              for j in range(len(header))]
    lines = ['  '.join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append('  '.join('-' * w for w in widths))
    for r in rows:
        lines.append('  '.join(
            c.ljust(w) if j < 2 else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths))))
    return '\n'.join(lines)
