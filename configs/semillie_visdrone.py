# Semi-LLIE on the VisDrone-derived low-light set (paper Sec. IV, Table I).
# Build the data with tools/dataset_converters/visdrone_lowlight.py.
_base_ = [
    './_base_/default_runtime.py',
    './_base_/models/semillie.py',
    './_base_/schedules/semillie_200e.py',
    './_base_/datasets/semillie_visdrone.py',
]
work_dir = './work_dirs/semillie_visdrone'
