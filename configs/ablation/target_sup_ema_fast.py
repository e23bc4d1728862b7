# Diagnostic: supervised only with a teacher that follows the student
# faster (momentum 0.02: an averaging horizon of ~50 iterations instead of
# the paper's ~250, which is longer than these short runs).
_base_ = ['./target_sup.py']
work_dir = './work_dirs/ablation/target_sup_ema_fast'
model = dict(teacher=dict(momentum=0.02))
