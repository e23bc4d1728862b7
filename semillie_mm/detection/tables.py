"""Table VII-style results of the detection study: COCO bbox AP of each row, Markdown and CSV."""
import csv
from typing import Dict, Optional, Sequence

from ..utils.fileio import atomic_path

# Table VII columns and the keys of mmdet's CocoMetric (prefix 'coco', metric 'bbox')
METRICS = (('AP', 'coco/bbox_mAP'), ('AP50', 'coco/bbox_mAP_50'), ('AP75', 'coco/bbox_mAP_75'),
           ('APs', 'coco/bbox_mAP_s'), ('APm', 'coco/bbox_mAP_m'), ('APl', 'coco/bbox_mAP_l'))


def metrics_to_row(metrics: dict) -> Dict[str, Optional[float]]:
    """mmdet's CocoMetric results to Table VII percentages (one decimal).

    A missing key means mmdet found no detection at all on the test set (it then logs "The
    testing results of the whole dataset is empty" and returns no bbox metric): the APs are 0.
    pycocotools' -1 (no ground truth of that size) becomes ``None``.

    Args:
        metrics (dict): ``{'coco/bbox_mAP': 0.094, ...}``.

    Returns:
        dict: ``{'AP': 9.4, 'AP50': ..., 'APl': ...}``.
    """
    row = {}
    for col, key in METRICS:
        v = metrics.get(key, 0.0)
        row[col] = None if v < 0 else round(100 * v, 1)
    return row


def _fmt(v) -> str:
    return 'n/a' if v is None else f'{v:.1f}'


def write_tables(results: Sequence[dict], md_path: str, csv_path: str,
                 detector: str = 'Faster R-CNN') -> None:
    """Write the Table VII-style Markdown and CSV files (atomically).

    Args:
        results (Sequence[dict]): row results, each with ``name``, ``epochs`` and ``metrics``
            (as :func:`metrics_to_row`).
        md_path (str): Markdown output.
        csv_path (str): CSV output.
        detector (str): the detector named in the Markdown caption.
    """
    cols = [c for c, _ in METRICS]
    lines = ['| Model | Epochs | ' + ' | '.join(cols) + ' |',
             '|---|---:|' + '---:|' * len(cols)]
    for r in results:
        lines.append(f'| {r["name"]} | {r["epochs"]} | '
                     + ' | '.join(_fmt(r['metrics'][c]) for c in cols) + ' |')
    text = (f'Object detection with {detector} on enhanced VisDrone night images: COCO bbox AP '
            f'(%) on the test split.\n\n' + '\n'.join(lines) + '\n')
    for path, writer in ((md_path, None), (csv_path, 'csv')):
        with atomic_path(path) as tmp, open(tmp, 'w', encoding='utf-8', newline='') as f:
            if writer is None:
                f.write(text)
            else:
                w = csv.writer(f)
                w.writerow(['Model', 'Epochs'] + cols)
                for r in results:
                    w.writerow([r['name'], r['epochs']] + [_fmt(r['metrics'][c]) for c in cols])
