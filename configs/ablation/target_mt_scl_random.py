# Control for Table III row 3: + semantic contrastive loss on a RANDOMLY
# initialised small Swin (RAMImageEncoder without weights: its features mean
# nothing), the encoder every demo / ablation row used before the ImageNet
# encoder (target_mt_scl.py). Kept so that the random-encoder row stays
# reproducible; the log warns that the weights are random.
_base_ = ['./target_mt_scl.py']
work_dir = './work_dirs/ablation/target_mt_scl_random'
model = dict(
    ram_encoder=dict(
        _delete_=True,
        type='RAMImageEncoder',
        pretrained=None,  # random weights
        img_size=64,
        patch_size=4,
        embed_dim=16,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 2, 4),
        window_size=4,
        proj_dim=32))
