# Semi-LLIE on LSRW (paired) + EnlightenGAN's unpaired low-light set.
_base_ = [
    './_base_/default_runtime.py',
    './_base_/models/semillie.py',
    './_base_/schedules/semillie_200e.py',
    './_base_/datasets/semillie_lsrw.py',
]
work_dir = './work_dirs/semillie_lsrw'
