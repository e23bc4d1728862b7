"""Table-I layout printing of tools/test.py."""
from semillie_mm.evaluation import format_table1, group_metrics


def test_group_and_format_table1():
    metrics = {'visdrone/FID': 36.4912, 'visdrone/NIQE': 3.66712,
               'visdrone/LOE': 204.14, 'lsrw/PSNR': 19.7321,
               'lsrw/SSIM': 0.78403, 'lsrw/NIQE': 3.974, 'lsrw/LOE': 195.0,
               'lsrw/MAE': 0.1, 'note': 'not a number'}
    grouped = group_metrics(metrics, 'unused')
    assert grouped['visdrone'] == {'FID': 36.4912, 'NIQE': 3.66712,
                                   'LOE': 204.14}
    table = format_table1(grouped, extra_columns={
        'Paper': {'visdrone': {'FID': 36.49, 'NIQE': 3.667, 'LOE': 204.1}}})
    lines = table.splitlines()
    assert lines[0].split() == ['Datasets', 'Metrics', 'Ours', 'Paper']
    body = [line.split() for line in lines[2:]]
    assert body[0] == ['visdrone', 'FID', '↓', '36.49', '36.49']
    assert body[1] == ['NIQE', '↓', '3.667', '3.667']
    assert body[2] == ['LOE', '↓', '204.1', '204.1']
    # paper order for a paired set: PSNR, SSIM, then NIQE, LOE, then others
    assert [b[0] for b in body[3:]] == ['lsrw', 'SSIM', 'NIQE', 'LOE', 'MAE']
    assert body[3] == ['lsrw', 'PSNR', '↑', '19.73', '-']
    assert body[4][2] == '0.7840'
    # metrics without a prefix go under the default dataset name
    assert list(group_metrics({'PSNR': 20.0}, 'val')) == ['val']
