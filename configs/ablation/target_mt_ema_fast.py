# Diagnostic: + mean teacher (L1 consistency) with the faster teacher of
# target_sup_ema_fast.py (momentum 0.02).
_base_ = ['./target_mt.py']
work_dir = './work_dirs/ablation/target_mt_ema_fast'
model = dict(teacher=dict(momentum=0.02))
