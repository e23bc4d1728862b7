# Diagnostic (not a Table III row): supervised only, trained on the TARGET
# pairs instead of the SOURCE ones -- the unpaired images with their clean
# versions (unlabeled_oracle/GT, never used by the semi-supervised rows).
# It bounds what any use of the unpaired target images could gain.
_base_ = ['./target_sup.py']
work_dir = './work_dirs/ablation/target_oracle'
train_dataloader = dict(
    dataset=dict(
        paired=dict(input_dir='unlabeled/input',
                    gt_dir='unlabeled_oracle/GT')))
